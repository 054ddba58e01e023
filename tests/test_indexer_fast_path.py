"""The fast indexing path gives the same vectors as the plain one.

The indexer runs the model's preprocessing in its decode threads (`Encoder.prepare_image`) and the
model's thread only stacks pixel tensors and runs the forward pass. These tests prove that path
equals `SentenceTransformer.encode` on the same images (up to float rounding), that JPEG draft
decoding keeps the model's input close to a full decode, and that the pipeline's extra steps
(preparing in threads, optimising the store after a run) behave. No timings here: see bench/.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from embedder.models.base import Encoder, PreparedImage, crop_to_aspect
from embedder.models.sentence_transformers import SentenceTransformersEncoder
from embedder.models.vectors import normalise
from embedder.engine import Engine
from embedder.media.images import decode
from faultkit import distinct_folder, distinct_image
from modelkit import photo


IMAGES = [
    lambda: photo(1, (320, 240)),
    lambda: photo(2, (97, 403)),  # tall, odd sizes
    lambda: photo(3, (30, 20)),  # smaller than the model's input: upscaled by the processor
    lambda: photo(4, (900, 60)),  # a long strip: cropped to 2:1 first, on both paths
    lambda: distinct_image(5).convert("L").convert("RGB"),
]


def test_prepared_images_give_the_vectors_model_encode_gives(encoder: Encoder) -> None:
    images = [make() for make in IMAGES]
    reference = normalise(encoder.model.encode([crop_to_aspect(i) for i in images], convert_to_numpy=True))
    prepared = [encoder.prepare_image(i) for i in images]
    assert all(isinstance(p, PreparedImage) and p.pixels.shape == prepared[0].pixels.shape for p in prepared)
    fast = encoder.encode_images(prepared)
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, atol=2e-5)
    np.testing.assert_allclose(encoder.encode_images(images), reference, atol=2e-5)  # the PIL path: unchanged
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_prepared_and_pil_images_mix_in_one_call_and_batches_split(encoder: Encoder, monkeypatch) -> None:
    images = [make() for make in IMAGES] * 3
    monkeypatch.setattr(encoder, "batch_size", 4)  # 15 images: four batches, the last one short
    mixed = [encoder.prepare_image(i) if n % 2 else i for n, i in enumerate(images)]
    np.testing.assert_allclose(encoder.encode_images(mixed), encoder.encode_images(images), atol=2e-5)
    assert encoder.encode_images([]).shape == (0, encoder.dim)


def test_preparing_in_many_threads_is_the_same_as_in_one(encoder: Encoder) -> None:
    images = [photo(seed, (200 + seed, 150)) for seed in range(24)]
    serial = [encoder.prepare_image(i).pixels for i in images]
    with ThreadPoolExecutor(4) as pool:
        parallel = [p.pixels for p in pool.map(encoder.prepare_image, images)]
    for a, b in zip(serial, parallel):
        assert torch_equal(a, b)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_draft_decoding_keeps_the_models_input_close_to_a_full_decode(encoder: Encoder, tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    photo(9, (1600, 1200)).save(path, quality=90)
    size = encoder.image_size
    full = decode(path, 10**9)
    draft = decode(path, 10**9, min_side=size)
    assert full.image.size == (1600, 1200) and min(draft.image.size) >= size and draft.image.width < 1600
    assert draft.meta == full.meta  # the payload still tells the file's real size
    a = encoder.prepare_image(full.image).pixels
    b = encoder.prepare_image(draft.image).pixels
    assert float((a - b).abs().mean()) < 0.05  # normalised units: ~1/100 of the value range
    cos = float(np.dot(*encoder.encode_images([PreparedImage(a), PreparedImage(b)])))
    assert cos > 0.98


def test_the_indexer_stores_what_the_plain_path_would(engine: Engine, tmp_path: Path) -> None:
    files = distinct_folder(tmp_path / "photos", 7)  # PNG and JPEG
    report = engine.indexer.index([tmp_path / "photos"])
    assert len(report.added) == 7 and not report.failed
    stored = {p["paths"][0]: v for _, p, v in engine.store.scroll(with_vectors=True)}
    size = engine.encoder.image_size
    for path in files:
        # The same decode (reduced for the model's input size), then SentenceTransformer.encode:
        expected = engine.encoder.encode_images([decode(path, 10**9, min_side=size).image])[0]
        np.testing.assert_allclose(stored[str(path)], expected, atol=2e-5)
        # and a full-size decode is still the same picture to the model.
        assert float(np.dot(stored[str(path)], engine.encoder.encode_images([decode(path, 10**9).image])[0])) > 0.99


def test_an_image_the_processor_rejects_is_one_failure_not_a_stopped_run(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    distinct_folder(tmp_path / "photos", 4)  # 4:3 images
    odd = tmp_path / "photos" / "odd.png"
    distinct_image(50, (240, 80)).save(odd)  # 3:1, the only one
    real = engine.encoder.prepare_image

    def picky(image):
        if image.width > 2.5 * image.height:
            raise ValueError("unsupported pixel layout")
        return real(image)

    monkeypatch.setattr(engine.encoder, "prepare_image", picky)
    report = engine.indexer.index([tmp_path / "photos"])
    assert [f.path for f in report.failed] == [str(odd)]
    assert "prepared for the model" in report.failed[0].reason and "unsupported pixel layout" in report.failed[0].reason
    assert len(report.added) == 4 and engine.store.count() == 4


def test_the_store_is_optimised_after_a_run_that_added_images_only(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(engine.store, "optimize", lambda force=False: calls.append(force) or False)
    distinct_folder(tmp_path / "photos", 3)
    engine.indexer.index([tmp_path / "photos"])
    assert calls == [False]
    engine.indexer.index([tmp_path / "photos"])  # nothing new: nothing to optimise
    assert calls == [False]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_path_matches_fp32_on_cpu(model_path: Path) -> None:
    images = [make() for make in IMAGES]
    cpu = SentenceTransformersEncoder(str(model_path), device="cpu")
    gpu = SentenceTransformersEncoder(str(model_path), device="cuda")
    prepared = [gpu.prepare_image(i) for i in images]
    assert prepared[0].pixels.dtype == __import__("torch").float16
    np.testing.assert_allclose(gpu.encode_images(prepared), cpu.encode_images(images), atol=3e-2)


def test_short_text_queries_run_on_one_thread_and_give_the_same_vectors(encoder: Encoder, monkeypatch) -> None:
    import torch

    before = torch.get_num_threads()
    seen: list[int] = []
    real = encoder.model.encode
    monkeypatch.setattr(encoder.model, "encode", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    monkeypatch.setattr(encoder, "_text_speedup", False)  # sentence-transformers' own path (the fast one: test_text_fast)
    alone = encoder.encode_texts(["a red circle"])[0]
    in_batch = encoder.encode_texts(["a red circle"] + [f"a small blue square number {i}" for i in range(12)])[0]
    assert seen == [1, before] and torch.get_num_threads() == before
    np.testing.assert_allclose(alone, in_batch, atol=2e-5)


def test_decode_threads_default_to_half_the_cores_on_cpu_and_all_for_a_gpu(engine: Engine) -> None:
    import os

    from embedder.models.base import default_workers
    from embedder.indexing.indexer import Indexer

    cores = os.cpu_count() or 2
    assert default_workers("cpu") == max(1, cores // 2)
    assert default_workers("cuda") == default_workers("cuda:1") == default_workers("mps") == cores
    assert Indexer(engine.encoder, engine.store, 10**8).workers == default_workers(engine.encoder.device)
    assert Indexer(engine.encoder, engine.store, 10**8, workers=3).workers == 3
