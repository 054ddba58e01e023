"""Writing files so that a crash, a kill or a full disk leaves the old version or the new one, never a part.

One way for the whole product: write under a temporary name beside the target, flush it to the disk,
rename it over the target, then flush the folder so the rename survives a power cut. A temporary
left by a failure is removed; the target is never touched until the new version is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_folder(folder: Path) -> None:
    """Make renames in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_name(target: Path) -> Path:
    """The temporary name a new version of `target` is written under (hidden, beside it, per process)."""
    return target.with_name(f".{target.name}.partial-{os.getpid()}")


@contextmanager
def written_whole(target: Path) -> Iterator[Path]:
    """A temporary file name beside `target`, renamed to it only if the block completes (else removed)."""
    tmp = partial_name(target)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_folder(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def folder_written_whole(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target` to fill; renamed to `target` only if the block completes
    (every file in it flushed first), else removed with everything in it. `target` must not exist:
    a folder is never replaced (FileExistsError)."""
    if target.exists():
        raise FileExistsError(target)
    tmp = partial_name(target)
    if tmp.exists():  # left by an earlier run of this process id that died: not a version of anything
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_folder(tmp)
        if target.exists():
            raise FileExistsError(target)
        os.rename(tmp, target)
        fsync_folder(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, whole or not at all."""
    with written_whole(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8), whole or not at all."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, document: Any) -> None:
    """Replace `path` with `document` as indented JSON, whole or not at all."""
    write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
