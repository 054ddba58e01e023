"""Prune forgets every indexed path that is no longer a regular image file (#25: 3).

A photo `x.jpg` is indexed, then its path is made into something else: a folder (with a picture in
it), a FIFO, a device, a socket, a dangling symlink, a symlink loop, a symlink to a folder, to a
device, to a text file. `index --prune` (and a prune alone, as the watcher runs it) must forget the
path, and no search may return it; the other photo stays.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import distinct_image

from embedder.engine import Engine
from embedder.query.terms import Query


def _folder(path: Path) -> None:
    path.mkdir()
    distinct_image(7).save(path / "inside.png")  # a picture of its own, found by the walk


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD (the symlink to /dev/null case still runs)")


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nothing-here.jpg")


def _loop(path: Path) -> None:
    path.symlink_to(path)


def _to_folder(path: Path) -> None:
    (path.parent / "elsewhere").mkdir()
    path.symlink_to(path.parent / "elsewhere")


def _to_device(path: Path) -> None:
    path.symlink_to("/dev/null")


def _to_text(path: Path) -> None:
    (path.parent / "notes.txt").write_text("shopping list: rice, beans\n")
    path.symlink_to(path.parent / "notes.txt")


KINDS: dict[str, Callable[[Path], None]] = {
    "folder": _folder, "fifo": _fifo, "device": _device, "socket": _socket, "dangling-symlink": _dangling,
    "symlink-loop": _loop, "symlink-to-folder": _to_folder, "symlink-to-device": _to_device,
    "symlink-to-text": _to_text,
}


@pytest.fixture
def indexed(engine: Engine, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    distinct_image(1).save(folder / "x.jpg")
    distinct_image(2).save(folder / "keep.jpg")
    assert len(engine.indexer.index([folder]).added) == 2
    (folder / "x.jpg").unlink()
    return folder


def stored_paths(engine: Engine) -> set[str]:
    return {p for _, payload, _ in engine.store.scroll() for p in payload["paths"]}


def found_paths(engine: Engine) -> set[str]:
    return {hit.path for hit in engine.searcher.search(Query.text("a photo"), 50)}


@pytest.mark.parametrize("kind", KINDS)
def test_index_prune_forgets_a_path_that_is_no_longer_a_regular_image_file(
    engine: Engine, indexed: Path, kind: str
) -> None:
    ghost = str(indexed / "x.jpg")
    KINDS[kind](indexed / "x.jpg")
    assert os.path.lexists(ghost)  # the premise: something is at the path, just no photo

    report = engine.indexer.index([indexed], prune=True)
    assert ghost not in stored_paths(engine), report
    assert ghost not in found_paths(engine)
    assert str(indexed / "keep.jpg") in stored_paths(engine)
    assert ghost in report.removed or kind == "symlink-to-text"  # that one the walk hashed: its path left the point
    if kind == "folder":
        assert str(indexed / "x.jpg" / "inside.png") in report.added
    assert engine.indexer.index([indexed], prune=True).removed == []  # a second run finds nothing more to forget


@pytest.mark.parametrize("kind", KINDS)
def test_a_prune_alone_forgets_it_too(engine: Engine, indexed: Path, kind: str) -> None:
    """A prune job (the watcher's, for a path whose file went) looks at the path, not at a walk."""
    ghost = str(indexed / "x.jpg")
    KINDS[kind](indexed / "x.jpg")
    assert engine.indexer.prune([indexed / "x.jpg"]) == [ghost]
    assert stored_paths(engine) == {str(indexed / "keep.jpg")}


def test_a_path_that_cannot_be_looked_at_is_not_forgotten(engine: Engine, indexed: Path, monkeypatch) -> None:
    """Permission denied or a disk error is no proof the photo is gone: prune keeps it."""
    distinct_image(1).save(indexed / "x.jpg")
    real_stat = os.stat

    def denied(path, *args, **kwargs):
        if os.fspath(path) == str(indexed / "x.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    assert engine.indexer.prune([indexed]) == []
    monkeypatch.undo()
    assert str(indexed / "x.jpg") in stored_paths(engine)
