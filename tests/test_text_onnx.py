"""CLIP's text tower by ONNX Runtime (EMBEDDER_TEXT_SPEEDUP=auto): the library's vectors and results.

The export is checked against sentence-transformers' own `encode` on the trained tiny CLIP and on a
random-weight text tower of clip-ViT-B-32's size; search results (text, composed, filtered) are the
same ids in the same order, scores within 1e-4, on every text path; the export follows the model's
files, and a folder that cannot be written costs one log line and the torch path.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedder.config import Settings
from embedder.engine import Engine
from embedder.models import load_query_encoder, text_onnx
from embedder.models.sentence_transformers import SentenceTransformersEncoder
from embedder.models.text_fast import FastClipText
from embedder.models.text_onnx import CHECK_TEXTS, MIN_COSINE, OnnxClipText, TextQueryEncoder
from embedder.query.filters import make_filter
from embedder.query.terms import Query, Term
from embedder.query.searcher import Searcher
from modelkit import clip_with_vit_b32_text, cosine

TEXTS = [
    *CHECK_TEXTS,
    "a red circle",
    "small blue square on the left",
    "purple",
    "a large green triangle next to a yellow star and an orange cross " * 8,  # past 77 tokens: cut
    "   leading and trailing spaces   ",
    "UPPER lower MiXeD 123 4.5 %$&*()[]{}",
]


def encoder(model: Path | str, mode: str, cache: Path | None = None) -> SentenceTransformersEncoder:
    return SentenceTransformersEncoder(str(model), "cpu", 16, text_speedup=mode, text_cache=cache)


def manifest_of(cache: Path, model: Path) -> dict:
    manifest = text_onnx.read_manifest(text_onnx.tower_folder(cache, str(model)))
    assert manifest is not None
    return manifest


@pytest.fixture(scope="module")
def plain(model_path: Path) -> SentenceTransformersEncoder:
    return encoder(model_path, "off")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def fast(model_path: Path, onnx_cache: Path) -> SentenceTransformersEncoder:
    return encoder(model_path, "auto", onnx_cache)


def test_tiny_clip_export_is_adopted_and_gives_the_librarys_vectors(
    fast: SentenceTransformersEncoder, plain: SentenceTransformersEncoder, onnx_cache: Path, model_path: Path
) -> None:
    for batch in ([TEXTS[0]], TEXTS[:8]):  # one query, and a few at once (each at its own length)
        assert cosine(fast.encode_texts(batch), plain.encode_texts(batch)).min() >= MIN_COSINE
    tower = fast.text_tower()
    assert isinstance(tower, OnnxClipText) and fast._fast_text is None  # the torch path was never built
    for text in TEXTS:
        assert tower.token_ids(text) == plain.model.preprocess([text])["input_ids"][0].tolist()
        assert cosine(tower.encode_texts([text]), plain.encode_texts([text]))[0] >= MIN_COSINE
    manifest = manifest_of(onnx_cache, model_path)
    assert manifest["adopted"] and manifest["same_token_ids"] and manifest["min_cosine"] >= MIN_COSINE
    assert (manifest["model_id"], manifest["dim"]) == (plain.model_id, plain.dim)
    # Many texts (evaluation, tag labels: not queries) keep sentence-transformers' batched path.
    many = [f"a {c} circle" for c in ("red", "blue", "green")] * 4
    np.testing.assert_array_equal(fast.encode_texts(many), plain.encode_texts(many))


def test_a_second_encoder_opens_the_export_instead_of_making_it_again(
    fast: SentenceTransformersEncoder, onnx_cache: Path, model_path: Path
) -> None:
    fast.text_tower()
    graph = text_onnx.tower_folder(onnx_cache, str(model_path)) / text_onnx.MODEL_FILE
    made = graph.stat().st_mtime_ns
    again = encoder(model_path, "auto", onnx_cache)
    assert isinstance(again.text_tower(), OnnxClipText)
    assert graph.stat().st_mtime_ns == made


def test_vit_b32_sized_text_tower_exports_within_the_bound(tmp_path: Path, model_path: Path) -> None:
    model = clip_with_vit_b32_text(tmp_path / "vit-b32-text", tokenizer_from=model_path)
    fast, plain = encoder(model, "auto", tmp_path / "cache"), encoder(model, "off")
    assert fast.dim == 512
    tower = fast.text_tower()
    assert isinstance(tower, OnnxClipText)
    assert cosine(tower.encode_texts(TEXTS), plain.encode_texts(TEXTS)).min() >= MIN_COSINE
    manifest = manifest_of(tmp_path / "cache", model)
    assert manifest["adopted"] and manifest["min_cosine"] >= MIN_COSINE
    assert manifest["model_bytes"] > 150 * 2**20  # the whole fp32 tower: 12 layers of 512, 49408 tokens


def test_changed_weights_are_exported_again(tmp_path: Path, model_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model = tmp_path / "tiny-clip"
    shutil.copytree(model_path, model)
    cache = tmp_path / "cache"
    before = encoder(model, "auto", cache)
    old = before.encode_texts(["a red circle"])
    weights = model / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("text_projection.weight"))
    tensors[name] = tensors[name].flip(0).contiguous()  # other weights, same size and names
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert text_onnx.open_tower(cache, str(model)) == (None, None)  # stale: the manifest records the old file
    after, plain = encoder(model, "auto", cache), encoder(model, "off")
    new = after.encode_texts(["a red circle"])
    assert isinstance(after.text_tower(), OnnxClipText)
    assert cosine(new, plain.encode_texts(["a red circle"]))[0] >= MIN_COSINE
    assert cosine(new, old)[0] < 0.99  # the new weights' vector, not the old export's


def test_a_cache_folder_that_cannot_be_written_costs_one_log_line(
    tmp_path: Path, model_path: Path, plain: SentenceTransformersEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")  # nothing can be made below a file (as root, too)
    fast = encoder(model_path, "auto", blocked / "cache")
    with caplog.at_level(logging.WARNING, logger="embedder"):
        vectors = fast.encode_texts(["a red circle"])
        fast.encode_texts(["a blue square"])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"could not keep the exported text tower in {blocked / 'cache'} (Not a directory): queries take the "
        "torch path; set MODEL_CACHE_DIR to a folder this user can write (or EMBEDDER_TEXT_SPEEDUP=torch)"
    ]
    assert fast.text_tower() is None and isinstance(fast._fast_text, FastClipText)
    assert cosine(vectors, plain.encode_texts(["a red circle"]))[0] >= MIN_COSINE


def test_a_rejected_export_is_not_used_nor_tried_again(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(text_onnx, "MIN_COSINE", 1.5)  # no export can pass: as one that differs would not
    first = encoder(model_path, "auto", cache)
    first.encode_texts(["a red circle"])
    assert first.text_tower() is None and isinstance(first._fast_text, FastClipText)
    folder = text_onnx.tower_folder(cache, str(model_path))
    manifest = manifest_of(cache, model_path)
    assert not manifest["adopted"] and not (folder / text_onnx.MODEL_FILE).exists()  # no 250 MB kept for nothing
    written = (folder / text_onnx.MANIFEST_FILE).stat().st_mtime_ns
    second = encoder(model_path, "auto", cache)
    assert second.text_tower() is None
    assert (folder / text_onnx.MANIFEST_FILE).stat().st_mtime_ns == written


def test_torch_and_off_write_nothing(tmp_path: Path, model_path: Path) -> None:
    for mode in ("torch", "off"):
        enc = encoder(model_path, mode, tmp_path / mode)
        enc.encode_texts(["a red circle"])
        assert enc.text_tower() is None and not (tmp_path / mode).exists()
    assert Settings.from_env({"EMBEDDER_TEXT_SPEEDUP": "Torch"}, env_file="/none").text_speedup == "torch"


# --- the same results on every path ---------------------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, plain: SentenceTransformersEncoder, model_path: Path) -> Engine:
    from appkit import CLASSES, write_images

    root = tmp_path_factory.mktemp("library")
    settings = Settings(model=str(model_path), device="cpu", batch_size=16, workers=2, qdrant_path=root / "qdrant",
                        upload_dir=root / "uploads", thumb_dir=root / "thumbnails", tags=False)
    engine = Engine.open(settings, encoder=plain)
    for seed in range(3):
        write_images(root / f"album{seed}", CLASSES, seed)
    engine.indexer.index([root / f"album{seed}" for seed in range(3)])
    yield engine
    engine.close()


QUERIES = [
    Query.text("a red circle"),
    Query.text("a photo of a blue square", template="a photo of {}"),
    Query((Term(text="circle"), Term(text="red", weight=2.0), Term(text="blue", weight=-1.0))),
    Query((Term(text="a green triangle"),), where=make_filter(types=["jpeg"], min_width=64)),
]


def test_results_are_the_same_on_every_text_path(
    library: Engine, plain: SentenceTransformersEncoder, fast: SentenceTransformersEncoder, model_path: Path,
    onnx_cache: Path,
) -> None:
    album = Path(library.store.location).parent / "album1"
    queries = [*QUERIES, Query((Term(text="a yellow star"),), where=make_filter(folder=str(album)))]
    fast.text_tower()
    settings = Settings(model=str(model_path), device="cpu", model_cache_dir=onnx_cache)
    lean = load_query_encoder(settings)
    assert isinstance(lean, TextQueryEncoder)
    paths = {
        "off": plain,
        "torch": encoder(model_path, "torch"),
        "onnx": fast,
        "onnx without torch (CLI)": lean,
    }
    for query in queries:
        want = Searcher(plain, library.store).search(query, 12)
        assert want, query
        for name, enc in paths.items():
            got = Searcher(enc, library.store).search(query, 12)
            assert [r.id for r in got] == [r.id for r in want], (name, query)
            np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-4, err_msg=name)
    assert not lean.loaded  # text queries never loaded the full model
