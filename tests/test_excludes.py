"""Exclude globs: skipped folders are never read, wherever files are discovered (walk, index, jobs, watch, CLI)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from faultkit import distinct_image
from watchdog.events import DirMovedEvent, FileCreatedEvent, FileDeletedEvent

from embedder import cli
from embedder.config import Settings
from embedder.engine import Engine
from embedder.media.excludes import DEFAULT_EXCLUDES, Excludes, split_globs
from embedder.media.images import discover
from embedder.jobs.runner import JobRequest, JobRunner
from embedder.jobs.watch import FolderWatcher


def _save(path: Path, i: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    distinct_image(i).save(path)
    return path


def _found(root: Path, exclude: Excludes | None = None) -> list[str]:
    return [p.relative_to(root).as_posix() for p in discover([root], exclude=exclude)]


def _stored(engine: Engine) -> set[str]:
    return {p for _, payload, _ in engine.store.scroll() for p in payload["paths"]}


@pytest.fixture
def nas(tmp_path: Path) -> Path:
    """A photo share as a Synology/QNAP/Windows box leaves it: thumbnails and bins beside the photos."""
    root = tmp_path / "photo"
    for i, rel in enumerate(
        [
            "2019/beach.png",
            "2019/@eaDir/beach.png/SYNOPHOTO_THUMB_XL.jpg",
            "#recycle/2018/deleted.png",
            "#snapshot/GMT+02-2024.06.01/2019/beach.png",
            "$Recycle.Bin/S-1-5-21/old.png",  # newer Windows spells it so: case is ignored
            "@Recycle/gone.png",
            "lost+found/#1234.png",
            ".thumbnails/normal/abc.png",
            "2019/._beach.png",
            "2020/trip/raw/IMG_1.png",
            "2020/trip/IMG_1.png",
            "2020/private/secret.png",
            "private/not-so-secret.png",
        ],
        start=1,
    ):
        _save(root / rel, i)
    return root


def test_defaults_skip_what_nas_boxes_and_oses_leave_behind(nas: Path) -> None:
    found = _found(nas, Excludes(DEFAULT_EXCLUDES))
    assert found == ["2019/beach.png", "2020/private/secret.png", "2020/trip/IMG_1.png", "2020/trip/raw/IMG_1.png",
                     "private/not-so-secret.png"]
    # Without any glob only hidden names are skipped.
    assert "2019/@eaDir/beach.png/SYNOPHOTO_THUMB_XL.jpg" in _found(nas, Excludes())
    assert not any("thumbnails" in p or "/._" in p for p in _found(nas, Excludes()))


def test_a_glob_without_a_slash_is_a_name_anywhere_one_with_a_slash_a_path_below_the_root(nas: Path) -> None:
    by_name = _found(nas, Excludes([*DEFAULT_EXCLUDES, "RAW", "private"]))
    assert by_name == ["2019/beach.png", "2020/trip/IMG_1.png"]
    by_path = _found(nas, Excludes([*DEFAULT_EXCLUDES, "*/*/raw", "2020/private"]))
    assert by_path == ["2019/beach.png", "2020/trip/IMG_1.png", "private/not-so-secret.png"]
    assert _found(nas, Excludes([*DEFAULT_EXCLUDES, "**/IMG_*.png", "/2019/"])) == [
        "2020/private/secret.png", "private/not-so-secret.png"
    ]
    # A path glob is relative to the root being walked: from inside 2020, `2020/private` names nothing.
    assert _found(nas / "2020", Excludes(["2020/private"])) == ["private/secret.png", "trip/IMG_1.png", "trip/raw/IMG_1.png"]


def test_an_excluded_folder_is_never_listed_nor_entered(nas: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path="."):
        listed.append(os.path.relpath(os.fspath(path), nas))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # what os.walk lists folders with
    found = _found(nas, Excludes([*DEFAULT_EXCLUDES, "2020/trip"]))
    assert found == ["2019/beach.png", "2020/private/secret.png", "private/not-so-secret.png"]
    assert sorted(listed) == [".", "2019", "2020", "2020/private", "private"]


def test_globs_split_on_commas_and_the_path_separator() -> None:
    assert split_globs(f" @eaDir, ./2019/private/ {os.pathsep}*.tmp.png,,") == ("@eaDir", "2019/private", "*.tmp.png")


def test_the_exclude_setting() -> None:
    assert Settings().exclude == DEFAULT_EXCLUDES
    assert Settings.from_env(environ={"EXCLUDE": ""}, env_file="/none").exclude == DEFAULT_EXCLUDES
    custom = Settings.from_env(environ={"EXCLUDE": f"@eaDir, raw{os.pathsep}2019/private"}, env_file="/none")
    assert custom.exclude == ("@eaDir", "raw", "2019/private")
    assert Settings.from_env(environ=custom.env(), env_file="/none") == custom
    none = Settings.from_env(environ={"EXCLUDE": " None "}, env_file="/none")
    assert none.exclude == () and none.env()["EXCLUDE"] == "none"
    assert Settings.from_env(environ=none.env(), env_file="/none").exclude == ()


def test_index_skips_excluded_folders_and_prune_forgets_what_is_newly_excluded(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "album"
    kept = _save(root / "2019" / "a.png", 1)
    raw = _save(root / "2019" / "raw" / "a-raw.png", 2)
    copy = root / "2019" / "raw" / "a-copy.png"
    shutil.copy(kept, copy)  # the same picture, also outside the folder about to be excluded
    thumb = _save(root / "2019" / "@eaDir" / "a.png" / "SYNOPHOTO_THUMB_XL.jpg", 3)
    report = engine.indexer.index([root])  # the engine's own excludes: EXCLUDE's defaults
    assert sorted(report.added) == sorted(map(str, [kept, raw])) and report.copies == [str(copy)]
    assert str(thumb) not in _stored(engine)

    # Excluding `raw` without --prune reads nothing there and forgets nothing.
    again = engine.indexer.index([root], exclude=engine.indexer.exclude.plus(["raw"]))
    assert again.unchanged == [str(kept)] and _stored(engine) == {str(kept), str(raw), str(copy)}
    # With --prune the paths under it go as a deleted file's would; a picture with another path stays.
    pruned = engine.indexer.index([root], prune=True, exclude=engine.indexer.exclude.plus(["raw"]))
    assert sorted(pruned.removed) == sorted([str(raw), str(copy)])
    assert _stored(engine) == {str(kept)} and engine.store.count() == 1
    assert raw.exists() and copy.exists()  # the files are never touched


def test_cli_exclude_adds_to_the_setting(tmp_path: Path, model_path: Path, monkeypatch, capsys) -> None:
    for key, value in {
        "EMBEDDER_MODEL": str(model_path), "EMBEDDER_DEVICE": "cpu",
        "QDRANT_PATH": str(tmp_path / "qdrant"), "UPLOAD_DIR": str(tmp_path / "uploads"), "EXCLUDE": "junk",
    }.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "pics"
    for i, rel in enumerate(["keep.png", "junk/a.png", "2019/private/b.png", "tmp/c.png", "@eaDir/d.png"], 1):
        _save(root / rel, i)
    code = cli.main(["index", str(root), "--exclude", "2019/private", "--exclude", "tmp,nothing", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    # EXCLUDE replaced the defaults (so @eaDir is indexed) and --exclude added to it.
    assert sorted(Path(p).relative_to(root).as_posix() for p in report["added"]) == ["@eaDir/d.png", "keep.png"]
    assert "--exclude GLOB" in cli.build_parser()._subparsers._group_actions[0].choices["watch"].format_help()


def test_a_jobs_excludes_survive_the_journal_and_a_resume(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "album"
    kept = _save(root / "a.png", 1)
    _save(root / "skip-me" / "b.png", 2)
    request = JobRequest("index", (str(root),), "album", exclude=("skip-me",), anchors=(str(tmp_path),))
    assert JobRequest.from_dict(json.loads(json.dumps(request.as_dict()))) == request
    old = JobRequest.from_dict({"kind": "index", "paths": [str(root)], "label": "from an older version"})
    assert old.exclude is None and old.excludes(Excludes(["x"])) == Excludes(["x"])

    journal = tmp_path / "jobs.json"
    JobRunner(engine.indexer, journal=journal).submit(request)  # queued, never started: the process went away
    runner = JobRunner(engine.indexer, journal=journal)
    (resumed,) = runner.start()
    try:
        assert resumed.request.exclude == ("skip-me",) and resumed.request.anchors == (str(tmp_path),)
        job = runner.wait(resumed.id, 60)
        assert job.state == "done" and job.report.added == [str(kept)]
    finally:
        runner.close()


@pytest.fixture
def watcher(engine: Engine, tmp_path: Path):
    """A watcher on `tmp_path/watched` whose events the test sends itself (no timing involved)."""
    folder = tmp_path / "watched"
    folder.mkdir()
    runner = JobRunner(engine.indexer)
    runner.start()
    watcher = FolderWatcher(runner, exclude=Excludes([*DEFAULT_EXCLUDES, "2019/private"]))
    watcher.add(folder, catch_up=False)
    yield folder, runner, watcher
    watcher.stop()
    runner.close()


def test_the_watcher_ignores_events_for_skipped_paths(engine: Engine, watcher) -> None:
    folder, runner, w = watcher
    for path in ["@eaDir/a.png/SYNOPHOTO_THUMB_XL.jpg", "2019/private/b.png", "#RECYCLE/c.png", ".thumbnails/d.png"]:
        _save(folder / path)
        w._handler.on_any_event(FileCreatedEvent(str(folder / path)))
    w._handler.on_any_event(FileDeletedEvent(str(folder / "@eaDir" / "gone.png")))
    assert w.flush() == []
    image = _save(folder / "2019" / "public" / "e.png", 5)
    w._handler.on_any_event(FileCreatedEvent(str(image)))
    (job,) = w.flush()
    assert job.request.exclude == w.exclude.globs and job.request.anchors == (str(folder),)
    assert runner.wait(job.id, 60).state == "done" and _stored(engine) == {str(image)}


def test_a_folder_moved_in_is_walked_with_globs_relative_to_the_watched_folder(
    engine: Engine, watcher, tmp_path: Path
) -> None:
    folder, runner, w = watcher
    outside = tmp_path / "elsewhere" / "2019"
    _save(outside / "b.png", 1)
    _save(outside / "private" / "a.png", 2)
    shutil.move(outside, folder / "2019")
    w._handler.on_any_event(DirMovedEvent(str(outside), str(folder / "2019")))
    index, forget = w.flush()  # index where it went, forget where it was
    assert index.request.paths == (str(folder / "2019"),) and forget.request.kind == "prune"
    assert all(runner.wait(job.id, 60).state == "done" for job in (index, forget))
    assert _stored(engine) == {str(folder / "2019" / "b.png")}


def test_the_catch_up_skips_and_prunes_what_is_excluded(engine: Engine, watcher) -> None:
    folder, runner, w = watcher
    kept = _save(folder / "a.png", 1)
    private = _save(folder / "2019" / "private" / "b.png", 2)
    engine.indexer.index([folder], exclude=Excludes())  # indexed before it was excluded
    assert _stored(engine) == {str(kept), str(private)}
    w.remove(folder)
    (job,) = w.start([folder])
    job = runner.wait(job.id, 60)
    assert job.state == "done" and job.report.removed == [str(private)] and _stored(engine) == {str(kept)}
