"""Pages of results for one query: fetched as they are asked for, near-duplicates optionally collapsed,
the long tail cut where the query's own score curve says, and sorted by relevance or date."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from embedder.store.contract import Hit

SORTS = ("relevance", "newest", "oldest")
CANDIDATES = 100  # results a cut or a sort by date looks at: what passes is among the best this many


@dataclass(frozen=True)
class Result:
    """One found image: its id, cosine score, where it lives and what is stored about it."""

    id: str
    score: float
    path: str
    name: str
    payload: dict[str, Any]
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # when collapsing
    matched: tuple[str, ...] = ()  # why it matched: some of "picture", "text", "name", "tag"
    line: str | None = None  # when its text matched: the line that holds the query's words
    marks: tuple[tuple[int, int], ...] = ()  # where those words are in `line`: (start, end) offsets

    @classmethod
    def from_hit(cls, hit: Hit) -> Result:
        paths = hit.payload.get("paths") or [""]
        return cls(hit.id, hit.score, paths[0], hit.payload.get("name") or paths[0], hit.payload, hit.vector)

    @property
    def taken(self) -> str | None:
        """The day it was taken (EXIF, else the file's time), ISO: `2023-07-14`; None if unknown."""
        return day_of(self.payload.get("date"))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready hit: score, path, name, id, taken, matched, and the matching line of text."""
        hit: dict[str, Any] = {
            "score": self.score, "path": self.path, "name": self.name, "id": self.id, "taken": self.taken,
            "matched": list(self.matched),
        }
        if self.line is not None:
            hit["text"] = self.line
            hit["marks"] = [list(m) for m in self.marks]
        return hit


def day_of(seconds: Any) -> str | None:
    """A stored `date` (UTC seconds of the camera's own clock) as its ISO day."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    try:
        return datetime.fromtimestamp(float(seconds), tz=timezone.utc).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def sort_results(results: Sequence[Any], order: str) -> list[Any]:
    """`results` by relevance (as they are), or newest / oldest first by their date (undated last)."""
    if order == "relevance":
        return list(results)
    if order not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {order!r}")
    dated = [r for r in results if isinstance(r.payload.get("date"), (int, float))]
    undated = [r for r in results if not isinstance(r.payload.get("date"), (int, float))]
    return sorted(dated, key=lambda r: r.payload["date"], reverse=order == "newest") + undated


@dataclass(frozen=True)
class Reviewed:
    """A query's best candidates, each told why it matched, and how many of them stand out: the first
    `keep` (the rest are the weaker results a cut leaves out)."""

    results: list
    keep: int


class Reviewer(Protocol):
    """What reviews a query's results (embedder/query/searcher.py): the best candidates first, then
    each later page by what that first review found."""

    def review(self, candidates: list) -> Reviewed: ...

    def annotate(self, results: list) -> list: ...


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

    With a `review`, the best CANDIDATES (or more, when more are asked for) are fetched at once and
    reviewed first (embedder/query/searcher.py: each result told why it matched, and with `cut` the
    weaker ones left out, counted in `weaker`); then, with `cut`, the results are what the review
    kept, else they go on past them as usual. `order` sorts what the review kept by date
    ("newest", "oldest"; with a sort and no cut, the candidates are sorted).
    """

    def __init__(
        self,
        fetch: Fetch,
        collapser: Collapser | None = None,
        start: int = 0,
        review: Reviewer | None = None,
        cut: bool = False,
        order: str = "relevance",
        note: str = "",
    ) -> None:
        if order not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {order!r}")
        self.fetch = fetch
        self.collapser = collapser
        self.results: list = []
        self.fetched = 0
        self.start = start
        self.exhausted = False
        self.review = review
        self.cut = cut
        self.order = order
        self.weaker = 0  # results the cut left out ("Show N weaker results")
        self.note = note  # what the searcher made of the query, for people ("only a date: …"), if anything
        self._reviewed = review is None and order == "relevance"
        if self._reviewed:
            self.fetched = start

    @property
    def hidden(self) -> int:
        return self.collapser.hidden if self.collapser else 0

    def first(self, n: int) -> tuple[list, bool]:
        """The best `n` results and whether there may be more."""
        if not self._reviewed:
            self._review_candidates(self.start + n)
        results = self.results[self.start :] if not self._plain else self.results
        while len(results) < n and not self.exhausted:
            self._fetch_more(n - len(results))
            results = self.results[self.start :] if not self._plain else self.results
        return results[:n], len(results) > n or not self.exhausted

    @property
    def _plain(self) -> bool:
        """Paging as it always was: `start` skipped by the store, nothing reviewed."""
        return self.review is None and self.order == "relevance"

    def _review_candidates(self, wanted: int) -> None:
        """Fetch the best candidates in one go, review them, keep what the review (and the cut) says."""
        self._reviewed = True
        limit = max(CANDIDATES, wanted)
        page = self.fetch(limit, 0)
        self.fetched = len(page)
        self.exhausted = len(page) < limit
        kept = self.collapser.keep(page) if self.collapser else page
        reviewed = self.review.review(kept) if self.review else Reviewed(kept, len(kept))
        results = reviewed.results
        if self.cut:
            self.weaker = len(results) - reviewed.keep
            self.exhausted = True  # what the cut left out is shown by searching again without the cut
            results = results[: reviewed.keep]
        if self.order != "relevance":  # a sort by date orders what passed (or the candidates), and stops there
            self.exhausted = True
        self.results = sort_results(results, self.order)

    def _fetch_more(self, missing: int) -> None:
        limit = missing if self.collapser is None else max(2 * missing, 16)
        page = self.fetch(limit, self.fetched)
        self.fetched += len(page)
        self.exhausted = len(page) < limit
        kept = self.collapser.keep(page) if self.collapser else page
        self.results += self.review.annotate(kept) if self.review else kept
