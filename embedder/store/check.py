"""Damage checks for an Edge shard's files, made before the engine is allowed to read them.

Qdrant Edge checksums only its write-ahead log. A segment file that was deleted, truncated, zeroed or
had bytes flipped can make it drop a whole segment (it deletes segment folders without a version
file), return a fraction of the points or other scores, panic, try to allocate gigabytes, or spend
seconds to minutes opening. So at a clean close `manifest` records every segment file's size and,
within a byte budget, a digest of its contents; `check_manifest` compares them before the next
open. Between a clean close and the next open nothing may change these files: any difference is
damage.

After a killed process the WAL replay legitimately changes segment files, so only the structure is
checked then (`check_segments`): the engine may discard a segment without a version file only when
that segment provably holds no points (a build that died before it finished).

Files the engine rewrites on load or checks itself are left out: `edge_config.json` (rewritten on
every load; the store parses it) and the WAL (`wal/`, checksummed by the engine; at a clean close
every entry in it is already in the segments).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

BLOCK = 64 * 1024
ZERO_BLOCK = bytes(BLOCK)
WAL_HEADER = 8  # "wal\0" and a CRC seed; an empty WAL segment is all zeros after it
ID_TRACKER_PREFIXES = ("mutable_id_tracker.", "id_tracker.")
VERSION_FILE = "version.info"


def extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
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


def data_bytes(path: Path, size: int) -> int:
    """How many bytes `digest` reads for this file."""
    with open(path, "rb") as fh:
        return sum(end - start for start, end in extents(fh.fileno(), size))


def _blocks(path: Path, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of every BLOCK of the file's extents, zeros included."""
    with open(path, "rb") as fh:
        for start, end in extents(fh.fileno(), size):
            fh.seek(start)
            while start < end:
                block = fh.read(min(BLOCK, end - start))
                if not block:
                    return  # shrank while reading
                yield start, block
                start += len(block)


def digest(path: Path, size: int) -> str:
    """A SHA-256 of the file's size and non-zero blocks.

    Blocks of zeros are left out, so the digest depends only on the contents, not on how the file
    is laid out on disk (a backup copied without holes has the same digest).
    """
    h = hashlib.sha256(size.to_bytes(8, "little"))
    for offset, block in _blocks(path, size):
        if block != ZERO_BLOCK[: len(block)]:
            h.update(offset.to_bytes(8, "little"))
            h.update(block)
    return h.hexdigest()


def checked_files(shard: Path) -> dict[str, int]:
    """Every file under the shard that the manifest covers: relative path -> size."""
    files: dict[str, int] = {}
    for path in shard.rglob("*"):
        rel = path.relative_to(shard).as_posix()
        if rel == "edge_config.json" or rel.startswith("wal/") or any(p.startswith(".") for p in rel.split("/")):
            continue
        if path.is_file():
            files[rel] = path.stat().st_size
    return files


def manifest(shard: Path, budget: int) -> dict[str, str]:
    """{path: "size digest"}, smallest files first while their data fits in `budget` bytes, else "size"."""
    entries: dict[str, str] = {}
    left = budget
    for rel, size in sorted(checked_files(shard).items(), key=lambda item: (item[1], item[0])):
        entries[rel] = str(size)
        cost = data_bytes(shard / rel, size)
        if cost <= left:
            entries[rel] += f" {digest(shard / rel, size)}"
            left -= cost
    return entries


def check_manifest(shard: Path, recorded: dict[str, str]) -> str | None:
    """What differs from the manifest of the last clean close (None when nothing does)."""
    present = checked_files(shard)
    for rel, entry in sorted(recorded.items()):
        size, _, value = entry.partition(" ")
        if rel not in present:
            return f"{rel} is missing"
        if present[rel] != int(size):
            return f"{rel} has changed size since the store was last closed ({present[rel]} bytes, not {size})"
        if value and digest(shard / rel, present[rel]) != value:
            return f"{rel} has changed since the store was last closed"
    extra = sorted(set(present) - set(recorded))
    if extra:
        return f"{extra[0]} was not there when the store was last closed"
    return None


def holds_points(segment: Path) -> bool:
    """Whether a segment folder has (or had) points: it has an id tracker file, whatever its size.

    A segment gets its id tracker with its first point, so a build that died before it finished
    has none.
    """
    return any(p.name.startswith(ID_TRACKER_PREFIXES) for p in segment.iterdir())


def check_segments(shard: Path) -> str | None:
    """A segment that holds points but has lost its version file (the engine would delete it)."""
    segments = shard / "segments"
    if not segments.is_dir():
        return None
    for segment in sorted(segments.iterdir()):
        if not segment.is_dir() or segment.suffix == ".deleted":
            continue  # `.deleted`: an old segment the engine was removing after an optimize
        version = segment / VERSION_FILE
        if (not version.is_file() or version.stat().st_size == 0) and holds_points(segment):
            return f"segments/{segment.name}/{VERSION_FILE} is missing or empty"
    return None


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
