"""Pages of results for one query: fetched as they are asked for, near-duplicates optionally collapsed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from embedder.store.contract import Hit


@dataclass(frozen=True)
class Result:
    """One found image: its id, cosine score, where it lives and what is stored about it."""

    id: str
    score: float
    path: str
    name: str
    payload: dict[str, Any]
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # when collapsing

    @classmethod
    def from_hit(cls, hit: Hit) -> Result:
        paths = hit.payload.get("paths") or [""]
        return cls(hit.id, hit.score, paths[0], hit.payload.get("name") or paths[0], hit.payload, hit.vector)


class Ranked(Protocol):
    """What paging needs of a result: its vector, when near-duplicates are collapsed."""

    vector: np.ndarray | None


Fetch = Callable[[int, int], list]  # (limit, offset) → results, best first


class Collapser:
    """Keeps the best-ranked of each set of near-duplicate results, across pages fed best first.

    Results carry their vectors (the store returns them with the hits), so nothing is looked up.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.hidden = 0  # results left out so far
        self._kept: list[np.ndarray] = []

    def keep(self, results: Sequence[Ranked]) -> list:
        """The results that are not near-duplicates of one kept before."""
        kept = []
        for result in results:
            vector = result.vector
            if vector is not None and any(float(vector @ other) >= self.threshold for other in self._kept):
                self.hidden += 1
                continue
            kept.append(result)
            if vector is not None:
                self._kept.append(vector)
        return kept


class ResultPages:
    """The results of one query, best first; asking for more fetches only what is missing.

    With a `Collapser`, near-duplicates of a better result are left out, so a page may need
    more than one fetch to fill; `hidden` counts what was left out. `start` skips that many
    results of the query (the CLI's --offset).
    """

    def __init__(self, fetch: Fetch, collapser: Collapser | None = None, start: int = 0) -> None:
        self.fetch = fetch
        self.collapser = collapser
        self.results: list = []
        self.fetched = start
        self.exhausted = False

    @property
    def hidden(self) -> int:
        return self.collapser.hidden if self.collapser else 0

    def first(self, n: int) -> tuple[list, bool]:
        """The best `n` results and whether there may be more."""
        while len(self.results) < n and not self.exhausted:
            missing = n - len(self.results)
            limit = missing if self.collapser is None else max(2 * missing, 16)
            page = self.fetch(limit, self.fetched)
            self.fetched += len(page)
            self.exhausted = len(page) < limit
            self.results += self.collapser.keep(page) if self.collapser else page
        return self.results[:n], len(self.results) > n or not self.exhausted
