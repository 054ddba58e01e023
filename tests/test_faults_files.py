"""Hostile files: one real indexing run over every kind of bad, odd and awkward file.

Every file must end up either indexed or reported with a reason; none may crash or hang the run;
bombs must be refused before their pixels are allocated (measured in a fresh process).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder.engine import Engine
from embedder.media.images import decode
from faultkit import ROOT, distinct_image
from imagefiles import COLOURS, huge_jpeg_header, png_bomb, solid

LIMIT = 50_000_000
UNICODE_NAME = "ünïcødé 写真 🐱.png"
DEPTH = 60


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def text_chunk_bomb(path: Path) -> Path:
    """A valid 8×8 PNG carrying a zTXt comment that inflates to 200 MB."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    png = buf.getvalue()
    bomb = zlib.compress(b"\0" * 200_000_000, 9)
    path.write_bytes(png[:33] + _chunk(b"zTXt", b"Comment\0\0" + bomb) + png[33:])
    return path


def with_quadrant_orientation(path: Path, orientation: int) -> Path:
    """80×40, the top-left quadrant red and the rest blue, tagged with an EXIF orientation."""
    img = Image.new("RGB", (80, 40), COLOURS["blue"])
    img.paste(COLOURS["red"], (0, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


def hostile_folder(root: Path) -> tuple[dict[str, str], set[str]]:
    """Make every hostile file; return {name: expected failure reason (regex)} and the names that must index."""
    root.mkdir(parents=True)
    fail: dict[str, str] = {}
    good: set[str] = set()

    def bad(name: str, content: bytes, reason: str) -> None:
        (root / name).write_bytes(content)
        fail[name] = reason

    bad("zero.jpg", b"", "not an image")
    bad("text.jpg", b"just some words, not a picture\n" * 10, "not an image")
    bad("page.jpg", b"<!doctype html><html><script>alert(1)</script></html>", "not an image")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("inner.jpg", b"\xff\xd8\xff" + b"\0" * 100)
    bad("archive.jpg", zipped.getvalue(), "not an image")
    full_jpg = io.BytesIO()
    distinct_image(1, (256, 256)).save(full_jpg, "JPEG")
    bad("truncated.jpg", full_jpg.getvalue()[: len(full_jpg.getvalue()) // 2], "truncated|damaged")
    full_png = io.BytesIO()
    distinct_image(2, (256, 256)).save(full_png, "PNG")
    bad("truncated.png", full_png.getvalue()[: len(full_png.getvalue()) // 2], "truncated|damaged")
    png_bomb(root / "bomb.png")
    fail["bomb.png"] = "megapixels"
    huge_jpeg_header(root / "huge-header.jpg")
    fail["huge-header.jpg"] = "megapixels.*MAX_IMAGE_PIXELS"
    text_chunk_bomb(root / "ztxt-bomb.png")
    fail["ztxt-bomb.png"] = "too large|corrupt"
    os.mkfifo(root / "pipe.jpg")  # hashing it would block forever
    fail["pipe.jpg"] = "not a regular file"
    os.symlink("/dev/zero", root / "endless.jpg")  # hashing it would never end
    fail["endless.jpg"] = "not a regular file"
    os.symlink(root / "nowhere.png", root / "dangling.png")
    fail["dangling.png"] = "could not be read|no longer exists"
    solid(root / "locked.png", "yellow")
    fail["locked.png"] = "permission denied"

    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(root / "cmyk.jpg")
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(root / "sixteen.png")
    Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50).save(root / "sixteen.tiff")
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    palette.save(root / "palette-alpha.png", transparency=0)
    frames = [Image.new("RGB", (30, 30), c) for c in ("red", "blue", "green")]
    for suffix in (".gif", ".webp"):
        frames[0].save(root / f"animated{suffix}", save_all=True, append_images=frames[1:], duration=40, loop=0)
    for n in range(1, 9):
        with_quadrant_orientation(root / f"orientation-{n}.jpg", n)
    Image.new("RGB", (40, 20), "purple").save(
        root / "broken-exif.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x00\x01\x02"
    )
    solid(root / UNICODE_NAME, "green")
    solid(root / "with space.jpg", "blue")
    deep = root.joinpath(*(f"level{i:02d}" for i in range(DEPTH)))
    solid(deep / "deep.png", (90, 40, 200))
    (root / "album").mkdir()
    solid(root / "album" / "inside.png", (10, 200, 200))
    os.symlink(root, root / "album" / "loop-to-root")  # a folder symlink loop
    os.symlink(root / "album", root / "album" / "loop-to-self")
    good |= {
        "cmyk.jpg", "sixteen.png", "sixteen.tiff", "palette-alpha.png", "animated.gif", "animated.webp",
        "broken-exif.jpg", UNICODE_NAME, "with space.jpg", "deep.png", "inside.png",
    } | {f"orientation-{n}.jpg" for n in range(1, 9)}  # fmt: skip
    return fail, good


@pytest.fixture
def deny_reads(monkeypatch: pytest.MonkeyPatch):
    """Make chosen files unreadable. Permission bits do not stop root, so the denial is simulated
    where the product reads files (every read goes through `open`), as the OS would answer."""
    denied: set[str] = set()
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) in denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    return denied


def test_every_hostile_file_is_indexed_or_reported_in_one_run(engine: Engine, tmp_path: Path, deny_reads) -> None:
    root = tmp_path / "hostile"
    fail, good = hostile_folder(root)
    (root / "locked.png").chmod(0)  # effective when not root; the simulation covers root
    deny_reads.add(str(root / "locked.png"))

    report = engine.indexer.index([root])

    failed = {Path(f.path).name: f.reason for f in report.failed}
    added = [Path(p).name for p in report.added]
    assert sorted(added) == sorted(good), f"failed instead: { {n: failed[n] for n in good if n in failed} }"
    assert set(failed) == set(fail)
    for name, pattern in fail.items():
        assert failed[name] and re.search(pattern, failed[name]), (name, failed[name])
    assert all("Traceback" not in r and "\n" not in r for r in failed.values())
    # The loop was walked once: the file inside it is one path, not one per trip round the loop.
    assert [p for p in report.added if p.endswith("inside.png")] == [str(root / "album" / "inside.png")]
    # Names are stored as they are: unicode, spaces and 60 levels deep.
    names = {n for _, payload, _ in engine.store.scroll() for n in payload["names"]}
    assert {UNICODE_NAME, "with space.jpg", "deep.png"} <= names
    assert engine.store.count() == len(good)  # every good file is a distinct image
    # A second run over the same folder: nothing new, the same failures, still no crash.
    again = engine.indexer.index([root])
    assert again.added == [] and {Path(f.path).name for f in again.failed} == set(fail)


# Where the red quadrant (top-left as stored) must land once the EXIF orientation is applied.
QUADRANT = {1: "TL", 2: "TR", 3: "BR", 4: "BL", 5: "TL", 6: "TR", 7: "BR", 8: "BL"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_lands_the_right_way_up(tmp_path: Path, orientation: int) -> None:
    image = decode(with_quadrant_orientation(tmp_path / "o.jpg", orientation), LIMIT).image
    w, h = image.size
    assert (w, h) == ((80, 40) if orientation <= 4 else (40, 80))
    pixels = np.asarray(image).astype(int)
    centres = {"TL": (h // 4, w // 4), "TR": (h // 4, 3 * w // 4), "BL": (3 * h // 4, w // 4), "BR": (3 * h // 4, 3 * w // 4)}
    for quadrant, (y, x) in centres.items():
        colour = "red" if quadrant == QUADRANT[orientation] else "blue"
        assert np.abs(pixels[y, x] - COLOURS[colour]).max() < 60, (orientation, quadrant)


PROBE = """
import json, sys
from pathlib import Path
from embedder.errors import ImageError
from embedder.media.images import decode
def peak_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
before = peak_kib()
try:
    decode(Path(sys.argv[1]), 100_000_000, {min_side})
    outcome = "decoded"
except ImageError as exc:
    outcome = str(exc)
grown = peak_kib() - before
print(json.dumps({{"outcome": outcome, "grown_kib": grown}}))
"""


def peak_growth(path: Path, min_side: int | None = 224) -> dict:
    """Decode `path` in a fresh process; report the outcome and how much its peak RSS grew.

    The peak is the process's own VmHWM: `ru_maxrss` would not do, as after fork+exec it still
    counts the parent's resident memory (here: pytest with a model loaded) and hides the growth.
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE.format(min_side=min_side)), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("maker", "claimed_mb"),
    [
        (lambda p: png_bomb(p / "bomb.png", side=30_000), 30_000 * 30_000 // 2**20),  # 1 byte/pixel grey
        (lambda p: huge_jpeg_header(p / "huge.jpg"), 60_000 * 60_000 * 3 // 2**20),
        (lambda p: text_chunk_bomb(p / "ztxt.png"), 200_000_000 // 2**20),
    ],
    ids=["png-bomb", "jpeg-header", "ztxt-bomb"],
)
def test_bombs_are_refused_in_bounded_memory(tmp_path: Path, maker, claimed_mb: int) -> None:
    path = maker(tmp_path)
    assert path.stat().st_size < 1_000_000
    result = peak_growth(path)
    assert result["outcome"] != "decoded"
    assert result["grown_kib"] / 1024 < 32, f"peak RSS grew {result['grown_kib'] / 1024:.0f} MB for a {claimed_mb} MB bomb"
    assert claimed_mb > 150  # the bound above is well under what the file claims


def test_the_memory_probe_sees_a_real_large_decode(tmp_path: Path) -> None:
    """Control for the test above: a legitimately large image (36 Mpx RGB, 144 MB decoded, 100 KB
    on disk) does show up. (A greyscale one no longer would: it is decoded at 1 byte a pixel and
    converted a tile at a time.)"""
    path = tmp_path / "large.png"
    Image.new("RGB", (6000, 6000), 0).save(path)
    result = peak_growth(path)
    assert result["outcome"] == "decoded"
    assert result["grown_kib"] / 1024 > 60


SLIVER_PROBE = """
import json, sys
from pathlib import Path
from embedder.models.base import Encoder
from embedder.models.sentence_transformers import SentenceTransformersEncoder
def peak_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
from embedder.media.images import decode
encoder = SentenceTransformersEncoder(sys.argv[1], "cpu", 4)
from PIL import Image
width = int(sys.argv[3]) // encoder.image_size
Image.new("RGB", (width, 1), (200, 30, 30)).save(sys.argv[2])
decoded = decode(Path(sys.argv[2]), 100_000_000, encoder.image_size)
encoder.encode_images([Image.new("RGB", (64, 64))])  # warm up: first-call allocations are not the sliver's
before = peak_kib()
encoder.encode_images([decoded.image])
grown = peak_kib() - before
print(json.dumps({"pixels": width, "grown_kib": grown}))
"""


@pytest.mark.slow
def test_a_one_pixel_sliver_cannot_blow_up_the_encoder(tmp_path: Path, model_path: Path) -> None:
    """A 1-pixel-high image is tiny on disk and far under the pixel limit, but CLIP scales its
    shorter side up to the model's input size, multiplying its pixels by that size squared."""
    done = subprocess.run(
        [sys.executable, "-c", SLIVER_PROBE, str(model_path), str(tmp_path / "sliver.png"), "640000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The image holds 640000/size pixels (~60 KB as RGB): encoding it may cost a few MB, not hundreds.
    assert result["grown_kib"] / 1024 < 48, f"encoding a {result['pixels']}×1 image grew the peak by {result['grown_kib'] / 1024:.0f} MB"
