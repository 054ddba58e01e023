"""The Search page's state as a plain class: the query's terms and weights, and its pages of results.

The page keeps one `SearchState` per browser session and only draws it; every rule about what a
change does to the results (a new term starts over at page one, "Show more" fetches only what is
missing) lives here, tested without Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from embedder.query.dates import DateRange, find_dates
from embedder.query.pager import Result, ResultPages
from embedder.query.terms import Query, Term
from embedder.query.searcher import Searcher
from embedder.store import SearchFilter


@dataclass(frozen=True)
class Options:
    """How to search: results per page, minimum score, prompt template, near-duplicate collapse, and
    the order of what passed the cutoff (relevance, newest or oldest first)."""

    per_page: int = 12
    min_score: float | None = None
    template: str | None = None
    collapse: float | None = None  # cosine; None shows near-duplicates too
    sort: str = "relevance"


@dataclass(frozen=True)
class DateChip:
    """A date typed in a text term ("beach 2019"): shown as a chip that removes it from the term."""

    uid: int  # the term it was typed in
    typed: str  # as typed: "2019", "July 2023"
    when: DateRange


class SearchState:
    """Terms in the order they were added (each numbered, so each keeps its own weight slider),
    how many pages are shown, and the results of the query as it is."""

    def __init__(self) -> None:
        self.terms: list[tuple[int, Term]] = []
        self.pages_shown = 1
        self.browsing = False  # every image, newest first, instead of a query
        self.show_weaker = False  # the results the cutoff left out are shown too ("Show N weaker results")
        self._next_uid = 1
        self._signature: Any = None
        self._first_page = 0  # results on the first page when more than a page's worth (the weaker shown at once)
        self._shown = 0  # results shown by the last draw
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

    def show_weaker_results(self) -> None:
        """Show what the cutoff left out too, at once, after what passed (until the query changes)."""
        self._first_page = self._shown + self.weaker
        self.show_weaker = True

    def date_chips(self) -> list[DateChip]:
        """The dates typed in the query's text terms that pull (they are its date filter)."""
        return [
            DateChip(uid, typed, when)
            for uid, term in self.terms
            if term.text is not None and term.weight > 0
            for typed, when in zip(*_phrases_and_ranges(term.text))
        ]

    def remove_date(self, chip: DateChip) -> None:
        """Search without this date: it leaves its term's text (a term of nothing else goes)."""
        kept = []
        for uid, term in self.terms:
            if uid == chip.uid and term.text is not None:
                rest = _without(term.text, chip.typed)
                if not rest:
                    continue
                term = replace(term, text=rest)
            kept.append((uid, term))
        self.terms = kept

    def browse(self) -> None:
        """Show every image, newest first (with the filters), instead of a query's results."""
        self.clear()
        self.browsing = True

    def clear(self) -> None:
        self.terms = []
        self.browsing = False
        self.pages_shown = 1
        self.show_weaker = False
        self._signature = self._pages = None

    @property
    def active(self) -> bool:
        return bool(self.terms) or self.browsing

    def query(self, options: Options, where: SearchFilter) -> Query:
        """The query as it is: its typed dates its date filter, the cutoff on unless the weaker
        results were asked for, sorted as the options say."""
        return Query(
            tuple(t for _, t in self.terms),
            template=options.template,
            where=where,
            min_score=options.min_score,
            collapse=options.collapse,
            cut=not self.show_weaker,
            sort=options.sort,
        ).with_typed_dates()

    @property
    def weaker(self) -> int:
        """How many results the cutoff left out of the query's results (0 once they are shown)."""
        return self._pages.weaker if self._pages is not None else 0

    @property
    def note(self) -> str:
        """What the searcher made of the query, for people ("only a date (2019): …"), or ""."""
        return self._pages.note if self._pages is not None else ""

    # --- the results -------------------------------------------------------------------------

    def results(
        self, searcher: Searcher, options: Options, where: SearchFilter, count: int
    ) -> tuple[list[Result], bool, int]:
        """The shown pages of hits, whether there may be more, and how many near-duplicates were
        hidden. Kept while nothing changes (the index's size included); any change starts over."""
        uses_text = any(t.text is not None for _, t in self.terms)
        signature = (
            self.browsing,
            tuple((uid, t.weight, t.text) for uid, t in self.terms),
            self.show_weaker,
            options.per_page,
            options.min_score,
            options.template if uses_text else None,
            options.collapse,
            options.sort,
            where,
            count,
        )
        if self._pages is None or signature != self._signature:
            old = self._signature
            if old is None or (*signature[:2], *signature[3:]) != (*old[:2], *old[3:]):
                self._first_page = 0  # not only the weaker results asked for: a new start
            if old is not None and signature[1] != old[1]:
                self.show_weaker = False  # a changed query starts with the cutoff again
                signature = (*signature[:2], False, *signature[3:])
            self._pages = searcher.browse(where) if self.browsing else searcher.pages(self.query(options, where))
            self._signature = signature
            self.pages_shown = 1
        first = max(self._first_page, options.per_page)
        hits, more = self._pages.first(first + (self.pages_shown - 1) * options.per_page)
        self._shown = len(hits)
        return hits, more, self._pages.hidden

    def _uid(self) -> int:
        uid = self._next_uid
        self._next_uid += 1
        return uid


def _phrases_and_ranges(text: str) -> tuple[tuple[str, ...], tuple[DateRange, ...]]:
    found = find_dates(text)
    return found.phrases, found.ranges


def _without(text: str, phrase: str) -> str:
    """`text` with the first `phrase` in it taken out, spaces tidied."""
    at = text.find(phrase)
    if at < 0:
        return text
    return " ".join((text[:at] + " " + text[at + len(phrase):]).split())
