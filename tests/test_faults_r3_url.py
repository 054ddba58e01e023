"""Reliability round 3, the address: every URL parameter the Search page reads, hand-made.

A URL is input like a command-line argument: a value that cannot be used gets one clear sentence
on the page, the rest of the page works, and the page settles (each run must finish within the
AppTest deadline, however huge the address). The real app in AppTest with query parameters, on a
real embedded store; test_browser_privacy.py drives a few of these in Chromium too.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from appkit import MAIN, app_env, index_folder, results, search, unescape, write_images  # noqa: F401 - fixture
from embedder_ui.pages import search_url

pytestmark = pytest.mark.slow

SETTLE_S = 60  # the deadline for one run of the page: a page that does not settle fails


def _open(params: dict[str, list[str]]) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=SETTLE_S)
    for key, values in params.items():
        at.query_params[key] = values
    return at.run()


def _usable(at: AppTest) -> None:
    """No exception anywhere, and the page's inputs are all there to use."""
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.text_input(key="search-text") is not None
    for key in ("filter-types", "filter-tags"):
        assert at.multiselect(key=key) is not None
    assert at.number_input(key="filter-min-width") is not None and all(at.date_input(key=k) is not None for k in ("filter-after", "filter-before"))


def _said(at: AppTest) -> str:
    return "\n".join(unescape(w.value) for w in at.warning)


LONG = "a red circle " * 8_000  # 104,000 characters
CASES = [
    # weights
    ("weight inf", {"q": ["inf:y"]}, "the weight inf is not a finite number"),
    ("weight nan", {"q": ["nan:x"]}, "the weight nan is not a finite number"),
    ("weight 1e400", {"q": ["1e400:x"]}, "the weight 1e400 is not a finite number"),
    ("weight -inf", {"q": ["-inf:x"]}, "the weight -inf is not a finite number"),
    ("empty term", {"q": [""]}, "An empty search term in the address is left out"),
    ("blank term", {"q": ["   "]}, "An empty search term in the address is left out"),
    # huge and many terms
    ("huge term", {"q": [LONG]}, "is 104,000 characters long; only its first 1,000 are used"),
    ("many terms", {"q": [f"word {i}" for i in range(1_000)]}, "holds 1,000 search terms; only the first 20"),
    # dates
    ("no such month", {"filter-after": ["2024-13-45"]}, "“Taken from” “2024-13-45” is not one day like 2024-05-31"),
    ("not a date", {"filter-before": ["yesterday"]}, "“Taken until” “yesterday” is not one day"),
    ("two dates", {"filter-after": ["2024-01-01", "2024-02-01"]}, "is not one day"),
    ("before 1900", {"filter-after": ["1800-01-01"]}, "from 1900-01-01"),
    ("far future", {"filter-before": ["3000-01-01"]}, "is not one day"),
    # folders
    ("folder too long", {"filter-folder": ["/" + "x" * 5_000]}, "is 5,001 characters long, longer than any path"),
    ("folder with NUL", {"filter-folder": ["/a\x00b"]}, "longer than any path"),
    # types
    ("unknown type", {"filter-types": ["pgn"]}, "the file type “pgn”, not one of AVIF"),
    ("some unknown", {"filter-types": ["PNG", "exe", "jpeg"]}, "the file type “exe”"),
    # sizes
    ("negative width", {"filter-min-width": ["-5"]}, "minimum width “-5” is not a whole number from 0 to 100,000"),
    ("width not a number", {"filter-min-width": ["abc"]}, "minimum width “abc”"),
    ("width 1e400", {"filter-min-width": ["1e400"]}, "minimum width “1e400”"),
    ("width too big", {"filter-min-width": ["100001"]}, "minimum width “100001”"),
    ("height fraction", {"filter-min-height": ["3.5"]}, "minimum height “3.5”"),
    # tags
    ("many tags", {"filter-tags": [f"t{i}" for i in range(50)]}, "holds 50 tags; at most 20"),
    ("tag too long", {"filter-tags": ["x" * 500]}, "at most 100 characters"),
    # everything at once
    (
        "all at once",
        {"q": ["inf:y", "1:a red circle"], "filter-min-width": ["1e400"], "filter-after": ["2024-13-45"],
         "filter-types": ["pgn"], "filter-min-height": ["-1"]},
        "the weight inf",
    ),
]


def test_every_hand_made_address_is_one_sentence_each_and_a_page_that_works(app_env: Path) -> None:
    index_folder(write_images(app_env / "pictures")[0].parent)
    for name, params, says in CASES:
        at = _open(params)
        _usable(at)
        shown = _said(at)
        assert says in shown, (name, shown)
        assert at.warning[0].icon == ":material/link_off:", name
        for key, values in params.items():  # what was left out is gone from the address
            assert at.query_params.get(key) != values, (name, key)
        if name == "all at once":
            assert len(at.warning) == 5, shown  # one sentence per thing left out
            assert [n for n, _ in results(at)], "the good term is searched"
        # The rest of the page works: a search typed now runs and its results come back.
        search("a red circle", at)
        _usable(at)
        assert results(at) or "No images match the filters" in " ".join(i.value for i in at.info), name


def test_an_address_that_is_all_right_is_used_as_it_is_and_says_nothing(app_env: Path) -> None:
    folder = write_images(app_env / "pictures")[0].parent
    index_folder(folder)
    at = _open({
        "q": ["1:a red circle", "-0.5:a blue square"], "filter-types": ["jpeg"], "filter-min-width": ["100"],
        "filter-after": ["2000-01-01"], "filter-before": [str(date.today())], "filter-folder": [str(folder)],
    })
    _usable(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.multiselect(key="filter-types").value == ["JPEG"]  # the case put right, silently
    assert at.number_input(key="filter-min-width").value == 100
    assert (at.date_input(key="filter-after").value, at.date_input(key="filter-before").value) == (
        date(2000, 1, 1), date.today())
    assert "a red circle" in unescape(at.markdown[-1].value) or results(at)
    assert len(results(at)) == 6


def test_the_address_checks_need_no_page() -> None:
    """The checks are plain functions: a few edges, without Streamlit."""
    terms, problems = search_url.terms_from_url(["2:sunset", "-people", "x" * 2_000])
    assert [(t.text, t.weight) for t in terms] == [("sunset", 2.0), ("people", -1.0), ("x" * 1_000, 1.0)]
    assert len(problems) == 1
    check = search_url.day("Taken until", today=date(2024, 2, 29))
    assert check(["2034-02-28"]) == (["2034-02-28"], None) and check(["2034-03-01"])[0] is None
    kept, problem = search_url.one_of("the file type", ["PNG"])(["png", "gif"])
    assert kept == ["PNG"] and "“gif”" in problem
