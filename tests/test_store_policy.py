"""The search policy (embedder/store/policy.py): exact below a size, HNSW + int8 quantisation above it.

On real Qdrant Edge folders, with the policy's threshold set small by the test (200 points): below it
every score equals numpy's brute force; above it the shard holds a graph and quantised vectors, while
scores stay exact cosines of the originals (rescoring) and the stored originals read back unchanged
(the damage check on open reads them). The server backend translates the same policy.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedder.config import Settings
from embedder.store import Point, QdrantStore
from embedder.store.policy import POLICY, SearchPolicy

pytest.importorskip("qdrant_edge")

from embedder.store import edge as store_edge  # noqa: E402
from embedder.store.edge import SHARD_DIR, EdgeStore  # noqa: E402

DIM = 64
SMALL = replace(POLICY, exact_below=200, full_scan_points=20, build_step_points=10**9, max_segment_points=5_000)


def clustered(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, DIM))
    v = centres[rng.integers(0, 12, n)] + 0.5 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def pid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def points(vectors: np.ndarray, start: int = 0) -> list[Point]:
    return [Point(pid(start + i), v, {"paths": [f"/p/{start + i}.jpg"], "format": "JPEG"}) for i, v in enumerate(vectors)]


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> SearchPolicy:
    monkeypatch.setattr(store_edge, "POLICY", SMALL)
    return SMALL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(qdrant_path=tmp_path / "qdrant", collection="images")


def shard_config(settings: Settings) -> dict:
    return json.loads((settings.qdrant_path / "images" / SHARD_DIR / "edge_config.json").read_text())


def brute_force(data: np.ndarray, q: np.ndarray, k: int = 10) -> tuple[list[str], np.ndarray]:
    scores = data @ q
    top = np.argsort(-scores, kind="stable")[:k]
    return [pid(int(i)) for i in top], scores[top]


def test_policy_thresholds_are_in_qdrants_units() -> None:
    assert SMALL.indexing_threshold_kb(DIM) == 200 * DIM * 4 // 1024
    assert POLICY.indexing_threshold_kb(512) == POLICY.exact_below * 2  # 512 float32 = 2 KB a vector
    assert POLICY.max_segment_points >= POLICY.exact_below


def test_below_the_threshold_search_is_exact_and_above_it_hnsw_with_quantisation(policy, settings) -> None:
    data = clustered(1_200)
    queries = clustered(20, seed=9)
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(points(data[:150]))
        store.optimize(force=True)
        assert store.stats()["indexed"] == 0  # 150 < 200: no graph
        for q in queries:
            ids, scores = brute_force(data[:150], q)
            hits = store.query(q, 10)
            assert [h.id for h in hits] == ids
            np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)

        store.upsert(points(data[150:], start=150))
        store.optimize(force=True)
        stats = store.stats()
        assert stats["points"] == 1_200
        assert stats["indexed"] > 0  # a segment above 200 points got its graph

        config = json.loads((store.shard_path / "edge_config.json").read_text())  # the live shard (a build moves it)
        assert config["hnsw_config"]["m"] == policy.m
        assert config["hnsw_config"]["ef_construct"] == policy.ef_construct
        assert config["hnsw_config"]["payload_m"] == 0
        assert "int8" in json.dumps(config["quantization_config"]).lower()
        assert config["optimizers"]["indexing_threshold"] == policy.indexing_threshold_kb(DIM)
        segments = store.shard_path / "segments"
        assert any("quantized" in p.name or "quantization" in p.name for p in segments.rglob("*")), "no quantised files"

        found = 0
        for q in queries:
            ids, _ = brute_force(data, q)
            hits = store.query(q, 10, with_vectors=True)
            found += len({h.id for h in hits} & set(ids))
            for h in hits:  # rescored with the originals: the score is the exact cosine
                assert h.score == pytest.approx(float(data[int(h.id[-12:])] @ q), abs=1e-5)
        assert found / (10 * len(queries)) >= 0.8
        for q in queries[:5]:  # exact=True scores the originals only: brute force again
            ids, scores = brute_force(data, q)
            assert [h.id for h in store.query(q, 10, exact=True)] == ids
        original = store.vector(pid(700))
        np.testing.assert_allclose(original, data[700], atol=1e-6)  # the originals are kept, not int8

    with EdgeStore(settings, "m", DIM) as store:  # the damage checks on open read stored vectors
        assert store.count() == 1_200
        assert store.stats()["indexed"] > 0


def test_the_store_builds_the_graph_in_steps_without_being_asked(monkeypatch, settings) -> None:
    monkeypatch.setattr(store_edge, "POLICY", replace(SMALL, build_step_points=400))
    data = clustered(900)
    with EdgeStore(settings, "m", DIM) as store:
        for start in range(0, 380, 95):
            store.upsert(points(data[start:start + 95], start=start))
        assert store.stats()["indexed"] == 0  # 380 new points: no step yet
        for start in range(380, 900, 130):
            store.upsert(points(data[start:start + 130], start=start))
        assert store.stats()["indexed"] > 0  # the step at 400 new points built a graph, nobody called optimize


def test_a_store_made_before_the_policy_takes_it_on_when_opened(settings, monkeypatch) -> None:
    old = replace(POLICY, quantize=False, exact_below=200_000, originals_on_disk=False)
    monkeypatch.setattr(store_edge, "POLICY", old)
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(points(clustered(300)))
    assert shard_config(settings).get("quantization_config") is None
    monkeypatch.setattr(store_edge, "POLICY", SMALL)
    with EdgeStore(settings, "m", DIM) as store:
        assert shard_config(settings)["quantization_config"] is not None
        assert shard_config(settings)["optimizers"]["indexing_threshold"] == SMALL.indexing_threshold_kb(DIM)
        store.optimize(force=True)
        assert store.stats()["indexed"] > 0


def payload_index_memory(store: EdgeStore) -> dict[str, object]:
    with store._edge() as shard:
        return {name: str(getattr(info.params, "memory", None)) for name, info in shard.info().payload_schema.items()}


def test_payload_indexes_are_memory_mapped_and_an_old_stores_are_moved_once(settings, monkeypatch, caplog) -> None:
    from qdrant_edge import Memory

    from embedder.store import SearchFilter
    from embedder.store.schema import PAYLOAD_INDEXES

    data = clustered(300)
    monkeypatch.setattr(store_edge, "POLICY", replace(POLICY, payload_indexes_on_disk=False))
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(points(data))
        assert set(payload_index_memory(store).values()) == {str(Memory.Pinned)}  # as stores were made before
    monkeypatch.setattr(store_edge, "POLICY", POLICY)
    with EdgeStore(settings, "m", DIM) as store:
        assert ["Re-making the store's search-filter indexes as memory-mapped files"] == [
            r.getMessage().split(", once")[0] for r in caplog.records if r.levelname == "WARNING"
        ]  # one line, shown by the CLI without --verbose
        placed = payload_index_memory(store)
        assert set(placed) == set(PAYLOAD_INDEXES) and set(placed.values()) == {str(Memory.Cached)}
        assert store.count() == 300
        hits = store.query(data[7], 5, where=SearchFilter(formats=("JPEG",)))
        assert hits[0].id == pid(7)  # the re-made keyword index still serves the filter
        assert store.query(data[7], 5, where=SearchFilter(formats=("PNG",))) == []
    calls = []
    real = store_edge.create_payload_indexes
    monkeypatch.setattr(store_edge, "create_payload_indexes", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    with EdgeStore(settings, "m", DIM):
        pass
    assert calls == [0]  # once moved, an open makes nothing again


def test_opening_reads_what_edge_loads_in_order_and_leaves_the_originals_on_disk(policy, settings, monkeypatch) -> None:
    data = clustered(600)
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(points(data))
        store.optimize(force=True)
        assert store.stats()["indexed"] > 0
    shard = settings.qdrant_path / "images" / SHARD_DIR
    opened: list[str] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self.name) or real_open(self, *a, **k))
    read = store_edge.read_ahead(shard)
    assert "quantized.data" in opened and any(name.startswith("links") for name in opened)
    assert "matrix.dat" not in opened  # the float32 originals of a graph segment stay on disk
    assert read >= (shard / "segments").glob("*/vector_storage/quantized.data").__next__().stat().st_size
    monkeypatch.setattr(Path, "open", real_open)
    with EdgeStore(settings, "m", DIM) as store:  # the store reads ahead on open, and opens as before
        assert store.count() == 600
        assert store.query(data[5], 1)[0].id == pid(5)


def test_the_server_backend_translates_the_same_policy(tmp_path: Path) -> None:
    from qdrant_client import models

    from embedder.store.server import collection_config, search_params

    config = collection_config(512, POLICY)
    assert config["hnsw_config"].m == POLICY.m and config["hnsw_config"].ef_construct == POLICY.ef_construct
    assert config["hnsw_config"].payload_m == POLICY.payload_m
    assert config["optimizers_config"].indexing_threshold == POLICY.indexing_threshold_kb(512)
    assert config["quantization_config"].scalar.type == models.ScalarType.INT8
    assert config["quantization_config"].scalar.always_ram is True
    assert config["vectors_config"].on_disk is POLICY.originals_on_disk
    params = search_params(POLICY, exact=False)
    assert params.hnsw_ef == POLICY.hnsw_ef and params.quantization.rescore is True
    assert params.quantization.oversampling == POLICY.oversampling
    assert search_params(POLICY, exact=True).exact is True

    # qdrant-client's local mode takes the same configuration and searches exactly.
    settings = Settings(qdrant_path=tmp_path / "local", collection="images")
    data = clustered(50)
    store = QdrantStore.embedded(settings, "m", DIM)
    try:
        store.upsert(points(data))
        q = clustered(1, seed=5)[0]
        ids, scores = brute_force(data, q)
        hits = store.query(q, 10)
        assert [h.id for h in hits] == ids
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
    finally:
        store.close()
