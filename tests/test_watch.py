"""Watched folders: what happens in them reaches the index on its own, with file events and by polling."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedder import cli
from faultkit import ROOT, cli_env, distinct_image, wait_until

from embedder.engine import Engine
from embedder.jobs.runner import JobRunner
from embedder.jobs.watch import FolderWatcher
from embedder.query.terms import Query

QUIET_S = 0.3
CHECK_S = 0.1  # how often the watched folders are looked for


def _paths_by_sha(engine: Engine) -> dict[str, list[str]]:
    return {payload["sha256"]: sorted(payload["paths"]) for _, payload, _ in engine.store.scroll()}


def _stored(engine: Engine) -> set[str]:
    return {p for paths in _paths_by_sha(engine).values() for p in paths}


def _found_first(engine: Engine, path: Path) -> bool:
    """The image at `path` is its own best match when searched with its own pixels."""
    hits = engine.searcher.search(Query.image(distinct_image(int(path.stem[3:]))), 1)
    return bool(hits) and str(path) in hits[0].payload["paths"]


@pytest.fixture(params=["events", "polling"])
def watched(request, engine: Engine, tmp_path: Path) -> Iterator[tuple[Engine, Path, JobRunner, FolderWatcher]]:
    folder = tmp_path / "watched"
    folder.mkdir()
    runner = JobRunner(engine.indexer)
    runner.start()
    watcher = FolderWatcher(
        runner, quiet_s=QUIET_S, poll_s=0.2 if request.param == "polling" else 0.0, check_s=CHECK_S
    )
    catch_up = watcher.start([folder])
    assert runner.wait(catch_up[0].id, 30).state == "done"
    yield engine, folder, runner, watcher
    watcher.stop()
    runner.close()


def _save(i: int, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    distinct_image(i).save(path)
    return path


def test_create_modify_rename_move_and_delete_each_reach_the_index(watched, tmp_path: Path) -> None:
    engine, folder, runner, _ = watched
    a = _save(1, folder / "img001.png")
    wait_until(lambda: _stored(engine) == {str(a)}, "a new file to be indexed")
    assert _found_first(engine, a)

    _save(2, a)  # edited in place: new pixels under the same name
    wait_until(lambda: len(_paths_by_sha(engine)) == 1 and _found_first_as(engine, 2, a), "the edit to be indexed")

    b = folder / "img002.png"
    os.rename(a, b)  # a rename: the same image under a new path, not encoded again
    wait_until(lambda: _stored(engine) == {str(b)}, "the rename to be seen")

    other = folder / "sub" / "img002.png"
    other.parent.mkdir()
    shutil.move(b, other)  # moved between folders
    wait_until(lambda: _stored(engine) == {str(other)}, "the move to be seen")
    assert engine.store.count() == 1

    other.unlink()
    wait_until(lambda: engine.store.count() == 0, "the deleted file to be forgotten")
    assert runner.wait_idle(30)
    assert all(j.state == "done" for j in runner.jobs()), [(j.request.label, j.state, j.error) for j in runner.jobs()]


def _found_first_as(engine: Engine, i: int, path: Path) -> bool:
    hits = engine.searcher.search(Query.image(distinct_image(i)), 1)
    return bool(hits) and hits[0].payload["paths"] == [str(path)] and hits[0].score > 0.99


def test_a_burst_of_files_is_indexed_in_a_few_batched_jobs(watched) -> None:
    engine, folder, runner, _ = watched
    before = {j.id for j in runner.jobs()}
    staging = folder.parent / "staging"
    staging.mkdir()
    for i in range(500):
        distinct_image(i, (48, 36)).save(staging / f"img{i:03d}.png")
    for path in sorted(staging.iterdir()):
        os.rename(path, folder / path.name)  # 500 files arrive in a burst
    wait_until(lambda: engine.store.count() == 500, "500 new files to be indexed", deadline_s=240)
    assert runner.wait_idle(60)
    jobs = [j for j in runner.jobs() if j.id not in before]
    assert 1 <= len(jobs) <= 5, [j.request.label for j in jobs]  # batched, not one job per file
    assert sum(len(j.report.added) for j in jobs) == 500


def test_catch_up_finds_what_changed_while_nothing_was_watching(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    kept, gone = _save(1, folder / "img001.png"), _save(2, folder / "img002.png")
    engine.indexer.index([folder])
    gone.unlink()
    new = _save(3, folder / "img003.png")  # while the app was down
    runner = JobRunner(engine.indexer)
    runner.start()
    watcher = FolderWatcher(runner, quiet_s=QUIET_S)
    try:
        (job,) = watcher.start([folder])
        job = runner.wait(job.id, 30)
        assert job.request.prune and job.report.removed == [str(gone)] and job.report.added == [str(new)]
        assert _stored(engine) == {str(kept), str(new)}
    finally:
        watcher.stop()
        runner.close()


def test_files_that_are_not_images_and_hidden_files_are_ignored(watched) -> None:
    engine, folder, runner, watcher = watched
    (folder / "notes.txt").write_text("hello")
    _save(5, folder / ".hidden.png")
    image = _save(6, folder / "img006.png")
    wait_until(lambda: _stored(engine) == {str(image)}, "the image to be indexed")
    assert runner.wait_idle(30)
    labels = [j.request.label for j in runner.jobs() if j.request.origin == "watch" and not j.request.prune]
    assert all("notes.txt" not in label and ".hidden" not in label for label in labels)


# ---------------------------------------------------------------------------------------------
# R3-4: watching what is not there


def _gone_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "is gone" in r.getMessage()]


def test_a_watched_folder_that_goes_away_is_said_once_forgets_nothing_and_comes_back(
    watched, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, folder, runner, watcher = watched
    a = _save(1, folder / "img001.png")
    wait_until(lambda: _stored(engine) == {str(a)}, "the first file to be indexed")
    caplog.set_level(logging.INFO, logger="embedder.jobs.watch")

    away = tmp_path / "unmounted"
    os.rename(folder, away)  # as a NAS share that unmounts: every file is gone at once
    wait_until(lambda: watcher.missing == [str(folder)], "the watcher to see the folder gone")
    for _ in range(3):
        watcher.check_roots()  # looked for again and again: still said once
    watcher.flush()  # whatever events the folder's going left are handed over now
    assert runner.wait_idle(30)
    assert _stored(engine) == {str(a)}  # nothing was forgotten
    assert len(_gone_warnings(caplog)) == 1, _gone_warnings(caplog)
    assert str(folder) in _gone_warnings(caplog)[0] and "stay indexed" in _gone_warnings(caplog)[0]

    b = _save(2, away / "sub" / "img002.png")  # changed while it was away
    os.rename(away, folder)
    b = folder / "sub" / b.name
    wait_until(lambda: _stored(engine) == {str(a), str(b)}, "the folder to be caught up once it is back")
    assert watcher.missing == []
    c = _save(3, folder / "img003.png")  # and it is watched again
    wait_until(lambda: _stored(engine) == {str(a), str(b), str(c)}, "a new file to be indexed")
    a.unlink()  # a file deleted while the folder is there is forgotten as before
    wait_until(lambda: _stored(engine) == {str(b), str(c)}, "the deleted file to be forgotten")
    assert len(_gone_warnings(caplog)) == 1


def test_a_folder_that_is_not_there_yet_is_watched_once_it_is(engine: Engine, tmp_path: Path, caplog) -> None:
    folder = tmp_path / "nas" / "photos"  # in IMAGE_DIRS, before the share is mounted
    runner = JobRunner(engine.indexer)
    runner.start()
    watcher = FolderWatcher(runner, quiet_s=QUIET_S, check_s=CHECK_S)
    try:
        assert watcher.start([folder]) == [] and watcher.missing == [str(folder)]
        assert any("is not there" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        image = _save(4, folder / "img004.png")
        wait_until(lambda: _stored(engine) == {str(image)}, "the folder to be indexed once it is there")
    finally:
        watcher.stop()
        runner.close()


@pytest.mark.parametrize(("make", "says"), [(None, "does not exist"), ("file", "is not a folder")])
def test_watch_of_a_folder_that_is_not_there_says_so_and_exits_2(
    make: str | None, says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    album = tmp_path / "album"
    if make == "file":
        album.write_text("not a folder")
    with pytest.raises(SystemExit) as stop:
        cli.main(["watch", str(tmp_path), str(album)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"argument FOLDER: {album} {says}: nothing to watch"), err


class _Lines:
    """A process's merged output, read as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.text += line


@pytest.mark.slow
def test_the_watch_command_says_once_that_a_folder_went_and_catches_up_when_it_is_back(
    tmp_path: Path, model_path: Path
) -> None:
    folder = os.fsencode(tmp_path) + b"/Fotos-\xe9"  # not UTF-8 either: said as \xe9, not mangled
    os.mkdir(folder)
    distinct_image(1).save(os.fsdecode(folder + b"/img001.png"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedder", "watch", "--poll", "0.2", os.fsdecode(folder)], cwd=ROOT,
        env=cli_env(tmp_path, model_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True,
    )
    out = _Lines(proc)
    try:
        wait_until(lambda: "Fotos-\\xe9: 1 added" in out.text, "the catch-up", deadline_s=120, step_s=0.1)
        os.rename(folder, folder + b".away")
        wait_until(lambda: "is gone" in out.text, "the warning", deadline_s=60, step_s=0.1)
        distinct_image(2).save(os.fsdecode(folder + b".away/img002.png"))
        os.rename(folder + b".away", folder)
        wait_until(lambda: out.text.count("1 added") == 2, "the second catch-up", deadline_s=60, step_s=0.1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0 and "Traceback" not in out.text, out.text
    (warning,) = [line for line in out.text.splitlines() if "is gone" in line]
    assert warning.startswith("WARNING ") and "Fotos-\\xe9 is gone" in warning and "\ufffd" not in warning
