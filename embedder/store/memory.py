"""An `ImageStore` in memory: exact cosine search over a dict, for fast indexer and search tests.

It keeps the same contract as the two Qdrant backends (tests/test_store_edge.py runs the one
contract suite over all three), so a test that passes on it means the same on Qdrant. Nothing is
written to disk; nothing here is used by the product itself.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from embedder.store.conditions import Condition, matches
from embedder.store.contract import SCROLL_PAGE, Hit, ImageStore, Point, SearchFilter, SparseWords
from embedder.store.fusion import Fusion, Nearest, fuse
from embedder.store.schema import shown, with_day


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector  # cosine: stored unit


class MemoryStore(ImageStore):
    """Points in a dict, searched exactly; thread-safe like the embedded store.

    Each point is {"": CLIP vector, "visual": visual vector (when it has one)} and its payload, and
    its WORDS vector as {term: weight}, scored as Qdrant scores a sparse vector with the IDF modifier."""

    mode = "memory"
    has_words = True

    def __init__(
        self, model_id: str, dim: int, collection: str = "images", visual: tuple[str, int] | None = None
    ) -> None:
        self.model_id = model_id
        self.dim = dim
        self.collection = collection
        self.location = "memory"
        self.visual_model, self.visual_dim = visual or (None, None)
        self._points: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
        self._words: dict[str, dict[int, float]] = {}
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
                self._set_words(p.id, p.words)

    def set_words(self, vectors: Mapping[str, SparseWords | None]) -> None:
        with self._guard:
            for i, words in vectors.items():
                if i in self._points:
                    self._set_words(i, words)

    def _set_words(self, point_id: str, words: SparseWords | None) -> None:
        if words:
            self._words[point_id] = dict(zip(words.indices, words.values))
        else:
            self._words.pop(point_id, None)

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
                self._words.pop(i, None)

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
        ranked = self._nearest(Nearest(np.asarray(vector), offset + limit, using, (), score_threshold), where)
        with self._guard:
            return [self._hit(i, score, with_vectors, using) for i, score in ranked[offset:] if i in self._points]

    def fused(
        self,
        parts: Sequence[Nearest],
        fusion: Fusion,
        limit: int,
        offset: int = 0,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        ranked = fuse(fusion, [self._nearest(part, where) for part in parts])
        if score_threshold is not None:
            ranked = [(i, s) for i, s in ranked if s >= score_threshold]
        with self._guard:
            return [self._hit(i, s, with_vectors, None) for i, s in ranked[offset : offset + limit] if i in self._points]

    def _hit(self, point_id: str, score: float, with_vectors: bool, using: str | None) -> Hit:
        vectors, payload = self._points[point_id]
        vector = vectors.get(using or "") if with_vectors else None
        return Hit(point_id, score, shown(payload), None if vector is None else vector.copy())

    def _nearest(self, part: Nearest, where: SearchFilter | None) -> list[tuple[str, float]]:
        """One prefetch: (id, score) of the best `part.limit` points, best first (ties by id)."""
        extra: tuple[Condition, ...] = part.must
        with self._guard:
            if isinstance(part.vector, SparseWords):
                found = self._sparse_scores(part.vector)
            else:
                query = np.asarray(part.vector, dtype=np.float32)
                query = query / (float(np.linalg.norm(query)) or 1.0)
                name = part.using or ""
                found = [(i, float(vs[name] @ query)) for i, (vs, _) in self._points.items() if name in vs]
            found = [(i, s) for i, s in found if matches(self._points[i][1], i, part.within(where), extra)]
        if part.score_threshold is not None:
            found = [(i, s) for i, s in found if s >= part.score_threshold]
        found.sort(key=lambda row: (-row[1], row[0]))
        return found[: part.limit]

    def _sparse_scores(self, query: SparseWords) -> list[tuple[str, float]]:
        """Qdrant's IDF modifier: each term weighs ln((N - n + 0.5) / (n + 0.5) + 1), N the points with
        a WORDS vector, n those holding the term; points sharing no term are not found."""
        total = len(self._words)
        held: dict[int, int] = {}
        for weights in self._words.values():
            for term in weights:
                held[term] = held.get(term, 0) + 1
        idf = {t: math.log((total - held.get(t, 0) + 0.5) / (held.get(t, 0) + 0.5) + 1.0) for t in query.indices}
        found = []
        for i, weights in self._words.items():
            shared = [(t, q) for t, q in zip(query.indices, query.values) if t in weights]
            if shared:
                found.append((i, float(sum(q * idf[t] * weights[t] for t, q in shared))))
        return found

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

    def newest(self, limit: int, where: SearchFilter | None = None, oldest: bool = False) -> list[Hit]:
        with self._guard:
            rows = [(i, payload) for i, (_, payload) in self._points.items() if matches(payload, i, where)]
        if oldest:  # Qdrant's order by a field leaves out points without it
            rows = [row for row in rows if row[1].get("date") is not None]
        rows.sort(key=lambda row: row[1].get("date") if row[1].get("date") is not None else float("-inf"), reverse=not oldest)
        return [Hit(i, 0.0, shown(payload)) for i, payload in rows[:limit]]

    def close(self) -> None:
        pass
