"""Reliability round 2, reading and decoding: nothing that is not a regular file is waited on, what is
decoded is what was hashed, and decoding has a bounded cost in memory and time.

Items R2-7 (a FIFO swapped in after the walk), R2-2 (a file changed between hashing and decoding)
and R2-8 (unbounded decode cost: 100 MP deep images, many decode threads, files far larger than
their pixels, decoders nobody measured, thousands of JPEG scans).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import embedder.indexing.indexer
from embedder.engine import Engine
from embedder.errors import ImageError
from embedder.media.images import CHANGED, bytes_hash, decode, hash_file, point_id, read_meta
from embedder.query.terms import Query
from faultkit import ROOT, distinct_image, encode_png, wait_until
from test_faults_files import _chunk as png_chunk
from test_faults_files import peak_growth

LIMIT = 50_000_000
INDEX_DEADLINE_S = 60.0  # a run over four small images takes a few seconds; a hung one never ends


def album(root: Path) -> dict[str, bytes]:
    """Four distinct PNGs under `root`; returns their bytes by name."""
    root.mkdir(parents=True)
    files = {f"img{i}.png": encode_png(distinct_image(i)) for i in range(4)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def stored_hashes(engine: Engine) -> set[str]:
    return {payload["sha256"] for _, payload, _ in engine.store.scroll()}


def before_decoding(monkeypatch: pytest.MonkeyPatch, path: Path, change: Callable[[Path], None]) -> None:
    """Apply `change` to `path` after every file was hashed, right before its image is decoded."""
    real = embedder.indexing.indexer._decode_first

    def changed_first(paths, *args, **kwargs):
        if paths[0] == path:
            change(path)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(embedder.indexing.indexer, "_decode_first", changed_first)


# --------------------------------------------------------------------------------------------
# R2-7: a FIFO is never waited on


def make_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def unblock(fifo: Path) -> None:
    """Open the FIFO for writing and close it: a reader stuck opening it gets end-of-file."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting
        pass


def finishes(run: Callable[[], object], fifo: Path, what: str, deadline_s: float = INDEX_DEADLINE_S) -> object:
    """`run()` in a thread; its result, or a failure if it is still running after `deadline_s`.

    A run stuck opening the FIFO (the bug) is set free afterwards, so the test session can end."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    runner = threading.Thread(target=target, daemon=True, name="stuck-on-fifo?")
    runner.start()
    try:
        wait_until(lambda: not runner.is_alive(), what, deadline_s)
    finally:
        wait_until(lambda: unblock(fifo) or not runner.is_alive(), "the run to end once the FIFO was opened", 30)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]


def fifo_when_opened(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Swap `path` for a FIFO the first time anything opens it: after the walk, and after any
    check made on the path before opening it."""
    real_open = builtins.open

    def swapping_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path) and not path.is_fifo():
            make_fifo(path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", swapping_open)


@pytest.mark.parametrize("when", ["as-hashing-opens-it", "before-decoding"])
def test_a_fifo_swapped_in_after_the_walk_is_reported_not_waited_on(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    root = tmp_path / "album"
    album(root)
    target = root / "img0.png"
    if when == "as-hashing-opens-it":
        fifo_when_opened(monkeypatch, target)
    else:
        before_decoding(monkeypatch, target, make_fifo)

    report = finishes(lambda: engine.indexer.index([root]), target, "the index run to finish")

    assert {Path(f.path).name: f.reason for f in report.failed} == {"img0.png": "not a regular file"}
    assert sorted(Path(p).name for p in report.added) == ["img1.png", "img2.png", "img3.png"]


@pytest.mark.parametrize(
    "read",
    [hash_file, lambda path: decode(path, LIMIT), lambda path: read_meta(path, LIMIT)],
    ids=["hash_file", "decode", "read_meta"],
)
def test_every_reader_refuses_a_fifo_at_once(tmp_path: Path, read: Callable[[Path], object]) -> None:
    """The one safe open is used by every reader: hashing, decoding and reading the header."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)

    def refused() -> str:
        with pytest.raises(ImageError) as caught:
            read(fifo)
        return str(caught.value)

    assert finishes(refused, fifo, "the FIFO to be refused", deadline_s=30) == "not a regular file"


# --------------------------------------------------------------------------------------------
# R2-2: the bytes decoded are the bytes hashed


def replace(path: Path, data: bytes) -> None:
    """Another file renamed over `path` (how editors and sync tools save)."""
    fresh = path.with_suffix(".partial")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def rewrite_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


@pytest.mark.parametrize(
    ("how", "read_whole"),
    [("replaced", True), ("rewritten-in-place", True), ("still-being-written", True), ("rewritten-in-place", False)],
    ids=["replaced", "rewritten-in-place", "still-being-written", "rewritten-in-place-large-file"],
)
def test_a_file_changed_between_hashing_and_decoding_is_reported_never_stored_mixed(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, read_whole: bool
) -> None:
    root = tmp_path / "album"
    files = album(root)
    target = root / "img0.png"
    new_bytes = encode_png(distinct_image(99))
    with monkeypatch.context() as patch:
        if not read_whole:  # files above this size are decoded from the open file, then hashed again
            patch.setattr("embedder.media.images.WHOLE_READ_MAX", 0)
        if how == "still-being-written":  # hashed while half written, decoded once finished
            target.write_bytes(new_bytes[: len(new_bytes) // 2])
            files["img0.png"] = target.read_bytes()
            before_decoding(patch, target, lambda p: append(p, new_bytes[len(new_bytes) // 2 :]))
        else:
            change = replace if how == "replaced" else rewrite_in_place
            before_decoding(patch, target, lambda p: change(p, new_bytes))

        report = engine.indexer.index([root])

    assert {Path(f.path).name: f.reason for f in report.failed} == {"img0.png": CHANGED}
    assert sorted(Path(p).name for p in report.added) == ["img1.png", "img2.png", "img3.png"]
    # The old hash was never stored, so no point pairs the old bytes' id with the new picture.
    assert bytes_hash(files["img0.png"]) not in stored_hashes(engine)
    assert stored_hashes(engine) == {bytes_hash(files[f"img{i}.png"]) for i in (1, 2, 3)}

    again = engine.indexer.index([root])  # run again, as the message says: indexed under its new bytes
    assert again.added == [str(target)] and again.failed == []
    hits = engine.searcher.search(Query.image(decode(new_bytes, LIMIT, engine.encoder.image_size).image), 1)
    assert hits[0].id == point_id(bytes_hash(new_bytes)) and hits[0].payload["paths"] == [str(target)]


def test_the_same_bytes_are_still_decoded_when_nothing_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: the check passes an unchanged file, read whole or as a large file."""
    path = tmp_path / "a.png"
    path.write_bytes(encode_png(distinct_image(5)))
    digest = hash_file(path).sha256
    whole = decode(path, LIMIT, sha256=digest).image
    monkeypatch.setattr("embedder.media.images.WHOLE_READ_MAX", 0)
    assert decode(path, LIMIT, sha256=digest).image.tobytes() == whole.tobytes() == decode(path, LIMIT).image.tobytes()
    with pytest.raises(ImageError, match="changed while it was being indexed"):
        decode(path, LIMIT, sha256="0" * 64)


# --------------------------------------------------------------------------------------------
# R2-8: bounded decode cost


def grey16_png(path: Path, side: int = 10_000) -> Path:
    """A side×side 16-bit greyscale PNG (a gradient per row), written directly: fast, 2 MB on disk."""
    row = b"\x00" + np.linspace(0, 65535, side).astype(">u2").tobytes()
    deflate = zlib.compressobj(1)
    data = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def float_tiff(path: Path, side: int = 10_000, rows: int = 100) -> Path:
    """A side×side 32-bit float TIFF (deflate), every strip pointing at the same compressed strip."""
    strip = zlib.compress(np.linspace(-3, 7, rows * side, dtype="<f4").tobytes(), 1)
    strips = -(-side // rows)
    tags = {256: side, 257: side, 258: 32, 259: 8, 262: 1, 273: None, 277: 1, 278: rows, 279: None, 284: 1, 339: 3}
    offsets_at = 8 + 2 + 12 * len(tags) + 4
    counts_at = offsets_at + 4 * strips
    ifd = struct.pack("<H", len(tags))
    for tag, value in tags.items():
        if tag in (273, 279):  # StripOffsets, StripByteCounts: arrays after the IFD
            ifd += struct.pack("<HHII", tag, 4, strips, offsets_at if tag == 273 else counts_at)
        else:
            ifd += struct.pack("<HHII", tag, 4, 1, value)
    offsets = struct.pack(f"<{strips}I", *[counts_at + 4 * strips] * strips)
    counts = struct.pack(f"<{strips}I", *[len(strip)] * strips)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + offsets + counts + strip)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("maker", "sample_bytes", "old_peak_mb"),  # old: the peak growth before round 2 (float64 copies)
    [(grey16_png, 2, 2099), (float_tiff, 4, 2672)],
    ids=["grey16-png", "float-tiff"],
)
def test_a_100_megapixel_deep_image_is_decoded_holding_its_samples_about_once(
    tmp_path: Path, maker: Callable[[Path], Path], sample_bytes: int, old_peak_mb: int
) -> None:
    path = maker(tmp_path / "deep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's own limit is 89 MP
        with Image.open(path) as img:
            assert img.size == (10_000, 10_000) and img.mode in ("I;16", "F")  # the premise: 100 MP, 16 or 32 bits

    result = peak_growth(path)  # decoded for the model (min_side 224), as indexing does

    assert result["outcome"] == "decoded"
    grown_mb, samples_mb = result["grown_kib"] / 1024, 100_000_000 * sample_bytes / 2**20
    assert grown_mb < 1.5 * samples_mb, f"grew {grown_mb:.0f} MB for {samples_mb:.0f} MB of samples (was {old_peak_mb})"


THREADS_PROBE = """
import json, sys, threading
from pathlib import Path
from embedder.media.images import decode
def peak_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
max_pixels, paths = int(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
together = threading.Barrier(len(paths))
decoded = []
def run(path):
    together.wait()
    decoded.append(decode(path, max_pixels, 224).image.size)
before = peak_kib()
threads = [threading.Thread(target=run, args=(path,)) for path in paths]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"decoded": len(decoded), "grown_kib": peak_kib() - before}))
"""


def threads_peak_mb(paths: list[Path], max_pixels: int) -> float:
    """Decode `paths` on one thread each, all starting together, in a fresh process: its peak growth."""
    done = subprocess.run(
        [sys.executable, "-c", THREADS_PROBE, str(max_pixels), *map(str, paths)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["decoded"] == len(paths)
    return result["grown_kib"] / 1024


@pytest.mark.slow
def test_decode_threads_share_one_memory_budget(tmp_path: Path) -> None:
    """Three large float TIFFs (25 MP, at the pixel limit) decoded on three threads at once take
    about the memory of one: each needs more than half the shared budget, so they take turns."""
    paths = [float_tiff(tmp_path / f"deep{i}.tif", side=5_000) for i in range(3)]
    alone = threads_peak_mb(paths[:1], max_pixels=25_000_000)
    together = threads_peak_mb(paths, max_pixels=25_000_000)
    assert alone > 90  # the premise: one decode holds its 95 MB of samples
    assert together < 1.5 * alone, f"three threads grew the peak by {together:.0f} MB, one by {alone:.0f} MB"


@pytest.mark.parametrize("kind", ["PPM", "PCX", "ICO", "SGI"])
def test_only_the_formats_the_product_supports_are_decoded(tmp_path: Path, kind: str) -> None:
    """Pillow has many other decoders (PSD, EPS, FITS, …): a file named .png in one of them is not
    decoded, as their costs on hostile input are unknown here."""
    path = tmp_path / f"{kind.lower()}-named.png"
    distinct_image(3).save(path, kind)
    with pytest.raises(ImageError, match="not an image, or a format that is not supported"):
        decode(path, LIMIT)
    with pytest.raises(ImageError, match="not an image, or a format that is not supported"):
        read_meta(path, LIMIT)


def encode_webp(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "WEBP")
    return buf.getvalue()


def test_a_file_that_would_take_more_memory_than_any_allowed_image_is_refused_unread(tmp_path: Path) -> None:
    """A small WebP followed by 300 MB of zeros: Pillow reads a WebP whole, twice over, so decoding
    it took 600 MB. It is refused with a reason, from its size, before anything is read."""
    path = tmp_path / "padded.webp"
    path.write_bytes(encode_webp(distinct_image(4)))
    with open(path, "r+b") as fh:
        fh.truncate(300 << 20)  # sparse: nothing is written
    with pytest.raises(ImageError, match=r"would take about 6\d\d MB, more than any image .* MAX_IMAGE_PIXELS=1000000"):
        decode(path, 1_000_000, min_side=224)
    assert decode(encode_webp(distinct_image(4)), 1_000_000, min_side=224).image.size == (160, 120)  # alone, fine


def sos_segments(jpeg: bytes) -> list[tuple[int, int]]:
    """Where each scan (its SOS header and entropy-coded data) starts and ends in `jpeg`."""
    scans, at = [], 2
    while jpeg[at + 1] != 0xD9:  # up to EOI
        end = at + 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if jpeg[at + 1] == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed byte or RST
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
            scans.append((at, end))
        at = end
    return scans


def many_scans_jpeg(scans: int, side: int = 1000) -> bytes:
    """A valid progressive JPEG with one of its tiny AC scans repeated: each copy is another pass
    over every block of the image for a handful of bytes (the attack in libjpeg-turbo's report)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=90)
    jpeg = buf.getvalue()
    segments = sos_segments(jpeg)
    start, end = segments[1]
    last = segments[-1][1]
    return jpeg[:last] + jpeg[start:end] * (scans - len(segments)) + jpeg[last:]


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding() -> None:
    hostile = many_scans_jpeg(3000)
    assert len(hostile) < 100_000 and len(sos_segments(hostile)) == 3000
    with pytest.raises(ImageError, match=r"JPEG with 3000 scans \(photos have about 10, the limit is 100\)"):
        decode(hostile, LIMIT, min_side=224)
    ordinary = many_scans_jpeg(10)  # the encoder's own 10 scans: decoded as ever
    assert decode(ordinary, LIMIT, min_side=224).image.size == (224, 224)
