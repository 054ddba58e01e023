"""Reliability round 2, indexing: paths the system cannot open.

Real files and the real embedded store (Qdrant Edge).
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest

from embedder.engine import Engine
from faultkit import distinct_folder, distinct_image

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    distinct_image(i).save(buffer, "PNG")
    return buffer.getvalue()


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
    assert "2 added, 0 unchanged, 0 renamed, 0 removed, 3 failed" in report.summary()
