"""Reliability round 2, indexing: edited photos, non-UTF-8 names, paths the system cannot open.

Real files, the real embedded store (Qdrant Edge) and, where the bytes of a name matter, a real
`python -m embedder` process given the raw bytes as its argument.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from embedder import cli
from embedder.engine import Engine
from embedder.query.terms import Query
from embedder.store import SearchFilter
from faultkit import DEADLINE_S, ROOT, cli_env, distinct_folder, distinct_image

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def _sha256(path: str | bytes | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    distinct_image(i).save(buffer, "PNG")
    return buffer.getvalue()


def _holders(engine: Engine) -> dict[str, list[str]]:
    """Every stored path → the content hashes of the points that list it."""
    holders: dict[str, list[str]] = {}
    for _, payload, _ in engine.store.scroll():
        for path in payload["paths"]:
            holders.setdefault(path, []).append(payload["sha256"])
    return holders


def _assert_each_path_in_exactly_the_point_of_its_bytes(engine: Engine, folder: Path) -> None:
    on_disk = {str(p): [_sha256(p)] for p in folder.rglob("*") if p.is_file()}
    assert _holders(engine) == on_disk


# --------------------------------------------------------------------------------------------
# R2-1: a path belongs to exactly one point


def test_photos_edited_in_place_or_swapped_leave_no_ghost_after_a_plain_index(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "album"
    paths = distinct_folder(folder, 6, copies=1)  # copies/copy00 holds the bytes of paths[0]
    first = engine.indexer.index([folder])
    assert len(first.added) == 6 and len(first.copies) == 1 and engine.store.count() == 6

    rotated = Image.open(paths[1]).rotate(90, expand=True)
    rotated.save(paths[1])  # edited in place: the old bytes exist nowhere now
    Image.open(paths[0]).rotate(180).save(paths[0])  # edited in place: the old bytes live on in the copy
    swapped = paths[2].read_bytes(), paths[4].read_bytes()
    paths[2].write_bytes(swapped[1])  # two files swap contents (both JPEGs)
    paths[4].write_bytes(swapped[0])
    distinct_image(50).save(folder / "new.png")  # found in the same run as the edits

    scrolls: list[SearchFilter | None] = []
    scroll = engine.store.scroll
    monkeypatch.setattr(engine.store, "scroll", lambda **kw: scrolls.append(kw.get("where")) or scroll(**kw))
    report = engine.indexer.index([folder])  # no --prune: a plain index must put things right
    lookups = list(scrolls)

    assert sorted(report.added) == sorted(map(str, [paths[0], paths[1], folder / "new.png"]))
    assert sorted(report.renamed) == sorted(map(str, [paths[2], paths[4]]))  # known images: not re-encoded
    assert report.failed == [] and report.removed == []
    _assert_each_path_in_exactly_the_point_of_its_bytes(engine, folder)
    assert engine.store.count() == 8  # the old paths[1] point is gone; the old paths[0] one keeps the copy
    assert lookups and all(w is not None and w.paths for w in lookups)  # by the paths index, never a full scan

    hits = engine.searcher.search(Query.image(rotated.convert("RGB")), 20)
    assert hits[0].path == str(paths[1]) and hits[0].score > 0.99
    assert [h.path for h in hits].count(str(paths[1])) == 1  # the file once, with its new picture

    again = engine.indexer.index([folder], prune=True)
    assert (again.added, again.renamed, again.removed, again.failed) == ([], [], [], [])
    _assert_each_path_in_exactly_the_point_of_its_bytes(engine, folder)


def test_a_ghost_left_by_an_older_version_goes_on_the_next_plain_index(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    paths = distinct_folder(folder, 3)
    engine.indexer.index([folder])
    stale = folder / "stale.png"  # a point an older version left holding paths[0] after an edit
    stale.write_bytes(_png(60))
    engine.indexer.index([stale])
    (stale_id, payload), = [(pid, p) for pid, p, _ in engine.store.scroll() if p["paths"] == [str(stale)]]
    engine.store.set_payload(stale_id, {**payload, "paths": [str(paths[0])]})
    stale.unlink()

    engine.indexer.index([folder])

    _assert_each_path_in_exactly_the_point_of_its_bytes(engine, folder)
    assert engine.store.count() == 3


# --------------------------------------------------------------------------------------------
# R2-6: names that are not UTF-8


@pytest.fixture
def cli_in_process(tmp_path: Path, model_path: Path, encoder: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`cli.main` in this process on tmp_path's store, with the session's model."""
    env = cli_env(tmp_path, model_path)
    for key in ("EMBEDDER_MODEL", "EMBEDDER_DEVICE", "QDRANT_PATH", "UPLOAD_DIR", "EMBEDDER_ENV_FILE"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    return env


def _cli_json(capsys: pytest.CaptureFixture, *argv: str) -> Any:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # one real process, given the raw bytes of a name as its argument
def test_names_that_are_not_utf8_are_indexed_shown_searched_and_pruned(
    tmp_path: Path, cli_in_process: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    album = os.path.join(os.fsencode(tmp_path), b"album")
    os.makedirs(os.path.join(album, b"D\xfcsseldorf"))  # Latin-1 folder and file names, as on old disks
    shown_as = {  # undecodable bytes show as \xNN, and a backslash that would read as one as \x5c
        b"M\xe9xico.png": "M\\xe9xico.png",
        b"D\xfcsseldorf/b.png": "D\\xfcsseldorf/b.png",
        b"M\\xe9xico.png": "M\\x5cxe9xico.png",  # valid UTF-8 that reads like the first: another file
        b"ok.png": "ok.png",
    }
    for i, name in enumerate(shown_as):
        with open(os.path.join(album, name), "wb") as fh:
            fh.write(_png(i))

    run = subprocess.run(  # a real process, the raw bytes as its argument
        [sys.executable.encode(), b"-m", b"embedder", b"index", album, b"--json"],
        cwd=ROOT, env=cli_in_process, capture_output=True, timeout=DEADLINE_S,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert b"Traceback" not in run.stderr
    report = json.loads(run.stdout)
    assert report["failed"] == [] and len(report["added"]) == 4
    assert all(p.isprintable() for p in report["added"])

    def found_by_own_pixels(name: bytes) -> str:
        hits = _cli_json(capsys, "search", "--image", os.fsdecode(os.path.join(album, name)), "-k", "1", "--json")
        return hits[0]["path"]

    from embedder_ui import widgets  # the pages turn the stored text back into the file, as the CLI does

    for name, text in shown_as.items():  # each file is found by its own pixels, under its own text
        stored = found_by_own_pixels(name)
        assert stored == f"{os.fsdecode(album)}/{text}"
        assert isinstance(widgets.thumbnail(stored, 10**8), bytes) and isinstance(widgets.preview(stored, 10**8), bytes)

    folder = os.fsdecode(os.path.join(album, b"D\xfcsseldorf"))
    hits = _cli_json(capsys, "search", "a red circle", "--folder", folder, "--json")
    assert [Path(h["path"]).name for h in hits] == ["b.png"]

    assert cli.main(["index", os.fsdecode(album)]) == 0  # human output, and nothing to do
    assert "Nothing new: all 4 files were already indexed" in capsys.readouterr().out

    os.remove(os.path.join(album, b"M\xe9xico.png"))
    report = _cli_json(capsys, "index", os.fsdecode(album), "--prune", "--json")
    assert [Path(p).name for p in report["removed"]] == ["M\\xe9xico.png"]  # and not its look-alike
    assert len(report["unchanged"]) == 3


def test_one_point_that_cannot_be_stored_fails_alone_and_the_batch_lands(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "album"
    paths = distinct_folder(folder, 5)
    poisoned = str(paths[2])
    import embedder.indexing.indexer as indexer

    real = indexer.new_payload

    def payload_with_a_bad_value(*args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = real(*args, **kwargs)
        return {**payload, "name": "\udce9"} if payload["paths"] == [poisoned] else payload

    monkeypatch.setattr(indexer, "new_payload", payload_with_a_bad_value)
    report = engine.indexer.index([folder])

    assert [f.path for f in report.failed] == [poisoned]
    assert report.failed[0].reason.startswith("could not be stored")
    assert len(report.added) == 4 and engine.store.count() == 4  # one batch: the other four landed


# --------------------------------------------------------------------------------------------
# R2-11: what the walk cannot reach is reported, not skipped


def _deep_folder(root: Path) -> tuple[bytes, bytes]:
    """Folders nested under `root` until the path is longer than PATH_MAX: (the last one that the
    system can still open, the first one it cannot). Made relative to open folders, as only that works."""
    component = b"d" * 200
    path = os.fsencode(root)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while len(path) < PATH_MAX:
            os.mkdir(component, dir_fd=fd)
            inner = os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, last, path = inner, path, path + b"/" + component
        return last, path
    finally:
        os.close(fd)


def _write_at(folder: bytes, name: bytes, data: bytes) -> None:
    """Write `folder/name`, reaching `folder` one component at a time (its full path may be too long)."""
    fd = os.open(b"/", os.O_RDONLY | os.O_DIRECTORY)
    for part in folder.strip(b"/").split(b"/"):
        inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.close(fd)
    with os.fdopen(out, "wb") as fh:
        fh.write(data)


def test_paths_too_long_and_folders_that_cannot_be_read_are_reported_failed(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    album = tmp_path / "album"
    distinct_folder(album, 2)
    last_open, too_long = _deep_folder(album)
    _write_at(too_long, b"lost.png", _png(10))  # its folder is longer than the system allows
    long_name = b"f" * 250 + b".png"
    _write_at(last_open, long_name, _png(11))  # its folder opens; the file's whole path is too long
    locked = album / "locked"
    locked.mkdir()
    (locked / "inside.png").write_bytes(_png(12))
    locked.chmod(0)  # counts for a normal user; root reads anyway, so the denial is also simulated
    scandir = os.scandir

    def denied(path: Any = ".") -> Any:
        if os.fsencode(path) == os.fsencode(locked):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    try:
        report = engine.indexer.index([album])
    finally:
        locked.chmod(0o755)

    reasons = {f.path: f.reason for f in report.failed}
    assert reasons.keys() == {os.fsdecode(too_long), os.fsdecode(last_open + b"/" + long_name), str(locked)}
    assert reasons[os.fsdecode(too_long)].startswith("path longer than the system allows")
    assert reasons[os.fsdecode(last_open + b"/" + long_name)].startswith("path longer than the system allows")
    assert "permission denied" in reasons[str(locked)]
    assert len(report.added) == 2 and engine.store.count() == 2
    assert report.summary().startswith("2 added, 3 failed in ")
