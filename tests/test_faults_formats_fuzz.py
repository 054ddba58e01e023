"""Fuzzing the new decoders: mutated AVIF, HEIC and DNG files (the develop and the preview path) give
an image within the limits or one `ImageError` line; never another exception, a hang or a crash.

The mutations and checks are test_faults_fuzz.py's; RAW files are decoded by their name, as uploads are.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from embedder.errors import ImageError
from embedder.media.images import decode
from faultkit import distinct_image
from rawfiles import dng_bytes
from test_faults_fuzz import FUZZ, HANG_S, MAX_PIXELS, apply, hang_guard, mutation


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _seeds() -> dict[str, tuple[bytes, str]]:
    base = distinct_image(7, (48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2021:07:04 12:30:00"
    return {
        "avif": (_save(base, "AVIF", exif=exif.tobytes(), quality=60), "x.avif"),
        "heic": (_save(base, "HEIF", exif=exif.tobytes(), quality=60), "x.heic"),
        "dng-developed": (dng_bytes(base, orientation=6), "x.dng"),
        "dng-preview": (dng_bytes(base, preview=base), "x.dng"),
    }


SEEDS = _seeds()


def check(data: bytes, name: str, min_side: int | None) -> None:
    try:
        with hang_guard(HANG_S):
            decoded = decode(data, MAX_PIXELS, min_side, name=name)
    except ImageError as exc:
        reason = str(exc)
        assert reason and "\n" not in reason and "Traceback" not in reason
        return
    image, meta = decoded.image, decoded.meta
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert 1 <= meta.width * meta.height <= MAX_PIXELS
    np.asarray(image)  # the pixels are really there


def test_seeds_decode_cleanly() -> None:
    for key, (data, name) in SEEDS.items():
        assert decode(data, MAX_PIXELS, name=name).image.mode == "RGB", key


@pytest.mark.parametrize("seed", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_phone_and_camera_files_raise_only_image_error(seed: str, data) -> None:
    original, name = SEEDS[seed]
    ops = data.draw(st.lists(mutation(len(original)), min_size=1, max_size=4), label="mutations")
    min_side = data.draw(st.sampled_from([None, 32, 224]), label="min_side")
    check(apply(original, ops), name, min_side)


def test_the_fuzzer_reaches_both_outcomes_on_these_formats() -> None:
    """Control: bit flips leave some files decodable and a cut makes them fail, for each format."""
    rng = np.random.default_rng(0)
    for key, (original, name) in SEEDS.items():
        outcomes = {"decoded": 0, "refused": 0}
        for _ in range(20):
            ops = [("flip", int(rng.integers(len(original))), int(rng.integers(8)))]
            try:
                decode(apply(original, ops), MAX_PIXELS, name=name)
                outcomes["decoded"] += 1
            except ImageError:
                outcomes["refused"] += 1
        with pytest.raises(ImageError):
            decode(original[: len(original) // 3], MAX_PIXELS, name=name)
        assert outcomes["decoded"] > 0, (key, outcomes)
