"""Dates typed in a query (embedder/query/dates.py) and the cutoff read from a query's score curve
(embedder/query/cutoff.py): pure functions, no model, no store."""

from __future__ import annotations

from datetime import date

import pytest

from embedder.query.cutoff import knee
from embedder.query.dates import find_dates, parse_when
from embedder.query.pager import sort_results
from embedder.query.terms import Query, Term

TODAY = date(2026, 12, 8)


@pytest.mark.parametrize(
    "typed, rest, start, end, value",
    [
        ("beach 2019", "beach", date(2019, 1, 1), date(2019, 12, 31), "2019"),
        ("july 2023", "", date(2023, 7, 1), date(2023, 7, 31), "2023-07"),
        ("Jul 2023 fireworks", "fireworks", date(2023, 7, 1), date(2023, 7, 31), "2023-07"),
        ("summer 2021", "", date(2021, 6, 1), date(2021, 8, 31), "summer 2021"),
        ("winter 2021 snow", "snow", date(2021, 12, 1), date(2022, 2, 28), "winter 2021"),
        ("ski 2019-2021", "ski", date(2019, 1, 1), date(2021, 12, 31), "2019-2021"),
        ("last year", "", date(2025, 1, 1), date(2025, 12, 31), "last year"),
        ("party 2023-07-14", "party", date(2023, 7, 14), date(2023, 7, 14), "2023-07-14"),
        ("last month", "", date(2026, 11, 1), date(2026, 11, 30), "last month"),
    ],
)
def test_dates_typed_in_a_query_become_one_range_and_the_rest_is_searched(typed, rest, start, end, value) -> None:
    found = find_dates(typed, TODAY)
    assert found.rest == rest
    when = found.when
    assert (when.start, when.end, when.value) == (start, end, value)
    back = parse_when(when.value, TODAY)  # the chip's value round-trips (a URL keeps it)
    assert (back.start, back.end, back.value, back.label) == (when.start, when.end, when.value, when.label)


@pytest.mark.parametrize("typed", ["LH2019", "IMG_2019", "12.2019", "july", "summer", "1850", "3000", "2019/07"])
def test_what_is_no_date_stays_a_word(typed: str) -> None:
    found = find_dates(typed, TODAY)
    assert found.ranges == () and found.rest == typed


def test_a_value_that_is_no_date_is_refused_with_examples() -> None:
    with pytest.raises(ValueError, match="e.g. 2019"):
        parse_when("beach", TODAY)


def test_the_query_carries_the_dates_it_typed_and_keeps_the_year_as_a_word() -> None:
    query = Query((Term(text="beach 2019"), Term(text="people", weight=-1.0))).with_typed_dates(TODAY)
    assert query.dates is not None and query.dates.value == "2019"
    assert query.dates.said == ("2019",)  # a sign saying 2019 still matches
    assert Query((Term(text="beach"),)).with_typed_dates(TODAY).dates is None


def test_the_cutoff_stops_where_the_curve_bends_and_not_on_a_straight_slope() -> None:
    bent = [0.34, 0.33, 0.325, 0.32] + [0.22 - 0.001 * i for i in range(30)]
    assert knee(bent) == 4
    straight = [0.3 - 0.002 * i for i in range(30)]
    assert knee(straight) == 30
    assert knee([0.3, 0.1, 0.05]) == 3  # too few to read a curve from
    assert knee([0.5] + [0.1] * 20) >= 3  # never fewer than three


class Dated:
    def __init__(self, day: float | None) -> None:
        self.payload = {} if day is None else {"date": day}


def test_sorting_by_date_keeps_the_undated_last() -> None:
    results = [Dated(2.0), Dated(None), Dated(3.0), Dated(1.0)]
    assert [r.payload.get("date") for r in sort_results(results, "newest")] == [3.0, 2.0, 1.0, None]
    assert [r.payload.get("date") for r in sort_results(results, "oldest")] == [1.0, 2.0, 3.0, None]
    assert sort_results(results, "relevance") == results
