"""Discovery, hashing and safe decoding over real files, odd ones included."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder.errors import ImageError
from embedder.media.images import decode, discover, file_hash, point_id
from imagefiles import COLOURS, huge_jpeg_header, png_bomb, solid, with_orientation

LIMIT = 50_000_000


def test_discovery_is_recursive_case_insensitive_and_skips_hidden(tmp_path: Path) -> None:
    solid(tmp_path / "a.JPG")
    solid(tmp_path / "deep" / "er" / "b.png")
    solid(tmp_path / ".hidden" / "c.png")
    solid(tmp_path / ".d.png")
    (tmp_path / "notes.txt").write_text("hi")
    found = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert found == ["a.JPG", "deep/er/b.png"]


def test_symlink_loops_do_not_hang_discovery(tmp_path: Path) -> None:
    solid(tmp_path / "album" / "x.png")
    os.symlink(tmp_path, tmp_path / "album" / "loop")
    os.symlink(tmp_path / "album", tmp_path / "album" / "self")
    found = list(discover([tmp_path]))
    assert [p.name for p in found] == ["x.png"]


def test_a_single_file_root_is_taken_as_it_is(tmp_path: Path) -> None:
    path = solid(tmp_path / "one.webp")
    assert list(discover([path])) == [path]


def test_hash_depends_on_bytes_only(tmp_path: Path) -> None:
    a = solid(tmp_path / "a.png", "red")
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    c = solid(tmp_path / "c.png", "blue")
    assert file_hash(a) == file_hash(b) != file_hash(c)
    assert point_id(file_hash(a)) == point_id(file_hash(b))


@pytest.mark.parametrize(("orientation", "left"), [(1, "red"), (3, "blue"), (6, "red"), (8, "blue")])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, left: str) -> None:
    decoded = decode(with_orientation(tmp_path / "o.jpg", orientation), LIMIT)
    w, h = decoded.image.size
    assert (w > h) == (orientation in (1, 3))
    pixel = np.asarray(decoded.image)[h // 2 if orientation in (1, 3) else 2, 2 if orientation in (1, 3) else w // 2]
    # Orientations 1/3: the left column; 6/8: the top row. Which colour lands there proves the rotation.
    assert np.abs(pixel.astype(int) - COLOURS[left]).max() < 60


@pytest.mark.parametrize(
    ("mode", "maker"),
    [
        ("RGBA", lambda: Image.new("RGBA", (20, 20), (255, 0, 0, 0))),
        ("LA", lambda: Image.new("LA", (20, 20), (0, 0))),
        ("P", lambda: _palette_with_transparency()),
        ("CMYK", lambda: Image.new("CMYK", (20, 20), (0, 255, 255, 0))),
        ("I;16", lambda: Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16))),
        ("L", lambda: Image.new("L", (20, 20), 255)),
        ("1", lambda: Image.new("1", (20, 20), 1)),
    ],
)
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str, maker) -> None:
    img = maker()
    assert img.mode == mode
    suffix = ".jpg" if mode == "CMYK" else ".tiff" if mode == "I;16" else ".png"
    path = tmp_path / f"m{suffix}"
    img.save(path)
    decoded = decode(path, LIMIT).image
    assert decoded.mode == "RGB"
    if mode in ("RGBA", "LA", "P", "I;16", "L", "1"):
        # Transparent pixels land on white; full-scale 16-bit and white greys stay white.
        assert np.asarray(decoded).min() >= 250


def _palette_with_transparency() -> Image.Image:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    return img


def test_animated_images_give_their_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ("red", "blue", "green")]
    for suffix in (".gif", ".webp"):
        path = tmp_path / f"anim{suffix}"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
        r, g, b = decode(path, LIMIT).image.getpixel((15, 15))
        assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "not an image"),
        ("text.jpg", b"hello, I am not a picture", "not an image"),
        ("page.png", b"<html><body>nope</body></html>", "not an image"),
        ("archive.jpg", b"PK\x03\x04" + b"\x00" * 100, "not an image"),
    ],
)
def test_non_images_get_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        decode(path, LIMIT)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files_get_a_reason(tmp_path: Path, suffix: str) -> None:
    full = solid(tmp_path / f"full{suffix}", size=(200, 200))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with pytest.raises(ImageError, match="truncated|damaged|corrupt"):
        decode(cut, LIMIT)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageError, match="megapixels|pixels"):
        decode(bomb, LIMIT)


def test_huge_jpeg_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="above the limit"):
        decode(huge_jpeg_header(tmp_path / "huge.jpg"), LIMIT)


def test_pixel_limit_is_the_setting(tmp_path: Path) -> None:
    path = solid(tmp_path / "a.png", size=(200, 100))
    assert decode(path, 20_000).image.size == (200, 100)
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        decode(path, 19_999)


def test_unreadable_file_gets_a_reason(tmp_path: Path) -> None:
    path = solid(tmp_path / "locked.png")
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: permissions do not stop reads")
    with pytest.raises(ImageError, match="permission"):
        decode(path, LIMIT)


def test_broken_exif_keeps_the_picture(tmp_path: Path) -> None:
    path = tmp_path / "badexif.jpg"
    Image.new("RGB", (40, 20), "red").save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert decode(path, LIMIT).image.size == (40, 20)


def test_min_side_shrinks_large_images_but_keeps_the_short_side(tmp_path: Path) -> None:
    for suffix in (".jpg", ".png"):
        path = solid(tmp_path / f"big{suffix}", size=(1600, 1200))
        decoded = decode(path, LIMIT, min_side=224)
        assert min(decoded.image.size) == 224
        assert decoded.meta.width == 1600 and decoded.meta.height == 1200


def test_exif_date_taken_is_read(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2021:07:04 12:30:00"
    path = tmp_path / "dated.jpg"
    Image.new("RGB", (10, 10)).save(path, exif=exif.tobytes())
    assert decode(path, LIMIT).meta.taken_at == 1625401800.0


def test_bytes_decode_like_files(tmp_path: Path) -> None:
    path = solid(tmp_path / "a.png")
    assert decode(path.read_bytes(), LIMIT).image.tobytes() == decode(path, LIMIT).image.tobytes()
