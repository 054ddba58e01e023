"""Real image files for tests, made on the spot: good ones and every kind of bad one."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 30)}


def solid(path: Path, colour: str | tuple[int, int, int] = "red", size: tuple[int, int] = (96, 64), **save) -> Path:
    """A plain colour image with a little noise, saved in the format the suffix says."""
    rgb = COLOURS.get(colour, colour) if isinstance(colour, str) else colour
    rng = np.random.default_rng(abs(hash((rgb, size))) % 2**32)
    pixels = np.clip(np.array(rgb, dtype=np.int16) + rng.integers(-8, 9, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path, **save)
    return path


def jpeg_bytes(colour: str = "red", size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buf, "JPEG")
    return buf.getvalue()


def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A small PNG whose header claims side×side pixels of zeros (a decompression bomb)."""
    raw = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * side
    data = b"".join(raw.compress(row) for _ in range(200)) + raw.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def huge_jpeg_header(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A JPEG whose SOF header claims a huge size; the rest is a real small JPEG's data."""
    data = bytearray(jpeg_bytes("blue", (16, 16)))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def with_orientation(path: Path, orientation: int, size: tuple[int, int] = (80, 40)) -> Path:
    """A landscape image, left half red, right half blue, tagged with an EXIF orientation."""
    img = Image.new("RGB", size, COLOURS["blue"])
    img.paste(COLOURS["red"], (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path
