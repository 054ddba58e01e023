"""Reliability round 2, reading and decoding: nothing that is not a regular file is waited on.

Item R2-7: a FIFO swapped in after the walk hung `index` forever.
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import embedder.indexer
from embedder.engine import Engine
from embedder.errors import ImageError
from embedder.images import decode, hash_file, read_meta
from faultkit import distinct_image, encode_png, wait_until

LIMIT = 50_000_000
INDEX_DEADLINE_S = 60.0  # a run over four small images takes a few seconds; a hung one never ends


def album(root: Path) -> dict[str, bytes]:
    """Four distinct PNGs under `root`; returns their bytes by name."""
    root.mkdir(parents=True)
    files = {f"img{i}.png": encode_png(distinct_image(i)) for i in range(4)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def before_decoding(monkeypatch: pytest.MonkeyPatch, path: Path, change: Callable[[Path], None]) -> None:
    """Apply `change` to `path` after every file was hashed, right before its image is decoded."""
    real = embedder.indexer._decode_first

    def changed_first(paths, *args, **kwargs):
        if paths[0] == path:
            change(path)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(embedder.indexer, "_decode_first", changed_first)


# --------------------------------------------------------------------------------------------
# R2-7: a FIFO is never waited on


def make_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def unblock(fifo: Path) -> None:
    """Open the FIFO for writing and close it: a reader stuck opening it gets end-of-file."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting
        pass


def finishes(run: Callable[[], object], fifo: Path, what: str, deadline_s: float = INDEX_DEADLINE_S) -> object:
    """`run()` in a thread; its result, or a failure if it is still running after `deadline_s`.

    A run stuck opening the FIFO (the bug) is set free afterwards, so the test session can end."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    runner = threading.Thread(target=target, daemon=True, name="stuck-on-fifo?")
    runner.start()
    try:
        wait_until(lambda: not runner.is_alive(), what, deadline_s)
    finally:
        wait_until(lambda: unblock(fifo) or not runner.is_alive(), "the run to end once the FIFO was opened", 30)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]


def fifo_when_opened(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Swap `path` for a FIFO the first time anything opens it: after the walk, and after any
    check made on the path before opening it."""
    real_open = builtins.open

    def swapping_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path) and not path.is_fifo():
            make_fifo(path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", swapping_open)


@pytest.mark.parametrize("when", ["as-hashing-opens-it", "before-decoding"])
def test_a_fifo_swapped_in_after_the_walk_is_reported_not_waited_on(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    root = tmp_path / "album"
    album(root)
    target = root / "img0.png"
    if when == "as-hashing-opens-it":
        fifo_when_opened(monkeypatch, target)
    else:
        before_decoding(monkeypatch, target, make_fifo)

    report = finishes(lambda: engine.indexer.index([root]), target, "the index run to finish")

    assert {Path(f.path).name: f.reason for f in report.failed} == {"img0.png": "not a regular file"}
    assert sorted(Path(p).name for p in report.added) == ["img1.png", "img2.png", "img3.png"]


@pytest.mark.parametrize(
    "read",
    [hash_file, lambda path: decode(path, LIMIT), lambda path: read_meta(path, LIMIT)],
    ids=["hash_file", "decode", "read_meta"],
)
def test_every_reader_refuses_a_fifo_at_once(tmp_path: Path, read: Callable[[Path], object]) -> None:
    """The one safe open is used by every reader: hashing, decoding and reading the header."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)

    def refused() -> str:
        with pytest.raises(ImageError) as caught:
            read(fifo)
        return str(caught.value)

    assert finishes(refused, fifo, "the FIFO to be refused", deadline_s=30) == "not a regular file"
