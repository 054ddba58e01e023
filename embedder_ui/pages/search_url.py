"""What the Search page reads from its address, checked as the CLI checks its arguments.

A URL is typed, pasted or crafted by anyone, so each parameter gets what a command-line argument
gets: a value that cannot be used is left out with one clear sentence, and the rest of the page
works. Text terms are capped (MAX_URL_TERMS terms of at most MAX_TERM_CHARS characters), so a
huge address costs the page no more than a long query. Nothing here imports Streamlit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from embedder.errors import QueryError
from embedder.query.terms import Term, parse_term
from embedder_ui.format import literal, shorten

MAX_URL_TERMS = 20  # text terms read from the address: more than anyone composes by hand
MAX_TERM_CHARS = 1_000  # of one term: CLIP reads 77 tokens, a few hundred characters at most
MAX_TAGS = 20
MAX_TAG_CHARS = 100  # as TAGS_FILE's labels (embedder.indexing.tags.MAX_LABEL_CHARS)
MAX_PATH_CHARS = 4_096  # Linux's PATH_MAX: no folder has a longer path
FIRST_DAY = date(1900, 1, 1)  # the date filter's first day
SHOWN = 40  # characters of a bad value quoted in a message

# A check takes a parameter's values and returns those to keep (None: drop the parameter) and what
# to tell the person (None: nothing to say).
Check = Callable[[list[str]], tuple[list[str] | None, str | None]]


@dataclass
class Address:
    """What the address asked for, once checked: the text terms, the parameters to change (a
    value list to keep, None to remove) and one sentence per thing left out (Markdown, literal)."""

    terms: list[Term] = field(default_factory=list)
    changes: dict[str, list[str] | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _quoted(value: str) -> str:
    return f"“{literal(shorten(value, SHOWN))}”"


def read_address(params: Mapping[str, list[str]], terms_key: str, checks: Mapping[str, Check]) -> Address:
    """Check every parameter that `checks` knows, and read the text terms under `terms_key`."""
    address = Address()
    if terms_key in params:
        address.terms, address.problems = terms_from_url(params[terms_key])
        if address.problems:  # the address keeps the terms that can be searched, as the page writes them
            address.changes[terms_key] = [f"{t.weight:g}:{t.text}" for t in address.terms] or None
    for key, check in checks.items():
        if key not in params:
            continue
        values = list(params[key])
        keep, problem = check(values)
        if keep != values:
            address.changes[key] = keep
        if problem:
            address.problems.append(problem)
    return address


def terms_from_url(values: Sequence[str]) -> tuple[list[Term], list[str]]:
    """The text terms of `?q=weight:text&q=…` (the CLI's syntax), at most MAX_URL_TERMS of at most
    MAX_TERM_CHARS characters each; a term that cannot be searched is left out and said."""
    problems = []
    if len(values) > MAX_URL_TERMS:
        problems.append(
            f"The address holds {len(values):,} search terms; only the first {MAX_URL_TERMS} are used "
            f"(at most {MAX_URL_TERMS})."
        )
    terms = []
    for raw in values[:MAX_URL_TERMS]:
        if len(raw) > MAX_TERM_CHARS:
            problems.append(
                f"A search term in the address is {len(raw):,} characters long; only its first "
                f"{MAX_TERM_CHARS:,} are used (the model reads fewer still)."
            )
            raw = raw[:MAX_TERM_CHARS]
        if not raw.strip():
            problems.append("An empty search term in the address is left out.")
            continue
        try:
            term = parse_term(raw)
        except QueryError as exc:
            problems.append(f"A search term in the address is left out: {literal(str(exc))}.")
            continue
        if not term.text:
            problems.append(f"The search term {_quoted(raw)} in the address has no words; it is left out.")
            continue
        terms.append(term)
    return terms, problems


def whole_number(what: str, low: int, high: int) -> Check:
    """A number filter's one value: a whole number from `low` to `high`."""

    def check(values: list[str]) -> tuple[list[str] | None, str | None]:
        raw = values[-1] if values else ""
        if re.fullmatch(r"\s*\d{1,7}\s*", raw) and low <= int(raw) <= high:
            return values, None
        return None, (
            f"The address's {what} {_quoted(raw)} is not a whole number from {low} to {high:,}; "
            "that filter is left out."
        )

    return check


def one_of(what: str, known: Sequence[str]) -> Check:
    """A multiple choice filter's values: each one of `known`, whatever its case (`png` is PNG);
    the others are left out."""
    by_case = {k.casefold(): k for k in known}

    def check(values: list[str]) -> tuple[list[str] | None, str | None]:
        kept = [by_case[v.casefold()] for v in values if v.casefold() in by_case]
        unknown = [v for v in values if v.casefold() not in by_case]
        if kept == values:
            return values, None
        if not unknown:
            return kept, None  # only the case differed: corrected, nothing to say
        return kept or None, (
            f"The address asks for {what} {', '.join(_quoted(v) for v in unknown[:5])}, not one of "
            f"{', '.join(known)}; left out."
        )

    return check


def folder() -> Check:
    """The folder filter's one value: a path, which no folder has longer than MAX_PATH_CHARS."""

    def check(values: list[str]) -> tuple[list[str] | None, str | None]:
        raw = values[-1] if values else ""
        if len(raw) <= MAX_PATH_CHARS and "\x00" not in raw:
            return values, None
        return None, (
            f"The address's folder is {len(raw):,} characters long, longer than any path; the folder filter "
            "is left out."
        )

    return check


def tags() -> Check:
    """The tag filter's values: at most MAX_TAGS, each at most MAX_TAG_CHARS long."""

    def check(values: list[str]) -> tuple[list[str] | None, str | None]:
        kept = [v for v in values if len(v) <= MAX_TAG_CHARS][:MAX_TAGS]
        if kept == values:
            return values, None
        return kept or None, (
            f"The address holds {len(values):,} tags; at most {MAX_TAGS} of at most {MAX_TAG_CHARS} characters "
            "each are used."
        )

    return check


def _last_day(today: date | None) -> date:
    """The date picker's last day: ten years from today."""
    now = today or date.today()
    try:
        return now.replace(year=now.year + 10)
    except ValueError:  # 29 February, ten years on
        return now.replace(year=now.year + 10, day=28)


def _picked(values: list[str]) -> list[date]:
    """`values` as days (YYYY-MM-DD); [] when one is not a day."""
    try:
        return [date.fromisoformat(v.strip()) for v in values]
    except ValueError:
        return []


def day(what: str, today: date | None = None) -> Check:
    """One end of the date filter (`what`: its label): one day, YYYY-MM-DD, from FIRST_DAY to ten
    years from today (as far as the date picker goes)."""

    def check(values: list[str]) -> tuple[list[str] | None, str | None]:
        last, picked = _last_day(today), _picked(values)
        if len(picked) == 1 and FIRST_DAY <= picked[0] <= last:
            return values, None
        shown = ", ".join(_quoted(v) for v in values[:3])
        return None, (
            f"The address's “{what}” {shown} is not one day like 2024-05-31 from {FIRST_DAY} to {last}; "
            "that date is left out."
        )

    return check
