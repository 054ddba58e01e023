"""Building a shard's search graph aside: a copy of the shard, a child process to build it, the swap's files.

Qdrant Edge's `optimize()` holds the interpreter lock of its process for the whole graph build (up to
minutes at 1M images): in the app's process every search would wait. So `EdgeStore` (edge.py) copies
its live shard into the other of two folder names, lets `graph_child.py` build the copy in a
process of its own, replays onto the copy every write that landed meanwhile, and then makes the copy
the live shard. This module holds the parts that know nothing of the store: the copy (holes stay
holes: Edge preallocates files it barely fills), the child process, and removing a copy.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from embedder.errors import StoreError
from embedder.store.check import extents

log = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("graph_child.py")
RESULT_NAME = ".graph-build.json"  # in <collection>/: what the child reports (removed once read, and on open)
POLL_S = 0.2  # how often a waiting build looks whether it was cancelled
COPY_CHUNK = 8 * 2**20


def available() -> bool:
    """Whether graphs can be built aside here: the child must die with the app (Linux's prctl)."""
    return sys.platform.startswith("linux")


def allocated_bytes(folder: Path) -> int:
    """Disk space the files under `folder` take (holes not counted)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def copy_tree(source: Path, target: Path) -> int:
    """Copy `source` (a closed or flushed shard folder) to the new folder `target`, file data only:
    the holes of sparse files stay holes. Returns the bytes copied."""
    target.mkdir(parents=True)
    copied = 0
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_symlink():
            continue
        if path.is_dir():
            dest.mkdir(exist_ok=True)
        else:
            copied += copy_file(path, dest)
    return copied


def copy_file(source: Path, dest: Path) -> int:
    """One file's data extents, in the kernel where it can (copy_file_range)."""
    with open(source, "rb") as src, open(dest, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        dst.truncate(size)
        copied = 0
        for start, end in extents(src.fileno(), size):
            copied += _copy_range(src.fileno(), dst.fileno(), start, end)
        return copied


def _copy_range(src: int, dst: int, start: int, end: int) -> int:
    offset = start
    while offset < end:
        try:
            done = os.copy_file_range(src, dst, min(COPY_CHUNK, end - offset), offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            done = 0
        if done == 0:  # the file system cannot (or the source shrank): plain reads and writes
            data = os.pread(src, min(COPY_CHUNK, end - offset), offset)
            if not data:
                break
            done = os.pwrite(dst, data, offset)
        offset += done
    return offset - start


def remove_tree(folder: Path) -> None:
    """Remove a copy the store made (never its live shard): a build that did not finish, or the shard
    a finished one replaced."""
    if folder.exists():
        shutil.rmtree(folder)


class Child:
    """The graph build of one copied shard in a child process (graph_child.py), cancellable from any thread."""

    def __init__(self, shard: Path) -> None:
        self.shard = shard
        self._process: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Stop the build now (the store is closing): the child is killed, `run` raises."""
        self._cancelled.set()
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.kill()

    def run(self) -> dict[str, Any]:
        """Build, waiting without holding this interpreter; {"changed", "seconds"}, else a StoreError line."""
        result = self.shard.parent / RESULT_NAME
        result.unlink(missing_ok=True)
        with tempfile.TemporaryFile() as errors:
            with self._lock:
                if self._cancelled.is_set():
                    raise StoreError("The graph build was cancelled: the store is closing.")
                self._process = subprocess.Popen(
                    [sys.executable, str(CHILD), str(self.shard), str(result), str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                )
            started = time.perf_counter()
            try:
                while self._process.poll() is None:
                    try:
                        self._process.wait(POLL_S)
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:  # Ctrl-C while waiting: the child goes too
                self.cancel()
                self._process.wait()
                raise
            if self._cancelled.is_set():
                raise StoreError("The graph build was cancelled: the store is closing.")
            if self._process.returncode != 0:
                errors.seek(0)
                text = errors.read().decode("utf-8", "replace")
                last = next((line for line in reversed(text.splitlines()) if line.strip()), "no message")
                raise StoreError(f"the graph build stopped (exit status {self._process.returncode}): {last}")
        try:
            outcome = json.loads(result.read_text(encoding="utf-8"))
        finally:
            result.unlink(missing_ok=True)
        log.info("built the graph of %s aside in %.1f s", self.shard, time.perf_counter() - started)
        return {"changed": bool(outcome.get("changed")), "seconds": float(outcome.get("seconds", 0.0))}
