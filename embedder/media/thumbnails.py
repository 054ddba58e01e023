"""Small JPEG thumbnails on disk, named by the image's content hash, so a page of results never
decodes its 12 MP originals twice.

`ThumbnailCache(folder, max_mb)` keeps `<folder>/<2 hex>/<sha256>-<side>.jpg`: the whole picture
letterboxed on a `side`×`side` square (the result grid's cards). Files are written atomically
(a temporary file, then a rename), so a reader sees a whole thumbnail or none; one that is damaged
anyway (a truncated or foreign file) is ignored and made again. When the folder grows past
`max_mb`, the least recently used files go (a read refreshes a file's time at most once an hour;
the sweep runs once per ~5% of the budget written, not on every read). A folder that cannot be
written (read-only, full, missing permissions) is logged once and thumbnails are then only made in
memory: the page never breaks over its cache. JPEG, because Streamlit serves JPEG bytes as they
are (anything else it decodes and re-encodes on every page run).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from embedder.durable import write_bytes

if TYPE_CHECKING:
    from embedder.config import Settings

log = logging.getLogger(__name__)

SIDE = 256  # px: the grid's cards
QUALITY = 82
BACKGROUND = (236, 236, 236)  # a neutral grey around pictures that are not square
TOUCH_AFTER_S = 3600.0  # a read marks a file as recently used at most this often
SWEEP_FRACTION = 0.05  # sweep after writing this share of the budget
KEEP_FRACTION = 0.9  # a sweep removes the oldest files until the folder is this share of the budget
_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


def letterboxed(image: Image.Image, side: int = SIDE) -> Image.Image:
    """The whole picture centred on a neutral `side`×`side` square: shrunk to fit, never blown up."""
    picture = image.copy()
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    square = Image.new("RGB", (side, side), BACKGROUND)
    square.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
    return square


def thumbnail_bytes(image: Image.Image, side: int = SIDE) -> bytes:
    """JPEG bytes of `image` letterboxed on a `side` square."""
    buffer = io.BytesIO()
    letterboxed(image.convert("RGB"), side).save(buffer, "JPEG", quality=QUALITY, optimize=True)
    return buffer.getvalue()


def _whole_jpeg(data: bytes) -> bool:
    """A cheap check that a file is a complete JPEG (starts and ends with its markers)."""
    return len(data) > 64 and data.startswith(_JPEG_START) and data.rstrip(b"\x00").endswith(_JPEG_END)


class ThumbnailCache:
    """Thumbnails by content hash in `folder`, at most `max_mb` MB (0: disk cache off)."""

    def __init__(self, folder: Path, max_mb: int, side: int = SIDE) -> None:
        self.folder = Path(folder)
        self.budget = max_mb * 2**20
        self.side = side
        self.writable = max_mb > 0
        self._lock = threading.Lock()
        self._written = 0  # bytes written since the last sweep
        self._swept = False  # the first write in a process also checks the size once

    def path(self, sha256: str) -> Path:
        key = sha256.lower()
        return self.folder / key[:2] / f"{key}-{self.side}.jpg"

    def get(self, sha256: str) -> bytes | None:
        """The stored thumbnail, or None (missing, damaged, unreadable, or the cache is off)."""
        if self.budget <= 0 or not _valid_key(sha256):
            return None
        path = self.path(sha256)
        try:
            data = path.read_bytes()
            if not _whole_jpeg(data):
                log.info("ignoring a damaged thumbnail %s", path.name)
                return None
            if time.time() - path.stat().st_mtime > TOUCH_AFTER_S:
                os.utime(path)  # recently used: the sweep removes the oldest first
        except OSError:
            return None
        return data

    def put(self, sha256: str, data: bytes) -> bool:
        """Store `data` (atomically); False, with one log line per cache, when the folder cannot be written."""
        if not self.writable or not _valid_key(sha256):
            return False
        path = self.path(sha256)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(path, data, durable=False, prefix=".tmp-", suffix=".jpg")
        except OSError as exc:
            self._read_only(exc)
            return False
        with self._lock:
            self._written += len(data)
            due = not self._swept or self._written >= self.budget * SWEEP_FRACTION
            if due:
                self._written, self._swept = 0, True
        if due:
            self.sweep()
        return True

    def get_or_make(self, sha256: str | None, load: Callable[[], Image.Image]) -> bytes:
        """The stored thumbnail, else one made from `load()` (and stored, when `sha256` is known).
        `load`'s errors are the caller's (e.g. an image that cannot be decoded)."""
        if sha256:
            data = self.get(sha256)
            if data is not None:
                return data
        data = thumbnail_bytes(load(), self.side)
        if sha256:
            self.put(sha256, data)
        return data

    def add_from(self, sha256: str, image: Image.Image) -> bool:
        """At indexing, from an image already decoded for the model: stored only if it is big enough
        to give the same thumbnail a first view would (its long side ≥ the thumbnail's)."""
        if not self.writable or max(image.size) < self.side or self.path(sha256).exists():
            return False
        return self.put(sha256, thumbnail_bytes(image, self.side))

    def sweep(self) -> int:
        """Remove the least recently used thumbnails while the folder is over its budget; bytes freed."""
        entries = []
        total = 0
        try:
            for sub in os.scandir(self.folder):
                if not sub.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(sub.path):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_size
                    entries.append((st.st_mtime, st.st_size, entry.path))
        except OSError:
            return 0
        if total <= self.budget:
            return 0
        freed = 0
        for _, size, path in sorted(entries):
            if total - freed <= self.budget * KEEP_FRACTION:
                break
            if _unlink(Path(path)):
                freed += size
        log.info("thumbnail cache %s: removed %.1f MB of the least recently used", self.folder, freed / 2**20)
        return freed

    def _read_only(self, exc: OSError) -> None:
        with self._lock:
            if not self.writable:
                return
            self.writable = False
        log.warning(
            "thumbnail cache %s cannot be written (%s): thumbnails are made in memory only; "
            "set THUMB_DIR to a writable folder, or THUMB_CACHE_MB=0", self.folder, exc.strerror or exc,
        )


def _valid_key(sha256: str) -> bool:
    return len(sha256) >= 32 and all(c in "0123456789abcdefABCDEF" for c in sha256)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False


_shared: dict[tuple[Path, int], ThumbnailCache] = {}
_shared_lock = threading.Lock()


def shared_cache(settings: Settings) -> ThumbnailCache:
    """The process's one cache for THUMB_DIR and THUMB_CACHE_MB (the indexer's and the pages')."""
    key = (Path(settings.thumb_dir).expanduser(), settings.thumb_cache_mb)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ThumbnailCache(*key)
        return _shared[key]
