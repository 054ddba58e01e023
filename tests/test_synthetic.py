"""The synthetic dataset generator and the tiny CLIP trained on it (tests/fixtures/tiny-clip)."""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from embedder.evaluation import synthetic  # noqa: E402

TINY_CLIP = ROOT / "tests" / "fixtures" / "tiny-clip"
HELDOUT_SEED = 4242  # neither the training seeds (1000..1017) nor the training log's held-out seed (99)


# --- generator -------------------------------------------------------------------------------


def test_same_seed_gives_same_images_and_labels():
    first = list(synthetic.generate(12, seed=7, image_size=64))
    again = list(synthetic.generate(12, seed=7, image_size=64))
    assert [s.caption for s in first] == [s.caption for s in again]
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(first, again))


def test_other_seed_gives_other_images():
    a = list(synthetic.generate(6, seed=1, image_size=64))
    b = list(synthetic.generate(6, seed=2, image_size=64))
    assert [s.image.tobytes() for s in a] != [s.image.tobytes() for s in b]


def test_longer_run_starts_with_the_shorter_one():
    short = list(synthetic.generate(3, seed=5, image_size=48))
    long = list(synthetic.generate(8, seed=5, image_size=48))
    assert [s.image.tobytes() for s in short] == [s.image.tobytes() for s in long[:3]]


def test_generate_is_balanced_over_every_shape_colour_size():
    per_class = 2
    combos = len(synthetic.SHAPES) * len(synthetic.COLOURS) * len(synthetic.SIZES)
    samples = list(synthetic.generate(combos * per_class, seed=3, image_size=32))
    counts = Counter((s.shape, s.colour, s.size) for s in samples)
    assert len(counts) == combos and set(counts.values()) == {per_class}
    assert all(s.image.mode == "RGB" and s.image.size == (32, 32) for s in samples)


def test_generate_classes_gives_n_of_each_class_in_both_sizes():
    samples = list(synthetic.generate_classes(3, seed=3, image_size=32))
    counts = Counter(s.label for s in samples)
    assert list(counts) == synthetic.class_names() and set(counts.values()) == {3}
    for label in synthetic.class_names():
        assert {s.size for s in samples if s.label == label} == set(synthetic.SIZES)


def test_label_and_caption():
    image = next(synthetic.generate(1, seed=0, image_size=32)).image
    sample = synthetic.Sample("circle", "red", "small", image)
    assert sample.label == "red circle"
    assert sample.caption == "a small red circle"
    assert synthetic.caption("orange", "star") == "an orange star"
    assert synthetic.caption("orange", "star", "large") == "a large orange star"
    assert len(synthetic.class_names()) == len(set(synthetic.class_names())) == 30


def test_object_is_drawn_in_its_colour():
    """The object's pixels, not the background's, carry the colour the caption names."""
    for sample in synthetic.generate(60, seed=11, image_size=96):
        if sample.size != "large":
            continue
        pixels = np.asarray(sample.image, dtype=np.float32).reshape(-1, 3)
        chroma = np.ptp(pixels, axis=1)
        r, g, b = np.median(pixels[chroma >= np.quantile(chroma, 0.97)], axis=0)  # most saturated 3%: the object
        dominant = {"red": r > g + 60 and r > b + 60, "green": g > r and g > b, "blue": b > r and b > g,
                    "yellow": r > b + 80 and g > b + 80, "orange": r > g > b, "purple": r > g and b > g}
        assert dominant[sample.colour], (sample.caption, (r, g, b))


@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_write_dataset_layout(tmp_path, layout):
    csv_path = synthetic.write_dataset(tmp_path / "ds", n_per_class=2, seed=9, layout=layout, image_size=48)
    assert csv_path == tmp_path / "ds" / "captions.csv"
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "caption"]
    assert len(rows) == 2 * 30
    images = sorted(p for p in (tmp_path / "ds").rglob("*.jpg"))
    assert sorted((tmp_path / "ds" / r["path"]) for r in rows) == images
    for row in rows:
        assert row["caption"].split()[0] == "a" and row["caption"].split()[1] in synthetic.SIZES
    if layout == "folders":
        folders = sorted(p.name for p in (tmp_path / "ds").iterdir() if p.is_dir())
        assert folders == sorted(synthetic.class_names())
        for row in rows:
            folder, name = row["path"].split("/")
            assert row["caption"].endswith(folder) and name in ("0001.jpg", "0002.jpg")
        assert (tmp_path / "ds" / "red circle" / "0001.jpg").is_file()
    else:
        assert all("/" not in r["path"] for r in rows)


def test_write_dataset_is_deterministic(tmp_path):
    synthetic.write_dataset(tmp_path / "a", n_per_class=1, seed=4, image_size=32)
    synthetic.write_dataset(tmp_path / "b", n_per_class=1, seed=4, image_size=32)
    for path in (tmp_path / "a").rglob("*.*"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_write_dataset_rejects_unknown_layout(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        synthetic.write_dataset(tmp_path, n_per_class=1, seed=0, layout="nested")


# --- the committed tiny CLIP -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip():
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer

        yield SentenceTransformer(str(TINY_CLIP), device="cpu", local_files_only=True)
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_tiny_clip_is_a_small_clip(tiny_clip):
    assert {"text", "image"} <= set(tiny_clip.modalities)
    processor = tiny_clip[0].processor
    assert len(processor.tokenizer) > 512  # not the 2-token tokenizer of a missing vocab.json
    assert processor.image_processor.crop_size.height == processor.image_processor.crop_size.width == 48
    size_mb = sum(f.stat().st_size for f in TINY_CLIP.rglob("*") if f.is_file()) / 1e6
    assert size_mb < 5


def test_tiny_clip_gives_different_texts_different_vectors(tiny_clip):
    texts = ["a red circle", "a blue circle", "a red square", "a small red circle", "something else entirely"]
    ids = [tuple(tiny_clip[0].processor.tokenizer(t)["input_ids"]) for t in texts]
    assert len(set(ids)) == len(texts)
    vectors = unit(tiny_clip.encode(texts))
    sims = vectors @ vectors.T
    assert np.all(sims[~np.eye(len(texts), dtype=bool)] < 0.999)


def test_tiny_clip_retrieves_held_out_images(tiny_clip):
    held = list(synthetic.generate_classes(4, seed=HELDOUT_SEED))  # 120 images at 224 px
    labels = np.array([s.label for s in held])
    images = unit(tiny_clip.encode([s.image for s in held], batch_size=64))
    queries = ["red circle", "blue square", "green triangle", "yellow star", "purple cross", "orange circle"]
    texts = unit(tiny_clip.encode([synthetic.caption(*q.split()) for q in queries]))
    ranked = np.argsort(-(texts @ images.T), axis=1)
    for query, order in zip(queries, ranked):
        assert labels[order[0]] == query, f"{query!r}: top hits {list(labels[order[:5]])}"
    # And across every class: most of the top 4 (there are 4 of each) are the queried class.
    names = synthetic.class_names()
    all_texts = unit(tiny_clip.encode([synthetic.caption(*n.split()) for n in names]))
    top4 = np.argsort(-(all_texts @ images.T), axis=1)[:, :4]
    precision = float(np.mean(labels[top4] == np.array(names)[:, None]))
    assert precision >= 0.6, precision
