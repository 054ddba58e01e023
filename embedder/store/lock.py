"""The embedded store's folder lock: one process at a time, told at once who holds it.

Light on purpose (no Qdrant, no torch): the CLI takes it before loading anything heavy.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embedder.errors import StoreError, StoreInUseError

LOCK_NAME = ".embedder.lock"


class FolderLock:
    """An exclusive lock on an embedded storage folder, held for as long as the store is open."""

    def __init__(self, folder: Path) -> None:
        with _folder_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / LOCK_NAME
            self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.seek(0)
            owner = self._fh.read().strip() or "another process"
            self._fh.close()
            raise StoreInUseError(
                f"The storage folder {folder} is in use by {owner}. Close the other app or command "
                "first, or set QDRANT_PATH to another folder, or run a Qdrant server (QDRANT_URL) "
                "so several processes can share one index."
            ) from None
        try:
            with _folder_errors(folder):
                self._fh.seek(0)
                self._fh.truncate()
                self._fh.write(f"process {os.getpid()}")
                self._fh.flush()
        except StoreError:
            self.release()
            raise

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


@contextmanager
def _folder_errors(folder: Path) -> Iterator[None]:
    """Turn a storage folder that cannot be made or written into one `StoreError` line."""
    try:
        yield
    except OSError as exc:
        raise StoreError(unusable_folder_message(folder, exc)) from None


def unusable_folder_message(folder: Path, exc: OSError) -> str:
    """Why QDRANT_PATH cannot hold a store, and what to do about it."""
    fix = "Set QDRANT_PATH to a folder this user can write to (it is created if missing)."
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker == folder:
        return f"QDRANT_PATH {folder} is a file, not a folder. {fix}"
    if blocker is not None:
        return f"QDRANT_PATH {folder} cannot be a folder: {blocker} is a file, not a folder. {fix}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"Cannot write to {folder}: permission denied. {fix}"
    if exc.errno == errno.EROFS:
        return f"Cannot write to {folder}: it is on a read-only file system. {fix}"
    if exc.errno == errno.ENOSPC:
        return f"Cannot write to {folder}: no space left on the disk. Free some space and run again (nothing was lost)."
    return f"Cannot use the storage folder {folder} (QDRANT_PATH): {exc.strerror or exc}. {fix}"
