"""Fuzzing the decoder: mutated JPEG/PNG/GIF/WebP bytes never escape as anything but `ImageError`.

Hypothesis mutates valid files (bit flips, truncations, splices of other files' chunks, header
fields set to extreme values, repeated ranges). `decode` must either give an upright RGB image
within the pixel limit or raise `ImageError` with a one-line reason; any other exception, or a
decode that hangs, fails with the input that caused it. Bounded and reproducible in CI:
300 examples in all, derandomized, no example database.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from embedder.errors import ImageError
from embedder.media.images import decode
from faultkit import distinct_image

MAX_PIXELS = 4_000_000
HANG_S = 20  # one decode of a small file taking this long is a hang


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    base = distinct_image(7, (48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2021:07:04 12:30:00"
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((48, 32)))
    frames = [distinct_image(i, (32, 24)) for i in range(3)]
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return {
        "jpeg-exif": _save(base, "JPEG", exif=exif.tobytes(), quality=80),
        "jpeg-progressive": _save(base, "JPEG", progressive=True, quality=60),
        "png-rgba": _save(rgba, "PNG"),
        "png-palette": _save(palette, "PNG", transparency=0),
        "gif-animated": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0),
        "webp-animated": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40, quality=50),
    }


SEEDS = _seeds()
EXTREMES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def mutation(draw, size: int):
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "field", "repeat", "delete"]))
    at = draw(st.integers(0, max(size - 1, 0)))
    if kind == "flip":
        return ("flip", at, draw(st.integers(0, 7)))
    if kind == "truncate":
        return ("truncate", at)
    if kind == "splice":  # a chunk of another seed file, inserted or written over
        donor = draw(st.sampled_from(sorted(SEEDS)))
        start = draw(st.integers(0, len(SEEDS[donor]) - 1))
        length = draw(st.integers(1, 256))
        return ("splice", at, donor, start, length, draw(st.booleans()))
    if kind == "field":  # header-ish offsets most of the time: sizes, lengths, counts
        at = draw(st.one_of(st.integers(0, min(size - 1, 160)), st.just(at)))
        value = draw(st.one_of(st.sampled_from(EXTREMES), st.integers(0, 0xFFFFFFFF)))
        return ("field", at, draw(st.sampled_from([1, 2, 4])), value, draw(st.sampled_from(["big", "little"])))
    if kind == "repeat":
        return ("repeat", at, draw(st.integers(1, 64)), draw(st.integers(2, 8)))
    return ("delete", at, draw(st.integers(1, 64)))


def apply(data: bytes, ops: list[tuple]) -> bytes:
    out = bytearray(data)
    for op in ops:
        if not out:
            break
        at = min(op[1], len(out) - 1)
        if op[0] == "flip":
            out[at] ^= 1 << op[2]
        elif op[0] == "truncate":
            del out[at:]
        elif op[0] == "splice":
            _, _, donor, start, length, insert = op
            chunk = SEEDS[donor][start : start + length]
            out[at : at if insert else at + len(chunk)] = chunk
        elif op[0] == "field":
            _, _, width, value, order = op
            out[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, order)
        elif op[0] == "repeat":
            _, _, length, times = op
            out[at:at] = bytes(out[at : at + length]) * (times - 1)
        elif op[0] == "delete":
            del out[at : at + op[2]]
    return bytes(out)


class Hang(BaseException):
    """Not an Exception: `decode`'s own handlers must not be able to swallow it."""


@contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    def fire(signum, frame):
        raise Hang(f"decode did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check(data: bytes, min_side: int | None) -> None:
    try:
        with hang_guard(HANG_S):
            decoded = decode(data, MAX_PIXELS, min_side)
    except ImageError as exc:
        reason = str(exc)
        assert reason and "\n" not in reason and "Traceback" not in reason
        return
    image, meta = decoded.image, decoded.meta
    assert image.mode == "RGB"
    assert image.width >= 1 and image.height >= 1
    assert 1 <= meta.width * meta.height <= MAX_PIXELS
    if min_side:
        assert min(image.size) <= max(min_side, min(meta.width, meta.height))
    np.asarray(image)  # the pixels are really there


def test_seeds_decode_cleanly() -> None:
    for name, data in SEEDS.items():
        decoded = decode(data, MAX_PIXELS)
        assert decoded.image.mode == "RGB", name


# CI: 50 × 6 seeds = 300 examples, the same every run. A deeper hunt, random each time:
# EMBEDDER_FUZZ_EXAMPLES=5000 pytest tests/test_faults_fuzz.py
DEEP = int(os.environ.get("EMBEDDER_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=DEEP or 50,
    deadline=None,
    derandomize=not DEEP,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("seed", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_images_raise_only_image_error(seed: str, data) -> None:
    original = SEEDS[seed]
    ops = data.draw(st.lists(mutation(len(original)), min_size=1, max_size=4), label="mutations")
    min_side = data.draw(st.sampled_from([None, 32, 224]), label="min_side")
    check(apply(original, ops), min_side)


def test_the_fuzzer_reaches_both_outcomes() -> None:
    """Control: the mutations are neither all harmless nor all fatal, so both paths are exercised."""
    outcomes = {"decoded": 0, "refused": 0}
    rng = np.random.default_rng(0)
    for name, original in SEEDS.items():
        for _ in range(20):
            ops = [("flip", int(rng.integers(len(original))), int(rng.integers(8))) for _ in range(2)]
            try:
                decode(apply(original, ops), MAX_PIXELS)
                outcomes["decoded"] += 1
            except ImageError:
                outcomes["refused"] += 1
        try:
            decode(apply(original, [("truncate", len(original) // 3)]), MAX_PIXELS)
        except ImageError:
            outcomes["refused"] += 1
    assert outcomes["decoded"] > 10 and outcomes["refused"] > 5, outcomes
