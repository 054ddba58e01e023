"""Retrieval measures of ranked lists: P@K, R@K, average precision and reciprocal rank, per query and
overall, for one model in one mode (text→image or image→image) and one prompt template.

Pure numpy: the runner (`evaluate.py`) ranks, this scores, the leaderboard and the plots show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TEXT_TO_IMAGE = "text→image"
IMAGE_TO_IMAGE = "image→image"


@dataclass(frozen=True)
class QueryScore:
    query: str
    relevant: int
    precision: dict[int, float]
    recall: dict[int, float]
    average_precision: float
    reciprocal_rank: float
    top: tuple[str, ...] = ()  # ids of the first hits (as many as the largest cut-off): what the query showed


@dataclass(frozen=True)
class GroupRobustness:
    """How a group of paraphrases fared: their APs and how much their first results agree."""

    group: str
    queries: tuple[str, ...]
    average_precisions: tuple[float, ...]
    overlap: float  # mean Jaccard overlap of the paraphrases' first `k` results, pair by pair (1: the same)
    k: int

    @property
    def mean_ap(self) -> float:
        return mean(self.average_precisions)

    @property
    def min_ap(self) -> float:
        return min(self.average_precisions, default=0.0)

    @property
    def spread(self) -> float:
        """Best AP minus worst AP: 0 when the wording does not matter."""
        return max(self.average_precisions, default=0.0) - self.min_ap

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "queries": list(self.queries),
            "AP": list(self.average_precisions),
            "mean AP": self.mean_ap,
            "min AP": self.min_ap,
            "AP spread": self.spread,
            f"overlap@{self.k}": self.overlap,
        }


def score_ranking(
    query: str, ranked: Sequence[bool], relevant: int, ks: Sequence[int], top: Sequence[str] = ()
) -> QueryScore:
    """Scores of one ranked list (True where the hit is relevant; `relevant` = how many exist;
    `top`: the hits' ids, of which the first max(ks) are kept)."""
    hits = np.asarray(ranked, dtype=bool)
    found = np.cumsum(hits)
    precision = {k: float(found[min(k, len(hits)) - 1]) / k if len(hits) else 0.0 for k in ks}
    recall = {k: float(found[min(k, len(hits)) - 1]) / relevant if len(hits) and relevant else 0.0 for k in ks}
    positions = np.flatnonzero(hits)
    ap = float(np.sum(found[positions] / (positions + 1))) / relevant if relevant else 0.0
    rr = 1.0 / (positions[0] + 1) if len(positions) else 0.0
    return QueryScore(query, relevant, precision, recall, ap, float(rr), tuple(top[: max(ks, default=0)]))


def mean(values: Iterable[float]) -> float:
    """The mean, 0.0 for no values."""
    values = list(values)
    return float(np.mean(values)) if values else 0.0


@dataclass
class Evaluation:
    mode: str  # TEXT_TO_IMAGE or IMAGE_TO_IMAGE
    template: str | None
    ks: tuple[int, ...]
    queries: list[QueryScore]
    model: str = ""
    images_per_s: float | None = None  # indexing speed of the model on this dataset (None: nothing indexed)
    query_ms: float | None = None  # a text query: encode, then rank every image
    paraphrases: list[GroupRobustness] = field(default_factory=list)  # the dataset's groups of paraphrases
    split: str | None = None  # the split measured on (None: every picture)

    def overall(self) -> dict[str, float]:
        if not self.queries:
            return {}
        out = {f"P@{k}": mean(q.precision[k] for q in self.queries) for k in self.ks}
        out |= {f"R@{k}": mean(q.recall[k] for q in self.queries) for k in self.ks}
        out["mAP"] = mean(q.average_precision for q in self.queries)
        out["MRR"] = mean(q.reciprocal_rank for q in self.queries)
        return out

    def by_query(self) -> dict[str, QueryScore]:
        return {q.query: q for q in self.queries}


def mean_average_precision(similarity: np.ndarray, relevant: np.ndarray) -> float:
    """mAP of every row of `similarity` (queries × items) ranking the items, `relevant` the same shape
    (True where an item is relevant to the query); rows with nothing relevant are left out."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant.astype(bool), order, axis=1)
    counts = hits.sum(axis=1)
    keep = counts > 0
    if not keep.any():
        return 0.0
    hits, counts = hits[keep], counts[keep]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return float(((precision_at * hits).sum(axis=1) / counts).mean())
