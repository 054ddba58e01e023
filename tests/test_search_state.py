"""The Search page's state without Streamlit: terms, weights, paging and when results start over."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from faultkit import distinct_folder

from embedder.engine import Engine
from embedder.query.terms import Term
from embedder.query.filters import make_filter
from embedder.store import SearchFilter
from embedder_ui.pages.search_state import Options, SearchState

ALL = SearchFilter()


@pytest.fixture
def indexed(memory_engine: Engine, tmp_path: Path) -> Engine:
    distinct_folder(tmp_path / "album", 10)
    memory_engine.indexer.index([tmp_path / "album"])
    return memory_engine


def _counting(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each request the store is asked (a plain nearest-vector query or a fused one), by its name."""
    calls: list[str] = []
    for name in ("query", "fused"):
        real = getattr(engine.store, name)
        monkeypatch.setattr(engine.store, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    return calls


def test_terms_are_numbered_weighted_and_removed() -> None:
    state = SearchState()
    assert not state.active
    state.new_query(Term(text="beach"))
    state.add(Term(text="sunset", weight=2))
    state.add(Term(text="people", weight=-1))
    assert [(uid, t.text, t.weight) for uid, t in state.terms] == [(1, "beach", 1), (2, "sunset", 2), (3, "people", -1)]
    state.set_weight(2, 0.5)
    state.remove(3)
    assert [(uid, t.weight) for uid, t in state.terms] == [(1, 1.0), (2, 0.5)]
    state.new_query(Term(text="dog"))  # a new query starts over; numbers never repeat
    assert [uid for uid, _ in state.terms] == [4]
    query = state.query(Options(template="a photo of {}", min_score=0.1, collapse=0.9), make_filter(types=["png"]))
    assert query.terms == (Term(text="dog"),) and query.template == "a photo of {}"
    assert (query.min_score, query.collapse, query.where.formats) == (0.1, 0.9, ("PNG",))


def test_show_more_and_redraws_ask_the_store_nothing_new(indexed: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first page asks for the query's best candidates in one request (the cutoff and the sort read
    them); a redraw and further pages among them ask the store nothing."""
    calls = _counting(indexed, monkeypatch)
    state = SearchState()
    state.new_query(Term(text="a photo"))
    options = Options(per_page=4)
    first, _, hidden = state.results(indexed.searcher, options, ALL, 10)
    assert len(first) == 4 and hidden == 0 and len(calls) == 1
    assert state.results(indexed.searcher, options, ALL, 10)[0] == first  # a redraw asks the store nothing
    state.show_more()
    second, more, _ = state.results(indexed.searcher, options, ALL, 10)
    assert second[:4] == first and len(second) == 8 and more
    state.show_more()
    third, more, _ = state.results(indexed.searcher, options, ALL, 10)
    assert third[:8] == second and len(third) == 10 and not more and len(calls) == 1


@pytest.mark.parametrize(
    "change",
    ["weight", "term", "filter", "per_page", "count"],
)
def test_any_change_to_the_query_starts_again_at_page_one(indexed: Engine, change: str) -> None:
    state = SearchState()
    state.new_query(Term(text="a photo"))
    options, where, count = Options(per_page=3), ALL, 10
    state.results(indexed.searcher, options, where, count)
    state.show_more()
    assert len(state.results(indexed.searcher, options, where, count)[0]) == 6
    if change == "weight":
        state.set_weight(1, 2.0)
    elif change == "term":
        state.add(Term(text="a square", weight=-0.5))
    elif change == "filter":
        where = make_filter(types=["png"])
    elif change == "per_page":
        options = Options(per_page=4)
    else:
        count = 11  # the index grew (a background job is adding images)
    hits, _, _ = state.results(indexed.searcher, options, where, count)
    assert state.pages_shown == 1 and len(hits) == min(options.per_page, 10 if change != "filter" else 5)


def test_clear_forgets_the_query_and_its_results(indexed: Engine) -> None:
    state = SearchState()
    state.new_query(Term(text="a photo"))
    state.results(indexed.searcher, Options(), ALL, 10)
    state.clear()
    assert not state.active and state.terms == [] and state.pages_shown == 1


def test_a_page_turn_a_filter_change_and_a_redraw_make_no_model_call(
    indexed: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The searcher keeps text vectors (by the text the model reads): only a new text is encoded."""
    encoded: list[str] = []
    real = indexed.encoder.encode_texts
    monkeypatch.setattr(indexed.encoder, "encode_texts", lambda texts: encoded.extend(texts) or real(texts))
    state, options = SearchState(), Options(per_page=3, template="a photo of {}")
    state.new_query(Term(text="red"))
    first = state.results(indexed.searcher, options, ALL, 10)[0]
    assert encoded == ["a photo of red"]
    state.show_more()  # Next page
    assert state.results(indexed.searcher, options, ALL, 10)[0][:3] == first
    state.results(indexed.searcher, options, make_filter(types=["png"]), 10)  # a filter change: a new query
    state.results(indexed.searcher, replace(options, per_page=5), ALL, 10)  # another page size
    assert encoded == ["a photo of red"]
    state.add(Term(text="blue", weight=-1))  # composed: only the new term is encoded
    state.set_weight(1, 2.0)
    state.results(indexed.searcher, options, ALL, 10)
    assert encoded == ["a photo of red", "a photo of blue"]
    state.results(indexed.searcher, replace(options, template=None), ALL, 10)  # the model reads other texts now
    assert encoded == ["a photo of red", "a photo of blue", "red", "blue"]
    state.clear()
    state.new_query(Term(text="red"))  # the same query again, later
    state.results(indexed.searcher, options, ALL, 10)
    assert len(encoded) == 4


def test_a_typed_date_is_a_chip_that_removes_it_from_its_term() -> None:
    state = SearchState()
    state.new_query(Term(text="beach July 2023"))
    state.add(Term(text="2019"))
    state.add(Term(text="people 2020", weight=-1))  # a term that pushes away: its date filters nothing
    chips = state.date_chips()
    assert [(c.typed, c.when.label) for c in chips] == [("July 2023", "July 2023"), ("2019", "2019")]
    query = state.query(Options(), ALL)
    assert query.dates is not None and (query.dates.start.year, query.dates.end.year) == (2019, 2023)
    state.remove_date(chips[0])
    assert [t.text for _, t in state.terms] == ["beach", "2019", "people 2020"]
    state.remove_date(chips[1])  # a term of nothing but the date goes
    assert [t.text for _, t in state.terms] == ["beach", "people 2020"]
    assert state.date_chips() == [] and state.query(Options(), ALL).dates is None
