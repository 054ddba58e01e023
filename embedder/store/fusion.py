"""One neutral description of a fused request, for every backend to translate (as conditions.py is for filters).

A fused request is one Query API request: each `Nearest` is a prefetch (the nearest points by one
vector: CLIP's, the image-only one, or the sparse WORDS vector), with the request's filter and its
own extra conditions; a fusion turns their scores into one ranking:

* `Boost`: the first prefetch's score as it is (the CLIP cosine; 0 for a point it did not bring),
  plus, for each point the second prefetch brought, `bonus` + `lift` × min(1, its score / `full`).
  With a `bonus` of 2 and cosines in [-1, 1], every point the words found ranks above every point
  that only looks like the query, and points that only look like it keep their cosine as their
  score (what the cutoff reads). Qdrant runs it as a formula query (`$score[0]`, `$score[1]`).
* `Rrf`: reciprocal rank fusion, Qdrant's: a point at position p (0-based) of a prefetch of weight w
  scores 1 / ((p + 1) / w + k - 1), summed over the prefetches.
* `Dbsf`: distribution-based score fusion, Qdrant's: each prefetch's scores scaled by their mean ± 3
  standard deviations (a lone score, or equal scores, count 0.5), summed.

`fuse` computes each with the meaning Qdrant gives it, for the in-memory store. Nothing here imports
a Qdrant library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from embedder.store.conditions import Condition
from embedder.store.contract import SearchFilter, SparseWords


@dataclass(frozen=True)
class Nearest:
    """A prefetch: the `limit` nearest points by `vector` (dense, or `SparseWords` for the WORDS
    vector), among those that pass the request's filter and `must`, at least `score_threshold`."""

    vector: np.ndarray | SparseWords
    limit: int
    using: str | None = None  # None: the CLIP vector; VISUAL; WORDS for a sparse vector
    must: tuple[Condition, ...] = ()
    score_threshold: float | None = None
    exclude_ids: tuple[str, ...] = ()  # points this prefetch does not bring (an image pushed away by the query)

    @property
    def sparse(self) -> bool:
        return isinstance(self.vector, SparseWords)

    def within(self, where: SearchFilter | None) -> SearchFilter | None:
        """The request's filter for this prefetch: `where`, and its own `exclude_ids` left out."""
        if not self.exclude_ids:
            return where
        base = where or SearchFilter()
        return replace(base, exclude_ids=(*base.exclude_ids, *self.exclude_ids))


@dataclass(frozen=True)
class Boost:
    """The first prefetch's score, plus `bonus` + `lift` × min(1, score / `full`) for each point the
    second one brought (its score is at least `floor`, the second prefetch's score_threshold, so
    min(1, score / floor) is 1 for it and 0 for a point it did not bring)."""

    bonus: float
    floor: float
    lift: float = 0.0
    full: float = 1.0


@dataclass(frozen=True)
class Rrf:
    k: int = 60
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Dbsf:
    pass


Fusion = Boost | Rrf | Dbsf


def fuse(fusion: Fusion, ranked: Sequence[Sequence[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Each prefetch's (id, score), best first → the fused (id, score), best first (ties by id)."""
    scores: dict[str, float] = {}
    if isinstance(fusion, Boost):
        first = dict(ranked[0]) if ranked else {}
        second = dict(ranked[1]) if len(ranked) > 1 else {}
        for pid in dict.fromkeys([*first, *second]):
            score = first.get(pid, 0.0)
            if pid in second:
                words = second[pid]
                score += fusion.bonus * min(1.0, words / fusion.floor) + fusion.lift * min(1.0, words / fusion.full)
            scores[pid] = score
    elif isinstance(fusion, Rrf):
        weights = fusion.weights or (1.0,) * len(ranked)
        for hits, weight in zip(ranked, weights):
            for position, (pid, _) in enumerate(hits):
                part = 0.0 if weight <= 0 else 1.0 / ((position + 1.0) / weight + fusion.k - 1.0)
                scores[pid] = scores.get(pid, 0.0) + part
    else:
        for hits in ranked:
            for pid, score in _distribution_scaled(hits):
                scores[pid] = scores.get(pid, 0.0) + score
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _distribution_scaled(hits: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    if len(hits) == 1:
        return [(hits[0][0], 0.5)]
    values = [s for _, s in hits]
    mean = sum(values) / len(values) if values else 0.0
    variance = sum((s - mean) ** 2 for s in values) / (len(values) - 1) if len(values) > 1 else 0.0
    if variance == 0:
        return [(pid, 0.5) for pid, _ in hits]
    spread = 6 * math.sqrt(variance)
    low = mean - spread / 2
    return [(pid, (s - low) / spread) for pid, s in hits]
