"""Writing files so that a crash at any moment leaves the old file or the new one, never a part.

One helper for every file the product writes whole (settings, journals, the store's record, uploads,
thumbnails, caches, backups): write under a temporary name beside the target, then rename over it.
`durable=True` also flushes the data and the rename to the disk (a power cut keeps it); caches can
do without.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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


@contextmanager
def written_whole(target: Path, durable: bool = True, prefix: str | None = None, suffix: str = "") -> Iterator[Path]:
    """A new temporary file beside `target` for the block to fill; renamed to `target` only if the
    block completes, else removed. `prefix` names the temporary file (default `.NAME.partial-`)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=prefix or f".{target.name}.partial-", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        if durable:
            fsync_folder(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: Path, data: bytes, durable: bool = True, prefix: str | None = None, suffix: str = "") -> None:
    """`data` as the whole of `target` (see `written_whole`)."""
    with written_whole(target, durable, prefix, suffix) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(target: Path, text: str, durable: bool = True) -> None:
    """`text` (UTF-8) as the whole of `target`."""
    write_bytes(target, text.encode("utf-8"), durable)


def write_json(target: Path, document: Any, durable: bool = True, indent: int | None = 2) -> None:
    """`document` as JSON (UTF-8, non-ASCII kept) as the whole of `target`. A path that is not
    UTF-8 (its bytes as lone surrogates, as Python reads it) is written as a JSON escape, `\\udcff`,
    which reads back as the same path."""
    text = json.dumps(document, ensure_ascii=False, indent=indent)
    write_bytes(target, text.encode("utf-8", "backslashreplace"), durable)


@contextmanager
def folder_written_whole(target: Path) -> Iterator[Path]:
    """A new temporary folder beside `target` for the block to fill; renamed to `target` only if the
    block completes (every file in it flushed first), else removed with everything in it. `target`
    must not exist: a folder is never replaced (FileExistsError)."""
    if target.exists():
        raise FileExistsError(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
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
