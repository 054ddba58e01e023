"""Camera RAW files through LibRaw (rawpy): size, orientation, the embedded preview, a half-size develop.

Only what LibRaw does lives here; `embedder.media.images` decides which picture to use and accounts for
the memory. Every LibRaw failure becomes an `ImageError` with a reason.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone

import numpy as np
import rawpy

from embedder.errors import ImageError

# What a half-size develop holds, per pixel of the sensor: the unpacked 16-bit mosaic (2 bytes), the
# half-size 4-colour 16-bit working image (2), the 8-bit RGB result (0.75) and its Pillow copy (1),
# rounded up. It also bounds decoding a preview no larger than the sensor at a reduced scale.
RAW_BYTES_PER_PIXEL = 8
# LibRaw's `flip` (dcraw's numbering) → the EXIF orientation that turns a preview upright.
FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


@dataclass(frozen=True)
class RawInfo:
    width: int  # the developed image, before turning it upright
    height: int
    orientation: int  # EXIF numbering


@contextmanager
def raw_errors() -> Iterator[None]:
    """Turn what LibRaw raises inside the block into an `ImageError` with a reason."""
    try:
        yield
    except rawpy.LibRawFileUnsupportedError:
        raise ImageError("not a camera RAW file that LibRaw reads (damaged, or a camera too new)") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError, rawpy.LibRawInputClosedError):
        raise ImageError("the file is truncated or damaged") from None
    except (rawpy.LibRawUnsufficientMemoryError, rawpy.LibRawMemPoolOverflowError, rawpy.LibRawTooBigError):
        raise ImageError("too large to decode in the memory available") from None
    except rawpy.LibRawError as exc:
        raise ImageError(f"corrupt RAW data ({type(exc).__name__}: {exc})") from None


def open_raw(data: bytes) -> rawpy.RawPy:
    """LibRaw opened on `data` (it reads the header; nothing is unpacked yet). Close it after use."""
    with raw_errors():
        return rawpy.imread(io.BytesIO(data))  # LibRaw keeps this very bytes object: no copy


def info(raw: rawpy.RawPy) -> RawInfo:
    sizes = raw.sizes
    return RawInfo(sizes.width, sizes.height, FLIP_TO_EXIF.get(sizes.flip, 1))


def preview(raw: rawpy.RawPy) -> bytes | np.ndarray | None:
    """The embedded preview: JPEG bytes, an RGB array, or None when the file has none LibRaw can give."""
    try:
        with raw_errors():
            thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, NotImplementedError, ImageError):
        return None  # no usable preview: the RAW data itself is developed instead
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return bytes(thumb.data)
    data = np.asarray(thumb.data)
    return data if data.ndim == 3 and data.shape[2] == 3 and data.dtype == np.uint8 else None


def develop(raw: rawpy.RawPy) -> np.ndarray:
    """A half-size demosaic with the camera's white balance, 8-bit RGB, already upright (LibRaw applies
    the file's orientation to what it develops)."""
    with raw_errors():
        return raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)


def taken_at(raw: rawpy.RawPy) -> float | None:
    """The capture time LibRaw read (UTC seconds of the camera's clock, as EXIF dates are kept here);
    only once the RAW data is unpacked (after `develop`), else None."""
    try:
        stamp = raw.other.timestamp  # local naive: LibRaw ran mktime() on the camera's wall clock
    except Exception:  # noqa: BLE001 - a date we cannot read is a date we do not have
        return None
    if stamp.timestamp() <= 0:
        return None
    return stamp.replace(tzinfo=timezone.utc).timestamp()
