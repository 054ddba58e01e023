"""An `ImageStore` in memory: exact cosine search over a dict, for fast indexer and search tests.

It keeps the same contract as the two Qdrant backends (tests/test_store_edge.py runs the one
contract suite over all three), so a test that passes on it means the same on Qdrant. Nothing is
written to disk; nothing here is used by the product itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from embedder.store.conditions import matches
from embedder.store.contract import SCROLL_PAGE, Hit, ImageStore, Point, SearchFilter
from embedder.store.schema import shown, with_day


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector  # cosine: stored unit


class MemoryStore(ImageStore):
    """Points in a dict, searched exactly; thread-safe like the embedded store.

    Each point is {"": CLIP vector, "visual": visual vector (when it has one)} and its payload."""

    mode = "memory"

    def __init__(
        self, model_id: str, dim: int, collection: str = "images", visual: tuple[str, int] | None = None
    ) -> None:
        self.model_id = model_id
        self.dim = dim
        self.collection = collection
        self.location = "memory"
        self.visual_model, self.visual_dim = visual or (None, None)
        self._points: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
        self._guard = threading.RLock()

    def count(self) -> int:
        with self._guard:
            return len(self._points)

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._guard:
            return {i: shown(self._points[i][1]) for i in ids if i in self._points}

    def upsert(self, points: Sequence[Point]) -> None:
        with self._guard:
            for p in points:
                vectors = {"": _unit(p.vector)}
                if p.visual is not None:
                    vectors["visual"] = _unit(p.visual)
                self._points[p.id] = (vectors, dict(with_day(p.payload)))

    def set_visual(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self._guard:
            for i, vector in vectors.items():
                if i in self._points:
                    self._points[i][0]["visual"] = _unit(vector)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        with self._guard:
            if point_id in self._points:
                self._points[point_id] = (self._points[point_id][0], dict(with_day(payload)))

    def delete(self, ids: Sequence[str]) -> None:
        with self._guard:
            for i in ids:
                self._points.pop(i, None)

    def query(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        using: str | None = None,
    ) -> list[Hit]:
        query = np.asarray(vector, dtype=np.float32)
        query = query / (float(np.linalg.norm(query)) or 1.0)
        name = using or ""
        with self._guard:
            found = [
                (float(vs[name] @ query), i, vs[name], payload)
                for i, (vs, payload) in self._points.items()
                if name in vs and matches(payload, i, where)
            ]
        found.sort(key=lambda row: (-row[0], row[1]))
        if score_threshold is not None:
            found = [row for row in found if row[0] >= score_threshold]
        return [
            Hit(i, score, shown(payload), v.copy() if with_vectors else None)
            for score, i, v, payload in found[offset : offset + limit]
        ]

    def vector(self, point_id: str, using: str | None = None) -> np.ndarray | None:
        with self._guard:
            entry = self._points.get(point_id)
            vector = None if entry is None else entry[0].get(using or "")
        return None if vector is None else vector.copy()

    def scroll(
        self, with_vectors: bool = False, where: SearchFilter | None = None, using: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any], np.ndarray | None]]:
        with self._guard:
            ids = sorted(self._points)
        for start in range(0, len(ids), SCROLL_PAGE):
            with self._guard:
                page = [(i, self._points[i]) for i in ids[start : start + SCROLL_PAGE] if i in self._points]
            for i, (vs, payload) in page:
                if matches(payload, i, where):
                    v = vs.get(using or "") if with_vectors else None
                    yield i, shown(payload), None if v is None else v.copy()

    def newest(self, limit: int, where: SearchFilter | None = None) -> list[Hit]:
        with self._guard:
            rows = [(i, payload) for i, (_, payload) in self._points.items() if matches(payload, i, where)]
        rows.sort(key=lambda row: row[1].get("date") if row[1].get("date") is not None else float("-inf"), reverse=True)
        return [Hit(i, 0.0, shown(payload)) for i, payload in rows[:limit]]

    def close(self) -> None:
        pass
