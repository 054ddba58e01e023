"""Camera RAW files for tests, written on the spot: a real DNG (a TIFF with a Bayer mosaic and the
tags DNG readers need), with or without an embedded JPEG preview.

The mosaic is sampled from an ordinary RGB picture (linear light, RGGB), and the colour matrix says
the camera sees linear sRGB, so a demosaic gives back the picture's colours.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# TIFF field types
BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
# XYZ (D65) → linear sRGB: the "camera" of these files sees sRGB primaries.
XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))
WHITE = 65535
_C = np.arange(256) / 255
# sRGB 8-bit samples → linear light as 16-bit sensor values: what a sensor records of each.
LINEAR = np.rint(np.where(_C <= 0.04045, _C / 12.92, ((_C + 0.055) / 1.055) ** 2.4) * WHITE).astype("<u2")


def bayer(picture: Image.Image) -> np.ndarray:
    """The RGGB mosaic a sensor would record of `picture` (even sides), as 16-bit samples."""
    rgb = np.asarray(picture.convert("RGB"))
    h, w = rgb.shape[:2]
    mosaic = np.empty((h, w), dtype="<u2")
    mosaic[0::2, 0::2] = LINEAR[rgb[0::2, 0::2, 0]]
    mosaic[0::2, 1::2] = LINEAR[rgb[0::2, 1::2, 1]]
    mosaic[1::2, 0::2] = LINEAR[rgb[1::2, 0::2, 1]]
    mosaic[1::2, 1::2] = LINEAR[rgb[1::2, 1::2, 2]]
    return mosaic


def _rational(value: float, signed: bool = False) -> tuple[int, int]:
    return round(value * 10000), 10000


class _Tiff:
    """A little-endian TIFF writer: enough for a DNG with one SubIFD."""

    def __init__(self) -> None:
        self.buf = bytearray(b"II*\x00\x00\x00\x00\x00")

    def blob(self, data: bytes) -> int:
        if len(self.buf) % 2:
            self.buf += b"\x00"
        offset = len(self.buf)
        self.buf += data
        return offset

    def ifd(self, tags: dict[int, tuple[int, object]]) -> int:
        """Write an IFD (values that do not fit in 4 bytes go before it); returns its offset."""
        entries = []
        for tag in sorted(tags):
            kind, value = tags[tag]
            data = self._pack(kind, value)
            count = len(data) // {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, SRATIONAL: 8}[kind]
            if len(data) <= 4:
                field = data.ljust(4, b"\x00")
            else:
                field = struct.pack("<I", self.blob(data))
            entries.append(struct.pack("<HHI", tag, kind, count) + field)
        body = struct.pack("<H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"
        return self.blob(body)

    @staticmethod
    def _pack(kind: int, value: object) -> bytes:
        if kind == ASCII:
            return str(value).encode() + b"\x00"
        values = value if isinstance(value, (list, tuple)) else [value]
        if kind == BYTE:
            return bytes(values)
        if kind == SHORT:
            return struct.pack(f"<{len(values)}H", *values)
        if kind == LONG:
            return struct.pack(f"<{len(values)}I", *values)
        fmt = "<ii" if kind == SRATIONAL else "<II"
        return b"".join(struct.pack(fmt, *_rational(v)) for v in values)

    def patch(self, ifd: int, tags: dict[int, tuple[int, object]], tag: int, value: int) -> None:
        """Set a LONG tag of the IFD at `ifd` (written with `tags`) that fits in its entry."""
        entry = ifd + 2 + 12 * sorted(tags).index(tag)
        struct.pack_into("<I", self.buf, entry + 8, value)

    def finish(self, first_ifd: int) -> bytes:
        struct.pack_into("<I", self.buf, 4, first_ifd)
        return bytes(self.buf)


def dng_bytes(
    picture: Image.Image,
    preview: Image.Image | None = None,
    orientation: int = 1,
    taken: str | None = "2021:07:14 09:30:00",
) -> bytes:
    """A DNG holding `picture` as a Bayer mosaic; with `preview`, a JPEG preview of it in IFD0 (as
    cameras and Adobe's converter write one). `taken` goes in the EXIF DateTimeOriginal. The mosaic
    comes last, as cameras write it: a file cut short loses pixels, not its header."""
    mosaic = bayer(picture)
    height, width = mosaic.shape
    tiff = _Tiff()
    raw_tags: dict[int, tuple[int, object]] = {
        254: (LONG, 0),  # NewSubFileType: the main image
        256: (LONG, width), 257: (LONG, height),
        258: (SHORT, 16), 259: (SHORT, 1), 262: (SHORT, 32803),  # 16 bits, uncompressed, CFA
        273: (LONG, 0), 277: (SHORT, 1), 278: (LONG, height), 279: (LONG, len(mosaic.tobytes())),
        284: (SHORT, 1),
        33421: (SHORT, [2, 2]), 33422: (BYTE, [0, 1, 1, 2]),  # CFARepeatPatternDim, CFAPattern: RGGB
        50714: (LONG, 0), 50717: (LONG, WHITE),  # BlackLevel, WhiteLevel
    }
    raw_ifd = tiff.ifd(raw_tags)
    exif = {36867: (ASCII, taken)} if taken else {}
    exif_ifd = tiff.ifd(exif) if exif else None
    main: dict[int, tuple[int, object]] = {
        271: (ASCII, "Embedder"), 272: (ASCII, "Test DNG"), 274: (SHORT, orientation),
        305: (ASCII, "tests/rawfiles.py"),
        330: (LONG, raw_ifd),  # SubIFDs
        50706: (BYTE, [1, 4, 0, 0]), 50707: (BYTE, [1, 1, 0, 0]),  # DNGVersion, DNGBackwardVersion
        50708: (ASCII, "Embedder Test DNG"),  # UniqueCameraModel
        50721: (SRATIONAL, [v for row in XYZ_TO_SRGB for v in row]),  # ColorMatrix1
        50778: (SHORT, 21),  # CalibrationIlluminant1: D65
        50728: (RATIONAL, [1.0, 1.0, 1.0]),  # AsShotNeutral
    }
    if taken:
        main[306] = (ASCII, taken)
    if exif_ifd is not None:
        main[34665] = (LONG, exif_ifd)
    if preview is not None:
        jpeg = io.BytesIO()
        preview.convert("RGB").save(jpeg, "JPEG", quality=90)
        strip = tiff.blob(jpeg.getvalue())
        main.update({
            254: (LONG, 1),  # a reduced-resolution copy of the main image
            256: (LONG, preview.width), 257: (LONG, preview.height),
            258: (SHORT, [8, 8, 8]), 259: (SHORT, 7), 262: (SHORT, 6),  # JPEG, YCbCr
            273: (LONG, strip), 277: (SHORT, 3), 278: (LONG, preview.height), 279: (LONG, len(jpeg.getvalue())),
            284: (SHORT, 1),
        })
    else:  # IFD0 is a tiny uncompressed RGB thumbnail, as the DNG spec recommends
        thumb = picture.convert("RGB").resize((max(1, width // 8), max(1, height // 8)))
        strip = tiff.blob(thumb.tobytes())
        main.update({
            254: (LONG, 1), 256: (LONG, thumb.width), 257: (LONG, thumb.height),
            258: (SHORT, [8, 8, 8]), 259: (SHORT, 1), 262: (SHORT, 2),
            273: (LONG, strip), 277: (SHORT, 3), 278: (LONG, thumb.height), 279: (LONG, len(thumb.tobytes())),
            284: (SHORT, 1),
        })
    first = tiff.ifd(main)
    tiff.patch(raw_ifd, raw_tags, 273, tiff.blob(mosaic.tobytes()))  # StripOffsets
    return tiff.finish(first)


def dng(path: Path, picture: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dng_bytes(picture, **kwargs))
    return path
