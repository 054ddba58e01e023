"""One fused request (embedder/store/fusion.py) on every backend: Edge, qdrant-client local mode (the
server's code path) and the in-memory store give the same ranking for the same data, filters hold in
every prefetch, and a store made before points had words is given the WORDS vector in place."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from embedder.config import Settings
from embedder.indexing.lexicon import needs_words, with_words
from embedder.query.lexical import words_part
from embedder.query.terms import Term
from embedder.store import ImageStore, Point, QdrantStore, SearchFilter
from embedder.store.contract import WORDS
from embedder.store.edge import SHARD_DIR, EdgeStore, edge_config
from embedder.store.fusion import Boost, Dbsf, Nearest, Rrf, fuse
from embedder.store.memory import MemoryStore
from embedder.words import searchable

pytest.importorskip("qdrant_edge")

DIM = 8
TEXTS = [
    "Wi-Fi Name-Guest password Pa55word!", "grandmas birthday cake", "receipt total 12.50 coffee",
    "beach sunset 2019", "birthday party invitation", "", "", "", "", "",
]
FUSIONS = [Boost(bonus=2.0, floor=1.0, lift=0.1, full=10.0), Rrf(k=60), Rrf(k=10, weights=(1.0, 3.0)), Dbsf()]


def pid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def worded_points() -> list[Point]:
    rng = np.random.default_rng(0)
    points = []
    for n, text in enumerate(TEXTS):
        payload = {
            "paths": [f"/p/{'cake' if n == 6 else 'img'}-{n}.jpg"], "names": [f"img-{n}.jpg"], "folders": ["/", "/p"],
            "format": "PNG" if n % 2 else "JPEG", "date": float(n), "text": searchable(text),
            "text_lines": [{"text": text, "box": [[0, 0], [1, 0], [1, 1], [0, 1]], "confidence": 0.9}],
        }
        payload, words = with_words(payload)
        vector = rng.normal(size=DIM)
        points.append(Point(pid(n), (vector / np.linalg.norm(vector)).astype(np.float32), payload, words=words))
    return points


def open_backend(backend: str, settings: Settings) -> ImageStore:
    if backend == "memory":
        return MemoryStore("m", DIM)
    if backend == "edge":
        return EdgeStore(settings, "m", DIM)
    return QdrantStore.embedded(replace(settings, qdrant_path=settings.qdrant_path.parent / "local"), "m", DIM)


def ranking(store: ImageStore, fusion, text: str, where: SearchFilter | None = None) -> list[tuple[str, float]]:
    part = words_part([Term(text=text)])
    assert part is not None
    dense = np.random.default_rng(5).normal(size=DIM)
    parts = [Nearest(dense, 10), Nearest(part.vector, 10, using=WORDS, must=(part.need,), score_threshold=0.5)]
    return [(h.id, round(h.score, 4)) for h in store.fused(parts, fusion, 6, where=where)]


@pytest.mark.parametrize("fusion", FUSIONS, ids=lambda f: repr(f))
def test_the_fused_ranking_is_the_same_on_edge_local_mode_and_memory(settings: Settings, fusion) -> None:
    found = {}
    for backend in ("edge", "local", "memory"):
        store = open_backend(backend, settings)
        store.upsert(worded_points())
        found[backend] = (ranking(store, fusion, "birthday cake"), ranking(store, fusion, "birthday", SearchFilter(formats=("PNG",))))
        store.close()
    assert found["edge"] == found["local"] == found["memory"]
    plain, filtered = found["edge"]
    assert plain[0][0] == pid(1)  # holds both words: first, whatever its cosine
    assert {h for h, _ in filtered} <= {pid(n) for n in range(1, 10, 2)}  # the filter held in both prefetches


def test_an_exact_word_match_outranks_every_picture_that_only_looks_alike(settings: Settings) -> None:
    store = EdgeStore(settings, "m", DIM)
    points = worded_points()
    store.upsert(points)
    looks = points[8].vector  # the query looks exactly like picture 8, which says nothing
    part = words_part([Term(text="coffee")])
    hits = store.fused([Nearest(looks, 10), Nearest(part.vector, 10, using=WORDS, must=(part.need,))], FUSIONS[0], 3)
    assert [h.id for h in hits[:2]] == [pid(2), pid(8)]
    assert hits[1].score == pytest.approx(1.0, abs=1e-4)  # a picture found by its looks keeps its cosine
    store.close()


def test_fuse_follows_qdrants_rrf_formula() -> None:
    ranked = [[("a", 0.9), ("b", 0.5)], [("b", 3.0), ("c", 1.0)]]
    scores = dict(fuse(Rrf(k=60), ranked))
    assert scores["b"] == pytest.approx(1 / 61 + 1 / 60)  # 1 / (k + rank), rank counted from 0
    assert scores["a"] == pytest.approx(1 / 60) and scores["c"] == pytest.approx(1 / 61)


def test_an_edge_store_made_before_words_gets_them_in_place_keeping_its_vectors(settings: Settings, monkeypatch) -> None:
    old = [replace(p, words=None, payload={k: v for k, v in p.payload.items() if k not in ("words", "name_text", "words_by")})
           for p in worded_points()[:4]]
    with monkeypatch.context() as before_words:  # the store as it was made before points had words
        made = edge_config
        before_words.setattr("embedder.store.edge.edge_config", lambda *a, words=False, **k: made(*a, **k))
        store = EdgeStore(settings, "m", DIM)
        store.has_words = False
        store.upsert(old)
        store.close()
    config = json.loads((settings.qdrant_path / settings.collection / SHARD_DIR / "edge_config.json").read_text())
    assert WORDS not in (config.get("sparse_vectors") or {})

    store = EdgeStore(settings, "m", DIM)
    assert store.has_words
    before = {p.id: store.vector(p.id) for p in old}
    stored = store.retrieve([p.id for p in old])
    assert all(needs_words(payload) for payload in stored.values())
    for point_id, payload in stored.items():  # what the next index run does for each old point
        fresh, words = with_words(payload)
        store.set_words({point_id: words})
        store.set_payload(point_id, fresh)
    assert ranking(store, FUSIONS[0], "coffee")[0][0] == pid(2)
    for point_id, vector in before.items():
        np.testing.assert_array_equal(store.vector(point_id), vector)
    store.close()


def test_a_local_mode_collection_made_before_words_gets_them_in_place(settings: Settings) -> None:
    path = settings.qdrant_path.parent / "local"
    client = QdrantClient(path=str(path))
    client.create_collection(
        settings.collection, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        metadata={"model": "m", "dim": DIM},
    )
    client.upsert(settings.collection, [models.PointStruct(id=pid(1), vector=[1.0] + [0.0] * (DIM - 1), payload={})])
    client.close()
    store = QdrantStore.embedded(replace(settings, qdrant_path=path), "m", DIM)
    assert store.has_words
    fresh, words = with_words({"paths": ["/p/grandmas-birthday-cake.jpg"], "names": ["grandmas-birthday-cake.jpg"]})
    store.set_words({pid(1): words})
    store.set_payload(pid(1), fresh)
    assert ranking(store, FUSIONS[0], "birthday cake")[0][0] == pid(1)
    np.testing.assert_allclose(store.vector(pid(1)), [1.0] + [0.0] * (DIM - 1))
    store.close()


def test_names_folders_and_tags_are_words_of_a_point() -> None:
    payload, words = with_words({
        "paths": ["/photos/2019/june/grandmasBirthdayCake_01.jpg"], "names": ["grandmasBirthdayCake_01.jpg"],
        "tags": ["birthday party"],
    })
    assert {"grandmas", "birthday", "cake", "2019", "june", "party"} <= set(payload["words"].split())
    assert {"grandmas", "birthday", "cake", "june"} <= set(payload["name_text"].split())
    assert words and not needs_words(payload)


@pytest.mark.parametrize("backend", ["edge", "local", "memory"])
def test_a_prefetch_leaves_out_its_own_ids_and_the_requests(backend: str, settings: Settings) -> None:
    store = open_backend(backend, settings)
    store.upsert(worded_points())
    part = words_part([Term(text="birthday")])
    dense = np.random.default_rng(5).normal(size=DIM)
    parts = [Nearest(dense, 10), Nearest(part.vector, 10, using=WORDS, must=(part.need,), exclude_ids=(pid(1),))]
    hits = store.fused(parts, FUSIONS[0], 10, where=SearchFilter(exclude_ids=(pid(3),)))
    scores = {h.id: h.score for h in hits}
    assert scores[pid(4)] > 1 and scores[pid(1)] < 1  # 1 is found by its looks alone; 4 by its words
    assert pid(3) not in scores
    store.close()
