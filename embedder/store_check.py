"""What an Edge shard's files say, read before the engine is allowed to touch them.

Qdrant Edge deletes what it cannot make sense of: a segment folder without a version file, and
(through this store, before) a shard without its edge_config.json. Nothing may be deleted unless it
provably holds no points: `holds_no_data` is that proof for a shard a creation left behind.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

BLOCK = 64 * 1024
WAL_HEADER = 8  # "wal\0" and a CRC seed; an empty WAL segment is all zeros after it
ID_TRACKER_PREFIXES = ("mutable_id_tracker.", "id_tracker.")


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the parts of a file that hold data, widened to whole BLOCKs.

    Holes of sparse files (Edge preallocates 32 MB pages that hold a few KB) are left out without
    reading them; where the file system cannot tell, the whole file is one extent.
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole after offset
                return
            start, end = offset, size
        start, end = start // BLOCK * BLOCK, min(size, -(-end // BLOCK) * BLOCK)
        yield start, end
        offset = end


def _blocks(path: Path, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of every BLOCK of the file's extents, zeros included."""
    with open(path, "rb") as fh:
        for start, end in _extents(fh.fileno(), size):
            fh.seek(start)
            while start < end:
                block = fh.read(min(BLOCK, end - start))
                if not block:
                    return  # shrank while reading
                yield start, block
                start += len(block)


def holds_points(segment: Path) -> bool:
    """Whether a segment folder has (or had) points: it has an id tracker file, whatever its size.

    A segment gets its id tracker with its first point, so a build that died before it finished
    has none.
    """
    return any(p.name.startswith(ID_TRACKER_PREFIXES) for p in segment.iterdir())


def _wal_is_empty(path: Path) -> bool:
    for offset, block in _blocks(path, path.stat().st_size):
        if (block[WAL_HEADER:] if offset == 0 else block).strip(b"\0"):
            return False
    return True


def holds_no_data(shard: Path) -> bool:
    """True only if the shard folder provably holds no points: no segment with ids and an empty WAL."""
    if not shard.exists():
        return True
    segments = shard / "segments"
    if segments.is_dir() and any(holds_points(s) for s in segments.iterdir() if s.is_dir()):
        return False
    wal = shard / "wal"
    logs = [p for p in wal.iterdir() if p.is_file() and p.name != "first-index"] if wal.is_dir() else []
    return all(_wal_is_empty(p) for p in logs)
