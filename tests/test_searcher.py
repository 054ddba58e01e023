"""Search: templates, text vector cache, more-like-this, image queries, paging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder.engine import Engine
from embedder.query.terms import Query, apply_template
from imagefiles import solid


@pytest.mark.parametrize(
    ("text", "template", "expected"),
    [
        ("dog", None, "dog"),
        ("  dog ", "a photo of {}", "a photo of dog"),
        ("dog", "a photo of", "a photo of dog"),
        ("{weird}", "a photo of {}", "a photo of {weird}"),
    ],
)
def test_apply_template(text: str, template: str | None, expected: str) -> None:
    assert apply_template(text, template) == expected


@pytest.fixture
def indexed(engine: Engine, tmp_path: Path) -> Engine:
    for i, colour in enumerate([(220, 30, 30), (30, 180, 40), (30, 60, 220), (240, 220, 30), (200, 40, 200)]):
        solid(tmp_path / "imgs" / f"{i}.png", colour)
    engine.indexer.index([tmp_path / "imgs"])
    return engine


def test_text_hits_are_sorted_by_cosine_and_paged(indexed: Engine) -> None:
    results = indexed.searcher.search(Query.text("a red circle"), 5)
    assert len(results) == 5
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    query = indexed.encoder.encode_texts(["a red circle"])[0]
    for r in results:  # the score is the cosine of the stored vector and the query
        assert r.score == pytest.approx(float(indexed.store.vector(r.id) @ query), abs=1e-4)
    page2 = indexed.searcher.search(Query.text("a red circle"), 2, offset=2)
    assert [r.id for r in page2] == [r.id for r in results[2:4]]
    assert indexed.searcher.search(Query.text("a red circle", min_score=scores[1] - 1e-6), 5) == results[:2]


def test_same_text_is_encoded_once(indexed: Engine, monkeypatch) -> None:
    calls: list[list[str]] = []
    real = indexed.encoder.encode_texts
    monkeypatch.setattr(indexed.encoder, "encode_texts", lambda texts: calls.append(list(texts)) or real(texts))
    indexed.searcher.search(Query.text("sunset over the sea"))
    indexed.searcher.search(Query.text("sunset over the sea"), 3)
    assert calls == [["sunset over the sea"]]


def test_more_like_this_leaves_the_image_out(indexed: Engine) -> None:
    source = indexed.searcher.search(Query.text("anything"), 1)[0]
    similar = indexed.searcher.search(Query.like(source.id), 10)
    assert len(similar) == 4 and source.id not in {r.id for r in similar}


def test_an_indexed_image_finds_itself_first(indexed: Engine, tmp_path: Path) -> None:
    image = Image.open(tmp_path / "imgs" / "2.png")
    best = indexed.searcher.search(Query.image(image), 1)[0]
    assert best.path == str(tmp_path / "imgs" / "2.png")
    assert best.score == pytest.approx(1.0, abs=1e-3)


def test_vectors_are_unit_length(indexed: Engine) -> None:
    texts = indexed.encoder.encode_texts(["a", "a red circle", "x" * 500])
    assert texts.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])  # the tokenizer really tells texts apart
