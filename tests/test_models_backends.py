"""Model backends behind the one Encoder interface, and text models paired for queries.

Each backend loads a tiny random-weight model built offline (tests/modelkit.py) through the
product's own path (`load_encoder`, EMBEDDER_MODEL), and must give the vectors the library's own
reference pipeline gives on the same photos and texts; then it indexes and searches end to end.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embedder import cli
from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.models import load_encoder
from embedder.engine import Engine
from embedder.errors import CollectionMismatchError, ModelLoadError
from embedder.query.terms import Query
from modelkit import (
    TINY_OPEN_CLIP, cosine, import_open_clip, photo_folder,
    tiny_open_clip, tiny_siglip, tiny_text_model, word_tokenizer,
)

# Large JPEGs are draft-decoded by the indexer; a tall one, a small one, a wide one (< 2:1).
SIZES = [(1200, 900), (97, 160), (640, 480), (30, 20), (800, 420)]
PARITY = 0.9999  # the same pixels through the product and through the library
DRAFT_PARITY = 0.999  # a 32-pixel random model is far more sensitive to resampling than a real one


@pytest.fixture(scope="module")
def siglip_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("siglip")
    return {version: tiny_siglip(root / f"siglip{version}", version) for version in (1, 2)}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return photo_folder(tmp_path_factory.mktemp("photos") / "album", SIZES)


def hf_reference(folder: Path, images: list[Image.Image], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """transformers' own pipeline, as the model card shows it: processor, then the model's features."""
    from transformers import AutoModel, AutoProcessor

    model, processor = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
    with torch.inference_mode():
        image_features = model.get_image_features(**processor(images=images, return_tensors="pt")).pooler_output
        tokens = processor(text=texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        text_features = model.get_text_features(**tokens).pooler_output
    return image_features.numpy(), text_features.numpy()


@pytest.mark.parametrize("version", [1, 2])
def test_siglip_indexes_with_the_vectors_transformers_gives_and_searches(
    version: int, siglip_folders: dict[int, Path], photos: list[Path], settings: Settings
) -> None:
    settings = replace(settings, model=f"hf:{siglip_folders[version]}")
    engine = Engine.open(settings)
    try:
        assert engine.encoder.model_id == f"hf:siglip{version}" and engine.encoder.dim == 32
        report = engine.indexer.index([photos[0].parent])
        assert len(report.added) == len(photos) and engine.store.count() == len(photos)
        stored = {p["paths"][0]: v for _, p, v in engine.store.scroll(with_vectors=True)}
        assert {p["model"] for _, p, _ in engine.store.scroll()} == {f"hf:siglip{version}"}

        texts = ["a photo of a cat", "un chat rouge", "picture of the red blue green circle square triangle dog"]
        full = [Image.open(path).convert("RGB") for path in photos]  # fully decoded, no draft
        images, words = hf_reference(siglip_folders[version], full, texts)
        indexed = np.stack([stored[str(path)] for path in photos])
        assert cosine(engine.encoder.encode_images(full), images).min() >= PARITY
        # Indexed from smaller decodes (JPEG draft, shrunk to the model's side): close, not equal.
        assert cosine(indexed, images).min() >= DRAFT_PARITY
        assert cosine(engine.encoder.encode_texts(texts), words).min() >= PARITY

        results = engine.searcher.search(Query.text("a photo of a cat"), limit=3)
        assert len(results) == 3 and all(r.payload["model"] == f"hf:siglip{version}" for r in results)
        assert engine.searcher.search(Query.image(full[2]), limit=1)[0].path == str(photos[2])
    finally:
        engine.close()


def test_open_clip_indexes_with_the_vectors_open_clip_gives_and_searches(
    photos: list[Path], settings: Settings, tmp_path: Path
) -> None:
    open_clip = import_open_clip()
    if open_clip is None:
        pytest.skip("open_clip_torch is not installed, or its torchvision does not match torch (see requirements.txt)")
    checkpoint = tiny_open_clip(tmp_path / "open_clip")
    engine = Engine.open(replace(settings, model=f"open_clip:{TINY_OPEN_CLIP}/{checkpoint}"))
    try:
        assert engine.encoder.model_id == f"open_clip:{TINY_OPEN_CLIP}/tiny.pt" and engine.encoder.dim == 32
        engine.indexer.index([photos[0].parent])
        stored = {p["paths"][0]: v for _, p, v in engine.store.scroll(with_vectors=True)}
        # open_clip's own pipeline: its preprocess on the fully decoded image, encode_image; tokenizer, encode_text.
        model, _, preprocess = open_clip.create_model_and_transforms(TINY_OPEN_CLIP, pretrained=str(checkpoint))
        tokenizer, texts = open_clip.get_tokenizer(TINY_OPEN_CLIP), ["a photo of a cat", "un chat rouge"]
        full = [Image.open(path).convert("RGB") for path in photos]
        with torch.inference_mode():
            images = model.eval().encode_image(torch.stack([preprocess(i) for i in full])).numpy()
            words = model.encode_text(tokenizer(texts)).numpy()
        assert cosine(engine.encoder.encode_images(full), images).min() >= PARITY
        assert cosine(engine.encoder.encode_texts(texts), words).min() >= PARITY
        assert cosine(np.stack([stored[str(p)] for p in photos]), images).min() >= DRAFT_PARITY
        assert engine.searcher.search(Query.image(full[2]), limit=1)[0].path == str(photos[2])
        assert len(engine.searcher.search(Query.text("a photo of a cat"), limit=3)) == 3
    finally:
        engine.close()


def test_a_backend_is_part_of_the_model_id_and_another_backend_is_refused(
    siglip_folders: dict[int, Path], photos: list[Path], settings: Settings, model_path: Path
) -> None:
    engine = Engine.open(replace(settings, model=f"hf:{siglip_folders[1]}"))
    engine.indexer.index([photos[0].parent])
    engine.close()
    # SigLIP 2 makes vectors of SigLIP's size here: refused by its id, like another backend's.
    with pytest.raises(CollectionMismatchError, match="EMBEDDER_MODEL.*QDRANT_COLLECTION"):
        Engine.open(replace(settings, model=f"hf:{siglip_folders[2]}"))
    with pytest.raises(CollectionMismatchError, match="hf:siglip1"):
        Engine.open(replace(settings, model=str(model_path)))
    again = Engine.open(replace(settings, model=f"hf:{siglip_folders[1]}"))
    try:
        assert again.store.count() == len(photos)  # refused openers left it alone
    finally:
        again.close()


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("hf:/no/such/folder", "does not exist"),
        ("hf:google/siglip2-base-patch16-224", "internet"),
        ("open_clip:ViT-B-32/no_such_tag", "open_clip"),
    ],
)
def test_a_model_that_cannot_load_is_one_clear_line(model: str, says: str, cli_settings_env, capsys) -> None:
    cli_settings_env.setenv("EMBEDDER_MODEL", model)
    assert cli.main(["search", "a photo"]) == 1  # info loads no model (#25): a search does
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: ") and says in err and "EMBEDDER_MODEL" in err


def test_a_non_image_text_hf_model_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path / "bert")
    word_tokenizer().save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="not an image-text model"):
        load_encoder(Settings(model=f"hf:{tmp_path / 'bert'}", device="cpu"))


# --------------------------------------------------------------------------------------------
# EMBEDDER_TEXT_MODEL: queries in another text model, trained into the image model's space


@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    return {
        "matching": tiny_text_model(root / "multilingual-tiny", encoder.dim),
        "other-dim": tiny_text_model(root / "narrow", encoder.dim // 2),
        # A known pairing (clip-ViT-B-32) that is not the tiny CLIP: refused by the pairing table.
        "known": tiny_text_model(root / "clip-ViT-B-32-multilingual-v1", encoder.dim),
    }


def test_a_paired_text_model_writes_the_queries_and_images_stay(
    text_models: dict[str, Path], settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    photo_folder(tmp_path / "album", SIZES[:3])
    settings = replace(settings, text_model=str(text_models["matching"]))
    engine = Engine.open(settings)
    try:
        assert engine.encoder.model_id == encoder.model_id and engine.info()["queries by"] == "multilingual-tiny"
        engine.indexer.index([tmp_path / "album"])
        images = [Image.open(p).convert("RGB") for p in sorted((tmp_path / "album").iterdir())]
        np.testing.assert_allclose(engine.encoder.encode_images(images), encoder.encode_images(images), atol=2e-5)
        reference = SentenceTransformer(str(text_models["matching"]), device="cpu").encode(["un chat rouge"])
        query = engine.searcher.text_vector("un chat rouge")
        assert cosine(query, reference[0]) >= PARITY
        assert cosine(query, encoder.encode_texts(["un chat rouge"])[0]) < 0.99  # not the CLIP's own text tower
        assert len(engine.store.query(query, 3)) == 3
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("which", "says"),
    [("other-dim", "32-d vectors but EMBEDDER_MODEL"), ("known", "was trained for 'clip-ViT-B-32'")],
)
def test_a_text_model_that_does_not_match_is_refused_in_one_line(
    which: str, says: str, text_models: dict[str, Path], cli_settings_env, capsys
) -> None:
    cli_settings_env.setenv("EMBEDDER_TEXT_MODEL", str(text_models[which]))
    assert cli.main(["search", "un chat"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert says in err and "EMBEDDER_TEXT_MODEL" in err


def test_a_missing_text_model_folder_names_its_variable(cli_settings_env, capsys, tmp_path: Path) -> None:
    cli_settings_env.setenv("EMBEDDER_TEXT_MODEL", str(tmp_path / "nothing-here"))
    assert cli.main(["search", "a photo"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Set EMBEDDER_TEXT_MODEL to the folder" in err
    assert "/models/" not in err and len(err.strip().splitlines()) == 1  # no EMBEDDER_TEXT_MODEL=/models//tmp/…


@pytest.fixture
def cli_settings_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, model_path: Path) -> pytest.MonkeyPatch:
    """The CLI's environment: the tiny CLIP on a scratch store (each command loads its model)."""
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("UPLOAD_DIR", str(settings.upload_dir))
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    return monkeypatch
