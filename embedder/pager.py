"""Pages of results for one query: fetched as they are asked for, near-duplicates optionally collapsed."""

from __future__ import annotations

from collections.abc import Callable

from embedder.duplicates import Collapser
from embedder.search import Result

Fetch = Callable[[int, int], list[Result]]  # (limit, offset) → results, best first


class ResultPages:
    """The results of one query, best first; asking for more fetches only what is missing.

    With a `Collapser`, near-duplicates of a better result are left out, so a page may need
    more than one fetch to fill; `hidden` counts what was left out.
    """

    def __init__(self, fetch: Fetch, collapser: Collapser | None = None) -> None:
        self.fetch = fetch
        self.collapser = collapser
        self.results: list[Result] = []
        self.fetched = 0
        self.exhausted = False

    @property
    def hidden(self) -> int:
        return self.collapser.hidden if self.collapser else 0

    def first(self, n: int) -> tuple[list[Result], bool]:
        """The best `n` results and whether there may be more."""
        while len(self.results) < n and not self.exhausted:
            missing = n - len(self.results)
            limit = missing if self.collapser is None else max(2 * missing, 16)
            page = self.fetch(limit, self.fetched)
            self.fetched += len(page)
            self.exhausted = len(page) < limit
            self.results += self.collapser.keep(page) if self.collapser else page
        return self.results[:n], len(self.results) > n or not self.exhausted
