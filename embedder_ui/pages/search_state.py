"""The Search page's state as a plain class: the query's terms and weights, and its pages of results.

The page keeps one `SearchState` per browser session and only draws it; every rule about what a
change does to the results (a new term starts over at page one, "Show more" fetches only what is
missing) lives here, tested without Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from embedder.query.pager import ResultPages
from embedder.query.terms import Query, Term
from embedder.query.pager import Result
from embedder.query.searcher import Searcher
from embedder.store import SearchFilter


@dataclass(frozen=True)
class Options:
    """How to search: results per page, minimum score, prompt template, near-duplicate collapse."""

    per_page: int = 12
    min_score: float | None = None
    template: str | None = None
    collapse: float | None = None  # cosine; None shows near-duplicates too


class SearchState:
    """Terms in the order they were added (each numbered, so each keeps its own weight slider),
    how many pages are shown, and the results of the query as it is."""

    def __init__(self) -> None:
        self.terms: list[tuple[int, Term]] = []
        self.pages_shown = 1
        self.browsing = False  # every image, newest first, instead of a query
        self._next_uid = 1
        self._signature: Any = None
        self._pages: ResultPages | None = None

    # --- the query ---------------------------------------------------------------------------

    def new_query(self, term: Term) -> None:
        """Start over with one term (a typed text, an example image, "Similar" on a result)."""
        self.terms = [(self._uid(), term)]
        self.pages_shown = 1
        self.browsing = False

    def add(self, term: Term) -> None:
        self.terms = [*self.terms, (self._uid(), term)]
        self.pages_shown = 1
        self.browsing = False

    def remove(self, uid: int) -> None:
        self.terms = [(u, t) for u, t in self.terms if u != uid]

    def set_weight(self, uid: int, weight: float) -> None:
        self.terms = [(u, replace(t, weight=weight) if u == uid else t) for u, t in self.terms]

    def show_more(self) -> None:
        self.pages_shown += 1

    def browse(self) -> None:
        """Show every image, newest first (with the filters), instead of a query's results."""
        self.clear()
        self.browsing = True

    def clear(self) -> None:
        self.terms = []
        self.browsing = False
        self.pages_shown = 1
        self._signature = self._pages = None

    @property
    def active(self) -> bool:
        return bool(self.terms) or self.browsing

    def query(self, options: Options, where: SearchFilter) -> Query:
        return Query(
            tuple(t for _, t in self.terms),
            template=options.template,
            where=where,
            min_score=options.min_score,
            collapse=options.collapse,
            only="picture",  # by the picture alone (cosine scores) until the page shows why a result matched (#27)
        )

    # --- the results -------------------------------------------------------------------------

    def results(
        self, searcher: Searcher, options: Options, where: SearchFilter, count: int
    ) -> tuple[list[Result], bool, int]:
        """The shown pages of hits, whether there may be more, and how many near-duplicates were
        hidden. Kept while nothing changes (the index's size included); any change starts over."""
        uses_text = any(t.text is not None for _, t in self.terms)
        signature = (
            self.browsing,
            tuple((uid, t.weight) for uid, t in self.terms),
            options.per_page,
            options.min_score,
            options.template if uses_text else None,
            options.collapse,
            where,
            count,
        )
        if self._pages is None or signature != self._signature:
            self._pages = searcher.browse(where) if self.browsing else searcher.pages(self.query(options, where))
            self._signature = signature
            self.pages_shown = 1
        hits, more = self._pages.first(self.pages_shown * options.per_page)
        return hits, more, self._pages.hidden

    def _uid(self) -> int:
        uid = self._next_uid
        self._next_uid += 1
        return uid
