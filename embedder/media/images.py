"""Image files: discovery, content hashing and safe decoding to RGB.

Nothing here knows about models or Qdrant. Every failure to read an image becomes an
`ImageError` whose message is a reason a person can act on.

Which files are pictures comes from `embedder.media.formats` (the installed decoders); camera RAW files go
through LibRaw (`embedder.media.raw`): their embedded preview when it is large enough, else a half-size
develop. Files are opened only if they are regular files, without ever blocking (`open_regular`), and
the indexer decodes exactly the bytes it hashed (`decode(..., sha256=…)`). Decoding has a bounded
cost: the pixel limit caps each image, large images are converted tile by tile, all decodes of the
process share one memory budget, and a JPEG may not have absurdly many scans.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import stat
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.ExifTags import IFD, Base

from embedder.media import raw as rawfile
from embedder.errors import ImageError
from embedder.media.excludes import Excludes
from embedder.media.formats import (  # IMAGE_EXTENSIONS, is_image_name: used from here by the pages and uploads
    FORMATS, IMAGE_EXTENSIONS, NOT_AN_IMAGE, RAW_FORMATS, Skip, is_image_name, is_raw_name, skipped,  # noqa: F401
)

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20
# What turns an image with an EXIF orientation upright (the table of `ImageOps.exif_transpose`).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
CHANGED = "changed while it was being indexed; run index again"
# Files up to this size are read once and decoded from memory (exactly the bytes that were hashed);
# bigger ones are decoded from the open file and hashed again afterwards.
WHOLE_READ_MAX = 64 << 20
# Each scan of a progressive JPEG is a pass over the whole image. Encoders write about 10 (libjpeg's
# default script) and none writes more than a few dozen; thousands make a 1 MB file take minutes.
MAX_JPEG_SCANS = 100
SOS = b"\xff\xda"  # JPEG start-of-scan marker; never occurs inside entropy-coded data
# Large images are converted to RGB a tile at a time, so a conversion never copies the whole image.
TILE_SIDE = 1024
TILE_BYTES_PER_PIXEL = 32  # a tile's temporary copies while it is converted, at their largest
TILE_BYTES = TILE_BYTES_PER_PIXEL * TILE_SIDE * TILE_SIDE
# Large images are box-reduced to at least this many times the model's input before the exact
# resize: Pillow's `reducing_gap` advice, under which the result matches a resize from full size.
REDUCING_GAP = 3
# What a format's decoder holds besides the decoded image, per pixel of the full-size image (measured
# with Pillow 13): a progressive JPEG keeps every DCT coefficient (2 bytes a sample, even when drafted),
# libtiff a strip or an RGBA raster, WebP its canvas, the frame copied out of it and libwebp's own
# buffers. Formats not listed here (AVIF, HEIF: the codec's YUV planes and its RGB copy) are counted as WebP is.
DECODER_BYTES_PER_PIXEL = {"PNG": 0, "GIF": 0, "BMP": 0, "TIFF": 4, "WEBP": 12}

TIFF_MAGIC = (b"II*\x00", b"MM\x00*")  # NEF, CR2, ARW, DNG, PEF, … are TIFF files inside


@dataclass(frozen=True)
class ImageMeta:
    """What the file says about itself, before any resizing."""

    width: int
    height: int
    format: str
    taken_at: float | None  # EXIF date taken as wall-clock seconds (local time read as UTC), when present
    taken_offset: str | None = None  # the camera clock's UTC offset, `+02:00`, when recorded


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, upright
    meta: ImageMeta


WalkErrorCallback = Callable[[Path, str], None]  # (what could not be reached, why)
SkipCallback = Callable[[Path, Skip], None]  # (a file left out on purpose, what kind it is)
PATH_MAX = os.pathconf("/", "PC_PATH_MAX")  # bytes, counting the final NUL


def discover(
    roots: Iterable[Path | str],
    on_error: WalkErrorCallback | None = None,
    exclude: Excludes | None = None,
    on_skip: SkipCallback | None = None,
) -> Iterator[Path]:
    """Yield image files under `roots` (files are taken as they are), sorted, each folder once.

    Files of a kind left out on purpose (videos, SVG, PDF, …: `formats.skipped`) go to `on_skip`,
    as does a file named as a root that is no picture; other files (sidecars, notes) are ignored.

    Hidden files and folders, and those `exclude` matches (see `embedder.media.excludes`), are skipped:
    a skipped folder is never listed nor entered. Symlinked folders are followed, but a folder
    already walked (by device and inode) is never entered again, so symlink loops cannot hang the
    walk. What cannot be reached (a folder that cannot be read, a path longer than the system
    allows) goes to `on_error` with a reason, instead of being yielded; by default it is logged.
    """
    report = on_error or _log_walk_error
    exclude = exclude or Excludes()

    def walk_error(exc: OSError) -> None:
        report(Path(exc.filename), _walk_reason(exc))

    seen: set[tuple[int, int]] = set()
    for root in roots:
        root = Path(os.path.abspath(Path(root).expanduser()))
        if os.path.isfile(root):
            if is_image_name(root.name):
                yield root
            elif on_skip:
                on_skip(root, skipped(root.name) or NOT_AN_IMAGE)
            continue
        above = Path(os.path.relpath(root, exclude.base(str(root), root))).parts  # root's place below an anchor
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=walk_error):
            try:
                st = os.stat(dirpath)
            except OSError as exc:
                walk_error(exc)
                dirnames[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            here = above + Path(os.path.relpath(dirpath, root)).parts
            dirnames[:] = sorted(d for d in dirnames if not exclude.skips((*here, d)))  # pruned: never listed
            for name in sorted(filenames):
                if exclude.skips((*here, name)):
                    continue
                if not is_image_name(name):
                    if on_skip and (kind := skipped(name)):
                        on_skip(Path(dirpath) / name, kind)
                    continue
                path = Path(dirpath) / name
                if len(os.fsencode(path)) >= PATH_MAX:
                    report(path, _too_long(path))
                else:
                    yield path


def _walk_reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return _too_long(Path(exc.filename))
    what = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
    return f"folder cannot be read ({what}): the images in it were not indexed"


def _too_long(path: Path) -> str:
    return (
        f"path longer than the system allows ({len(os.fsencode(path))} bytes, at most {PATH_MAX - 1}): "
        "move or rename it to index it"
    )


def _log_walk_error(path: Path, reason: str) -> None:
    log.warning("skipped %s: %s", path, reason)


@dataclass(frozen=True)
class FileDigest:
    """A file's SHA-256, with the size and modification time of the bytes that were hashed."""

    sha256: str
    size: int
    mtime: float


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading if it is a regular file; otherwise `ImageError("not a regular file")`.

    The open never blocks, so a FIFO or a device put where a file was is refused, not waited on.
    """
    try:
        fh = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            raise ImageError("not a regular file") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ImageError("not a regular file")
        os.set_blocking(fh.fileno(), True)
    except BaseException:
        fh.close()
        raise
    return fh


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))


def hash_file(path: Path) -> FileDigest:
    """SHA-256 of a regular file's bytes, read in chunks (never the whole file in memory)."""
    try:
        with open_regular(path) as fh:
            sha256, size = _stream_hash(fh)
            return FileDigest(sha256, size, os.fstat(fh.fileno()).st_mtime)
    except OSError as exc:
        raise ImageError(_os_reason(exc)) from None


def file_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, read in chunks (never the whole file in memory)."""
    return hash_file(path).sha256


def _stream_hash(fh: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _written(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether an open file was written to between two `fstat`s of it (a write always moves ctime)."""
    return any(getattr(before, field) != getattr(after, field) for field in ("st_size", "st_mtime_ns", "st_ctime_ns"))


def bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def point_id(content_hash: str) -> str:
    """The Qdrant point id of an image: a UUID made from its content hash."""
    return str(uuid.UUID(hex=content_hash[:32]))


def decode(
    source: Path | bytes,
    max_pixels: int,
    min_side: int | None = None,
    sha256: str | None = None,
    name: str | None = None,
) -> Decoded:
    """Decode `source` to an upright RGB image, or raise `ImageError` with a reason.

    With `min_side`, large images come back smaller but with their shorter side still at least
    `min_side` (JPEGs are decoded at a reduced scale, which is much faster than full size). With
    `sha256`, a file is decoded only if it still holds exactly the bytes with that hash (else
    `ImageError(CHANGED)`), so what is decoded is what was hashed. A camera RAW is known by its
    name: the file's, or for bytes `name` (an upload's).
    """
    if not isinstance(source, bytes):
        return _decode_file(Path(source), max_pixels, min_side, sha256)
    with _image_errors(max_pixels):
        if name and is_raw_name(name):
            cost = _raw_cost(source, max_pixels)
            with _memory_for(cost, max_pixels):
                return _decode_raw(source, max_pixels, min_side, cost, _raw_format(name))
        cost = _probe_cost(io.BytesIO(source), max_pixels, min_side)
        with _memory_for(cost, max_pixels):
            return _decode(io.BytesIO(source), max_pixels, min_side, cost)


def _decode_file(path: Path, max_pixels: int, min_side: int | None, sha256: str | None) -> Decoded:
    """Files up to WHOLE_READ_MAX are read once, checked against `sha256` and decoded from memory;
    larger ones are decoded from the open file, then hashed again and checked for any write.
    A camera RAW is always read whole (LibRaw reads from memory)."""
    with _image_errors(max_pixels), open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if is_raw_name(path.name):
            return _decode_raw_file(fh, size, max_pixels, min_side, sha256, _raw_format(path.name))
        in_memory = size <= WHOLE_READ_MAX
        cost = _probe_cost(fh, max_pixels, min_side) + (size if in_memory else 0)
        with _memory_for(cost, max_pixels):
            fh.seek(0)
            if in_memory:
                data = fh.read(WHOLE_READ_MAX + 1)
                if sha256 and bytes_hash(data) != sha256:
                    raise ImageError(CHANGED)
                return _decode(io.BytesIO(data), max_pixels, min_side, cost)
            before = os.fstat(fh.fileno())
            decoded = _decode(fh, max_pixels, min_side, cost)
            if sha256:  # the same bytes before and after, and not a single write in between
                fh.seek(0)
                if _stream_hash(fh)[0] != sha256 or _written(before, os.fstat(fh.fileno())):
                    raise ImageError(CHANGED)
            return decoded


def read_meta(path: Path, max_pixels: int) -> ImageMeta:
    """Size, format and EXIF date of the image at `path`, read from its header: no pixel is decoded.

    Fails as `decode` would on the same file, with the same `ImageError` reasons. A PNG may keep its
    EXIF block after the pixel data, which Pillow finds only by decoding every pixel: only an EXIF
    block ahead of the pixels is read here.
    """
    with _image_errors(max_pixels), open_regular(path) as fh:
        if is_raw_name(path.name):
            size = os.fstat(fh.fileno()).st_size
            with _memory_for(size, max_pixels):
                return _raw_meta(fh.read(size), max_pixels, _raw_format(path.name))
        if canvas := _webp_canvas(fh):  # Pillow allocates a WebP's canvas as it opens it
            _checked_size(canvas, max_pixels)
        with Image.open(fh, formats=FORMATS) as img:
            width, height = _checked_size(img.size, max_pixels)
            exif_at_hand = img.format != "PNG" or "exif" in img.info
            return ImageMeta(width, height, img.format or "unknown", *(_taken(img) if exif_at_hand else (None, None)))


def _raw_format(name: str) -> str:
    return RAW_FORMATS.get(Path(name).suffix.lower(), "RAW")


def _decode_raw_file(
    fh: BinaryIO, size: int, max_pixels: int, min_side: int | None, sha256: str | None, fmt: str
) -> Decoded:
    """A RAW file, read whole twice: once to learn its size (LibRaw reads its header from memory), then,
    holding the memory its decode takes, to decode exactly the bytes that were hashed."""
    with _memory_for(size, max_pixels):
        cost = size + _raw_cost(fh.read(size), max_pixels)
    with _memory_for(cost, max_pixels):
        fh.seek(0)
        data = fh.read(size + 1)
        if len(data) != size or (sha256 and bytes_hash(data) != sha256):
            raise ImageError(CHANGED)
        return _decode_raw(data, max_pixels, min_side, cost - size, fmt)


def _raw_cost(data: bytes, max_pixels: int) -> int:
    """The bytes decoding the RAW in `data` holds at its peak besides `data`: a preview (never more than
    the file) and the develop's working images, which also bound decoding a preview."""
    with rawfile.open_raw(data) as raw:
        info = rawfile.info(raw)
    width, height = _checked_size((info.width, info.height), max_pixels)
    return _raw_peak(len(data), width * height)


def _raw_peak(file_bytes: int, pixels: int) -> int:
    return file_bytes + rawfile.RAW_BYTES_PER_PIXEL * pixels + TILE_BYTES


def _decode_raw(data: bytes, max_pixels: int, min_side: int | None, granted: int, fmt: str) -> Decoded:
    """The embedded preview if it is at least as large as needed (`min_side`, or the half-size develop
    for a full-size decode) and no larger than the sensor, else a half-size develop."""
    with rawfile.open_raw(data) as raw:
        info = rawfile.info(raw)
        width, height = _checked_size((info.width, info.height), max_pixels)
        if _raw_peak(len(data), width * height) > granted:  # not the file that was probed
            raise ImageError(CHANGED)
        taken = _header_taken(data)
        wanted = min(min(width, height) // 2, min_side or max_pixels)
        picked = _raw_preview(raw, width * height, wanted, max_pixels, min_side, granted - len(data))
        if picked is not None:
            image, orientation, preview_taken = picked
            orientation = info.orientation if info.orientation != 1 else orientation
            taken = taken if taken[0] is not None else preview_taken
        else:
            developed = rawfile.develop(raw)  # upright already
            image = Image.fromarray(developed)
            del developed
            image, orientation = _converted(image, _reduction(image.size, min_side)), 1
            taken = taken if taken[0] is not None else (rawfile.taken_at(raw), None)
    if orientation in UPRIGHT:
        image = image.transpose(UPRIGHT[orientation])
    if min_side and min(image.size) > min_side:
        image = _shrink(image, min_side)
    return Decoded(image, ImageMeta(width, height, fmt, *taken))


def _raw_preview(
    raw: Any, sensor_pixels: int, wanted: int, max_pixels: int, min_side: int | None, granted: int
) -> tuple[Image.Image, int, tuple[float | None, str | None]] | None:
    """The RAW's preview as RGB (JPEG ones at a reduced scale), its own EXIF orientation and date; None
    if it has none, if it is too small (shorter side under `wanted`), too large, or cannot be read."""
    preview = rawfile.preview(raw)
    if isinstance(preview, np.ndarray):
        height, width = preview.shape[:2]
        if min(width, height) < wanted or width * height > sensor_pixels:
            return None
        return Image.fromarray(preview), 1, (None, None)
    if preview is None:
        return None
    try:
        stream = io.BytesIO(preview)
        with Image.open(stream, formats=("JPEG",)) as img:
            if min(img.size) < wanted or img.width * img.height > sensor_pixels:
                return None
        image, orientation, meta = _rgb_pixels(stream, max_pixels, min_side, granted)
        return image, orientation, (meta.taken_at, meta.taken_offset)
    except Exception as exc:  # noqa: BLE001 - a broken preview: develop the RAW data instead
        log.info("RAW preview not usable (%s): developing the RAW data instead", exc)
        return None


def _raw_meta(data: bytes, max_pixels: int, fmt: str) -> ImageMeta:
    """A RAW's size, format and date, from its header (and its preview's EXIF): nothing is developed."""
    with rawfile.open_raw(data) as raw:
        info = rawfile.info(raw)
        width, height = _checked_size((info.width, info.height), max_pixels)
        taken = _header_taken(data)
        if taken[0] is None and isinstance(preview := rawfile.preview(raw), bytes):
            taken = _header_taken(preview, formats=("JPEG",))
    return ImageMeta(width, height, fmt, *taken)


def _header_taken(data: bytes, formats: tuple[str, ...] = ("TIFF",)) -> tuple[float | None, str | None]:
    """The EXIF date and offset of a RAW that is a TIFF inside (or of a JPEG preview), read from the header."""
    if formats == ("TIFF",) and data[:4] not in TIFF_MAGIC:
        return None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=formats) as img:
                return _taken(img)
    except Exception:  # noqa: BLE001 - a date we cannot read is a date we do not have
        return None, None


def decode_memory_limit(max_pixels: int) -> int:
    """Bytes that all decodes of the process hold at once, at most: 8 bytes a pixel of the largest
    image allowed (what decoding one for the model takes), a file read whole and a tile. A decode
    that alone needs more (a full-size one) waits until it can run alone; one that needs more than
    four times this (more than any image within the pixel limit does) is refused."""
    return 8 * max_pixels + WHOLE_READ_MAX + TILE_BYTES


@contextmanager
def _memory_for(nbytes: int, max_pixels: int) -> Iterator[None]:
    """Hold `nbytes` of the decode memory budget for the block, or refuse a decode that needs too much."""
    limit = decode_memory_limit(max_pixels)
    if nbytes > 4 * limit:
        raise ImageError(
            f"decoding it would take about {nbytes / 2**20:,.0f} MB, more than any image within the pixel "
            f"limit needs ({4 * limit / 2**20:,.0f} MB at MAX_IMAGE_PIXELS={max_pixels})"
        )
    with _BUDGET.share(nbytes, limit):
        yield


class _MemoryBudget:
    """The bytes that decodes hold, shared by every thread: a decode waits until its share fits."""

    def __init__(self) -> None:
        self._held = 0
        self._released = threading.Condition()

    @contextmanager
    def share(self, nbytes: int, limit: int) -> Iterator[None]:
        with self._released:
            self._released.wait_for(lambda: self._held == 0 or self._held + nbytes <= limit)
            self._held += nbytes
        try:
            yield
        finally:
            with self._released:
                self._held -= nbytes
                self._released.notify_all()


_BUDGET = _MemoryBudget()


@contextmanager
def _image_errors(max_pixels: int) -> Iterator[None]:
    """Turn whatever reading an image raises inside the block into an `ImageError` with a reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image, or a format that is not supported") from None
    except Image.DecompressionBombError:
        raise ImageError(f"too many pixels: above the limit of {max_pixels / 1e6:.0f} megapixels (MAX_IMAGE_PIXELS)") from None
    except OSError as exc:
        raise ImageError(_os_reason(exc)) from None
    except MemoryError:
        raise ImageError("too large to decode in the memory available") from None
    except ValueError as exc:
        text = " ".join(str(exc).split())  # codecs' messages (libheif's) may run over several lines
        if "decompressed data too large" in text.lower():
            raise ImageError("a metadata block inside the file is far too large (a decompression bomb?)") from None
        if "end of file" in text.lower():
            raise ImageError("the file is truncated or damaged") from None
        raise ImageError(f"corrupt image data ({text})") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure on a bad file is a bad file
        raise ImageError(f"corrupt image data ({type(exc).__name__}: {' '.join(str(exc).split())})") from None


def _probe_cost(stream: BinaryIO, max_pixels: int, min_side: int | None) -> int:
    """The bytes decoding the image in `stream` will hold at its peak, from its header alone."""
    if canvas := _webp_canvas(stream):  # Pillow reads a WebP whole (twice over) as it opens it
        width, height = _checked_size(canvas, max_pixels)
        decoder = width * height * DECODER_BYTES_PER_PIXEL["WEBP"] + 2 * _stream_size(stream)
        return _peak_bytes(canvas, 4, decoder, min_side)
    with Image.open(stream, formats=FORMATS) as img:
        width, height = _checked_size(img.size, max_pixels)
        _draft(img, min_side)
        return _decode_cost(img, width * height, min_side)


def _webp_canvas(stream: BinaryIO) -> tuple[int, int] | None:
    """The canvas size a WebP's header declares (as Pillow reads it); None for other files."""
    head = stream.read(30)
    stream.seek(0)
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    return None


def _stream_size(stream: BinaryIO) -> int:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    return size


def _decode(stream: BinaryIO, max_pixels: int, min_side: int | None, granted: int) -> Decoded:
    image, orientation, meta = _rgb_pixels(stream, max_pixels, min_side, granted)
    if orientation in UPRIGHT:  # the full-size pixels are gone by now: only the result is copied
        image = image.transpose(UPRIGHT[orientation])
    if min_side and min(image.size) > min_side:
        image = _shrink(image, min_side)
    return Decoded(image, meta)


def _rgb_pixels(
    stream: BinaryIO, max_pixels: int, min_side: int | None, granted: int
) -> tuple[Image.Image, int, ImageMeta]:
    """The image in `stream` as RGB (box-reduced towards `min_side`), its EXIF orientation and meta."""
    with Image.open(stream, formats=FORMATS) as img:
        width, height = _checked_size(img.size, max_pixels)
        _draft(img, min_side)
        if _decode_cost(img, width * height, min_side) > granted:  # not the file that was probed
            raise ImageError(CHANGED)
        if img.format in ("JPEG", "MPO"):
            _check_scans(stream)
        meta = ImageMeta(width, height, img.format or "unknown", *_taken(img))
        orientation = _orientation(img)
        img.load()
        return _converted(img, _reduction(img.size, min_side)), orientation, meta


def _checked_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """An image's size; `ImageError` if it has no pixels or too many."""
    width, height = size
    if width < 1 or height < 1:
        raise ImageError("the image has no pixels")
    if width * height > max_pixels:
        raise ImageError(
            f"{width}×{height} is {width * height / 1e6:.0f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.0f} (MAX_IMAGE_PIXELS)"
        )
    return width, height


def _draft(img: Image.Image, min_side: int | None) -> None:
    """Have a JPEG decoded at the smallest scale that keeps its shorter side ≥ `min_side`."""
    if min_side and img.format == "JPEG":
        img.draft("RGB", _draft_request(*img.size, min_side))


def _draft_request(width: int, height: int, min_side: int) -> tuple[int, int]:
    """Pillow keeps both sides ≥ the request: scale it so the shorter side stays ≥ min_side."""
    scale = min_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode_cost(img: Image.Image, full_pixels: int, min_side: int | None) -> int:
    """Bytes that decoding `img` (opened, drafted; `full_pixels` before drafting) holds at its peak."""
    if img.format in ("JPEG", "MPO"):
        per_pixel = 2 * getattr(img, "layers", 4) if img.info.get("progressive") else 0
    else:
        per_pixel = DECODER_BYTES_PER_PIXEL.get(img.format or "", DECODER_BYTES_PER_PIXEL["WEBP"])
    return _peak_bytes(img.size, _pixel_bytes(img.mode), full_pixels * per_pixel, min_side)


def _peak_bytes(size: tuple[int, int], pixel_bytes: int, decoder_bytes: int, min_side: int | None) -> int:
    """The decoded pixels, what the decoder holds besides them, the RGB result and its upright copy,
    and a tile's temporaries."""
    width, height = size
    factor = _reduction(size, min_side)
    result = 4 * -(-width // factor) * -(-height // factor)
    tile = TILE_BYTES_PER_PIXEL * min(width * height, TILE_SIDE * TILE_SIDE)
    return width * height * pixel_bytes + decoder_bytes + 2 * result + tile


def _pixel_bytes(mode: str) -> int:
    """How many bytes Pillow keeps a pixel of `mode` in (every multi-band mode takes 4)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _reduction(size: tuple[int, int], min_side: int | None) -> int:
    """The whole factor an image is box-reduced by before its final resize to `min_side`: its shorter
    side stays ≥ REDUCING_GAP × `min_side`, so the resize still sees every detail it would keep."""
    return max(1, min(size) // (REDUCING_GAP * min_side)) if min_side else 1


def _check_scans(stream: BinaryIO) -> None:
    """Refuse a JPEG with more scans than any encoder writes: each is a pass over the whole image."""
    scans = _occurrences(stream, SOS)
    if scans > MAX_JPEG_SCANS:
        raise ImageError(
            f"a JPEG with {scans} scans (photos have about 10, the limit is {MAX_JPEG_SCANS}): "
            "decoding it could take minutes"
        )


def _occurrences(stream: BinaryIO, marker: bytes) -> int:
    """How often the two-byte `marker` occurs in all of `stream`; the stream's position is kept."""
    position = stream.tell()
    stream.seek(0)
    count, last = 0, b""
    while chunk := stream.read(HASH_CHUNK):
        count += chunk.count(marker) + (last + chunk[:1] == marker)
        last = chunk[-1:]
    stream.seek(position)
    return count


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(Base.Orientation, 1))
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        log.info("ignoring unreadable EXIF orientation: %s", exc)
        return 1


def _converted(img: Image.Image, factor: int) -> Image.Image:
    """A loaded image as RGB, box-reduced `factor` times, converted a tile at a time: however large
    the image, a conversion only ever copies a tile of it."""
    if img.mode == "RGB" and factor == 1:
        return img
    width, height = img.size
    sample_range = _sample_range(img)
    result = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for box in _tiles(img.size, max(factor, TILE_SIDE // factor * factor)):  # whole boxes of `factor`
        result.paste(_tile_to_rgb(img.crop(box), sample_range, factor), (box[0] // factor, box[1] // factor))
    return result


def _tiles(size: tuple[int, int], side: int) -> Iterator[tuple[int, int, int, int]]:
    width, height = size
    for top in range(0, height, side):
        for left in range(0, width, side):
            yield left, top, min(left + side, width), min(top + side, height)


def _sample_range(img: Image.Image) -> tuple[float, float] | None:
    """The lowest and highest finite sample of a 16/32-bit or float image; None for other modes."""
    if not (img.mode.startswith("I") or img.mode == "F"):
        return None
    try:
        low, high = img.getextrema()
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    except ValueError:  # a mode Pillow cannot measure (big-endian 16-bit): measure it here
        pass
    low, high = np.inf, -np.inf
    for box in _tiles(img.size, TILE_SIDE):
        values = np.asarray(img.crop(box))
        values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    return (low, high) if low <= high else (0.0, 0.0)


def _tile_to_rgb(tile: Image.Image, sample_range: tuple[float, float] | None, factor: int) -> Image.Image:
    """A tile as RGB, box-reduced `factor` times. Samples of more than 8 bits are averaged before
    they are mapped to 8 bits (the map is linear), so only the reduced tile goes through numpy."""
    if sample_range is not None:
        if tile.mode not in ("I", "F"):
            tile = tile.convert("I")  # 16-bit modes, which Pillow cannot reduce
        if factor > 1:
            tile = tile.reduce(factor)
        return Image.fromarray(_to_uint8(np.asarray(tile), *sample_range)).convert("RGB")
    rgb = _to_rgb(tile)
    return rgb.reduce(factor) if factor > 1 else rgb


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map 16/32-bit or float samples to 0..255: 16-bit by its full range, others by the image's own
    (`low`..`high`). Works in float32, in place: 5 bytes a sample, never float64 copies."""
    if values.dtype.kind == "f":
        offset, scale = (0.0, 255.0) if low >= 0 and high <= 1 else (low, 255.0 / ((high - low) or 1.0))
    elif low >= 0 and high <= 255:
        offset, scale = 0.0, 1.0
    elif low >= 0 and high <= 65535:
        offset, scale = 0.0, 1 / 257
    else:
        offset, scale = low, 255.0 / ((high - low) or 1.0)
    out = values.astype(np.float32)
    out -= offset
    out *= scale
    np.nan_to_num(out, copy=False)  # a NaN sample is black
    np.clip(np.rint(out, out=out), 0, 255, out=out)
    return out.astype(np.uint8)


def _shrink(img: Image.Image, min_side: int) -> Image.Image:
    """Resize so the shorter side is exactly `min_side`, as CLIP's own preprocessing does.

    The longer side is truncated, not rounded, exactly as CLIP's processor (and torchvision's
    Resize) size it: the processor's own resize then finds nothing to do, instead of resampling
    a 299-px side to 298 px and shifting the centre crop by a pixel (bench/index_throughput.py
    measures the difference to a full-size decode).
    """
    width, height = img.size
    if width <= height:
        size = (min_side, max(min_side, int(min_side * height / width)))
    else:
        size = (max(min_side, int(min_side * width / height)), min_side)
    return img.resize(size, Image.Resampling.BICUBIC)


def _taken(img: Image.Image) -> tuple[float | None, str | None]:
    """When the picture was taken, as the camera's clock showed it, and the clock's UTC offset.

    The date is DateTimeOriginal (else the file's DateTime, as before), with its SubsecTime, as
    *wall-clock seconds*: that local time read as if it were UTC, so `2024-06-01 23:30` is
    1717284600.0 whatever the offset, and a day's filter and the date shown on a card (both in
    UTC) see the day the photographer saw. The offset (OffsetTimeOriginal, else OffsetTime) comes
    back as `+02:00` to be shown beside it; None when absent or malformed. Anything unreadable
    is no date, never a failed image.
    """
    try:
        exif = img.getexif()
        details = exif.get_ifd(IFD.Exif)
        candidates = (
            (details.get(Base.DateTimeOriginal), details.get(Base.SubsecTimeOriginal),
             details.get(Base.OffsetTimeOriginal) or details.get(Base.OffsetTime)),
            (exif.get(Base.DateTime), details.get(Base.SubsecTime), details.get(Base.OffsetTime)),
        )
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        log.info("ignoring an unreadable EXIF block: %s", exc)
        return None, None
    for date, subsec, offset in candidates:
        taken = _exif_wall_clock(date, subsec)
        if taken is not None:
            return taken, _exif_offset(offset)
    return None, None


_EXIF_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def _exif_text(raw: object) -> str:
    text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else str(raw) if raw is not None else ""
    return text.strip("\x00 ")


def _exif_wall_clock(raw: object, subsec: object) -> float | None:
    """`2024:06:01 23:30:00` (+ SubsecTime `25` → .25 s) as wall-clock seconds; None if no such date."""
    found = _EXIF_DATE.match(_exif_text(raw))
    if not found:
        return None
    try:
        taken = datetime(*map(int, found.groups()), tzinfo=timezone.utc)  # type: ignore[misc]
    except ValueError:  # 0000:00:00 00:00:00, month 13, …
        return None
    fraction = _exif_text(subsec)
    return taken.timestamp() + (float(f"0.{fraction}") if fraction.isdigit() and fraction.isascii() else 0.0)


def _exif_offset(raw: object) -> str | None:
    """`+02:00` from an EXIF offset, if it is one that exists on Earth (-12:00 to +14:00)."""
    found = _EXIF_OFFSET.fullmatch(_exif_text(raw))
    if not found:
        return None
    sign, hours, minutes = found.group(1), int(found.group(2)), int(found.group(3))
    if minutes >= 60 or hours * 60 + minutes > (14 * 60 if sign == "+" else 12 * 60):
        return None
    return f"{sign}{hours:02d}:{minutes:02d}"


def _os_reason(exc: OSError) -> str:
    text = str(exc).lower()
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "the file no longer exists"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if "truncated" in text or "broken data stream" in text or "image file is" in text:
        return "the file is truncated or damaged"
    return f"could not be read ({exc.strerror or exc})"
