"""EMBEDDER_VISUAL_MODEL: an image-only ViT beside the tiny CLIP, on the real embedded store.

Its vectors are transformers' own; they are written in the indexing pass, back-filled for a store
indexed without them (CLIP vectors untouched), and answer "Similar", image queries and duplicates,
while text queries stay with CLIP.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embedder import cli
from embedder.query.duplicates import duplicate_space, near_duplicate_groups
from embedder.engine import Engine
from embedder.errors import CollectionMismatchError, ModelLoadError
from embedder.media.images import decode
from embedder.query.terms import Query, Term
from embedder.store import VISUAL, Point
from embedder.store.memory import MemoryStore
from embedder.models.visual import VisualEncoder
from modelkit import cosine, photo_folder, tiny_vit

SIZES = [(1200, 900), (97, 160), (640, 480), (30, 20), (800, 420), (64, 64), (300, 200), (150, 150)]
PARITY = 0.9999  # the same pixels through the product and through transformers
DRAFT_PARITY = 0.999  # indexed from a JPEG draft: a 32-pixel random model is very sensitive to resampling


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vit(tmp_path_factory.mktemp("vit") / "tiny-vit")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return photo_folder(tmp_path_factory.mktemp("photos") / "album", SIZES)


@pytest.fixture
def looks(settings, vit: Path, encoder, monkeypatch: pytest.MonkeyPatch):
    """Open engines with the tiny CLIP and, unless told otherwise, the tiny ViT."""
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    opened: list[Engine] = []

    def open_engine(visual: str | None = str(vit), **changes) -> Engine:
        engine = Engine.open(replace(settings, visual_model=visual, **changes))
        opened.append(engine)
        return engine

    yield open_engine
    for engine in opened:
        engine.close()


def reference(folder: Path, images: list[Image.Image]) -> np.ndarray:
    """transformers' own pipeline: the image processor, then the model's pooled output."""
    from transformers import AutoImageProcessor, AutoModel

    model, processor = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    with torch.inference_mode():
        return model(**processor(images=images, return_tensors="pt")).pooler_output.numpy()


def stored(engine: Engine, using: str | None = None) -> dict[str, np.ndarray]:
    """Vectors by first path."""
    return {p["paths"][0]: v for _, p, v in engine.store.scroll(with_vectors=True, using=using)}


def neighbours(vectors: dict[str, np.ndarray], query: np.ndarray, leave_out: str | None = None) -> list[str]:
    """Paths by cosine to `query`, best first (what an exact search must answer)."""
    scores = {path: float(v @ query / np.linalg.norm(v) / np.linalg.norm(query)) for path, v in vectors.items()}
    return sorted((p for p in scores if p != leave_out), key=lambda p: -scores[p])


def test_visual_vectors_are_the_ones_transformers_gives(looks, vit: Path, photos: list[Path]) -> None:
    engine = looks()
    assert (engine.visual.model_id, engine.visual.dim) == ("tiny-vit", 32)
    report = engine.indexer.index([photos[0].parent])
    assert len(report.added) == len(photos)
    full = [Image.open(path).convert("RGB") for path in photos]  # fully decoded, no draft
    expected = reference(vit, full)
    assert cosine(engine.visual.encode_images(full), expected).min() >= PARITY
    visual = stored(engine, VISUAL)
    indexed = np.stack([visual[str(path)] for path in photos])
    # Indexed from the decode the CLIP model also used (JPEG drafts, shrunk to the larger input side).
    decoded = [decode(path, 10**8, engine.searcher.min_side).image for path in photos]
    assert cosine(indexed, reference(vit, decoded)).min() >= PARITY
    assert cosine(indexed, expected).min() >= DRAFT_PARITY
    # The CLIP vectors are the CLIP model's, as without a visual model.
    clip = stored(engine)
    assert cosine(np.stack([clip[str(p)] for p in photos]), engine.encoder.encode_images(decoded)).min() >= PARITY


def test_similar_and_image_queries_compare_visual_vectors_text_compares_clip(looks, photos: list[Path]) -> None:
    engine = looks()
    engine.indexer.index([photos[0].parent])
    visual, clip = stored(engine, VISUAL), stored(engine)
    pids = {p["paths"][0]: i for i, p, _ in engine.store.scroll()}
    seed = str(photos[2])
    by_looks, by_clip = neighbours(visual, visual[seed], seed), neighbours(clip, clip[seed], seed)
    assert by_looks != by_clip  # the two models disagree here: the answer shows which one was asked

    similar = engine.searcher.search(Query.like(pids[seed]), limit=len(photos))
    assert [r.path for r in similar] == by_looks
    assert [r.score for r in similar] == pytest.approx(
        [float(visual[p] @ visual[seed]) for p in by_looks], abs=1e-5
    )

    picture = Image.open(photos[5]).convert("RGB")
    query = engine.visual.encode_images([picture])[0]
    found = engine.searcher.search(Query.image(picture), limit=len(photos))
    assert [r.path for r in found] == neighbours(visual, query)
    uploaded = Term(image=picture.resize((8, 8)), vector=engine.searcher.compose([Term(image=picture)]),
                    visual=engine.searcher.visual_vector(picture))  # what the Search page keeps of an upload
    assert [r.path for r in engine.searcher.search(Query((uploaded,)), limit=3)] == neighbours(visual, query)[:3]

    words = engine.encoder.encode_texts(["a photo of a red circle"])[0]
    text = engine.searcher.search(Query.text("a red circle", template="a photo of {}"), limit=8)
    assert [r.path for r in text] == neighbours(clip, words)
    # Words and a picture together: CLIP's space, where both are.
    mixed = Query((Term(text="a red circle"), Term(point_id=pids[seed])))
    expected = engine.searcher.compose(mixed.terms)
    assert [r.path for r in engine.searcher.search(mixed, limit=7)] == neighbours(clip, expected, seed)


def test_without_a_visual_model_everything_is_as_before(looks, photos: list[Path]) -> None:
    engine = looks(visual=None)
    engine.indexer.index([photos[0].parent])
    assert engine.visual is None and engine.store.visual_model is None and "visual model" not in engine.info()
    config = (engine.settings.qdrant_path / "images" / "shard" / "edge_config.json").read_text()
    assert VISUAL not in config  # one unnamed vector, as stores always had
    clip = stored(engine)
    pids = {p["paths"][0]: i for i, p, _ in engine.store.scroll()}
    seed = str(photos[2])
    similar = engine.searcher.search(Query.like(pids[seed]), limit=7)
    assert [r.path for r in similar] == neighbours(clip, clip[seed], seed)


def test_backfill_gives_a_clip_only_store_visual_vectors_keeping_its_clip_vectors(
    looks, photos: list[Path], vit: Path, settings, encoder, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    engine = looks(visual=None)
    engine.indexer.index([photos[0].parent])
    before = {i: (v, p) for i, p, v in engine.store.scroll(with_vectors=True)}
    engine.close()
    with pytest.raises(CollectionMismatchError, match="no visual vectors yet.*embedder backfill-visual"):
        looks()

    for key, value in {
        "EMBEDDER_MODEL": settings.model, "EMBEDDER_DEVICE": "cpu", "EMBEDDER_VISUAL_MODEL": str(vit),
        "QDRANT_PATH": str(settings.qdrant_path), "UPLOAD_DIR": str(settings.upload_dir),
    }.items():
        monkeypatch.setenv(key, value)
    photos[1].rename(photos[1].with_suffix(".gone"))  # one file is gone: its image stays CLIP-only
    try:
        assert cli.main(["backfill-visual"]) == 0
    finally:
        photos[1].with_suffix(".gone").rename(photos[1])
    out = capsys.readouterr().out
    assert "images copied into a store with visual vectors" in out
    assert f"failed: {photos[1]}" in out and f"{len(photos) - 1} images got a visual vector, 1 without" in out

    engine = looks()
    after = {i: (v, p) for i, p, v in engine.store.scroll(with_vectors=True)}
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[i][0], before[i][0]) and after[i][1] == before[i][1] for i in before)
    assert [p["paths"][0] for _, p in engine.store.without_visual()] == [str(photos[1])]
    visual = stored(engine, VISUAL)
    fresh = engine.visual.encode_images([decode(p, 10**8, engine.visual.image_size).image for p in photos])
    assert cosine(np.stack([visual[str(p)] for p in photos if p != photos[1]]), np.delete(fresh, 1, 0)).min() >= PARITY
    # Similar of the image without one falls back to CLIP; the others use the visual vectors.
    pids = {p["paths"][0]: i for i, p, _ in engine.store.scroll()}
    clip = stored(engine)
    lone = str(photos[1])
    similar = engine.searcher.search(Query.like(pids[lone]), limit=7)
    assert [r.path for r in similar] == neighbours(clip, clip[lone], lone)
    engine.close()

    assert cli.main(["backfill-visual", "--json"]) == 0  # the file is back: the last one is filled
    assert '"filled": 1' in capsys.readouterr().out
    engine = looks()
    assert list(engine.store.without_visual()) == []


def test_another_visual_model_is_refused_and_unsetting_it_keeps_the_store(
    looks, photos: list[Path], tmp_path: Path
) -> None:
    engine = looks()
    engine.indexer.index([photos[0].parent])
    engine.close()
    other = tiny_vit(tmp_path / "other-vit", seed=1)
    refusal = "'tiny-vit'.*EMBEDDER_VISUAL_MODEL is 'other-vit'.*QDRANT_COLLECTION"
    with pytest.raises(CollectionMismatchError, match=refusal):
        looks(visual=str(other))
    engine = looks(visual=None)  # unset: CLIP answers everything, the visual vectors stay for later
    assert engine.store.count() == len(photos) and len(engine.searcher.search(Query.text("a red circle"), 3)) == 3
    engine.close()
    assert list(looks().store.without_visual()) == []


def test_duplicates_use_the_visual_vectors_when_every_image_has_one() -> None:
    store = MemoryStore("clip", 2, visual=("vit", 2))
    same_words = np.array([1.0, 0.0])
    # a and b: the same CLIP vector, different looks; c and d: different CLIP vectors, the same looks.
    store.upsert([
        Point("a", same_words, {"paths": ["/a"]}, np.array([1.0, 0.0])),
        Point("b", same_words, {"paths": ["/b"]}, np.array([0.0, 1.0])),
        Point("c", np.array([0.6, 0.8]), {"paths": ["/c"]}, np.array([0.7, 0.7])),
        Point("d", np.array([-0.6, 0.8]), {"paths": ["/d"]}, np.array([0.7, 0.7])),
    ])
    assert duplicate_space(store) == VISUAL
    assert [sorted(g.ids) for g in near_duplicate_groups(store, 0.99)] == [["c", "d"]]
    store.upsert([Point("e", np.array([0.0, 1.0]), {"paths": ["/e"]})])  # no visual vector yet: CLIP for all
    assert duplicate_space(store) is None
    assert [sorted(g.ids) for g in near_duplicate_groups(store, 0.99)] == [["a", "b"]]
    clip_only = MemoryStore("clip", 2)
    clip_only.upsert([Point("a", same_words, {}), Point("b", same_words, {})])
    assert duplicate_space(clip_only) is None and len(near_duplicate_groups(clip_only, 0.99)) == 1


def test_a_missing_or_wrong_visual_model_is_one_clear_error(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist.*EMBEDDER_VISUAL_MODEL"):
        VisualEncoder(str(tmp_path / "no-such-model"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="Could not load the image model.*EMBEDDER_VISUAL_MODEL"):
        VisualEncoder(str(tmp_path / "empty"), device="cpu")
