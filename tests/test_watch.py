"""Watched folders: what happens in them reaches the index on its own, with file events and by polling."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import distinct_image, wait_until

from embedder.engine import Engine
from embedder.jobs.runner import JobRunner
from embedder.jobs.watch import FolderWatcher
from embedder.query.terms import Query

QUIET_S = 0.3


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
    watcher = FolderWatcher(runner, quiet_s=QUIET_S, poll_s=0.2 if request.param == "polling" else 0.0)
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
