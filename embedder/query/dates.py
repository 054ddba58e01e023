"""Dates typed in a query: "beach 2019", "july 2023", "summer 2021", "2019-2021", "last year", "2023-07-14".

`find_dates(text)` finds them and says what is left to search (`Found.rest`); the dates become one
`DateRange` (all found ranges together: "2019 2021" is 2019 to 2021), which a search applies as its
date filter: pictures taken then (the date taken, else the file's time, as `--after`/`--before`) or
whose words say that date (a receipt printed "2019", a sign, `IMG_20190704.jpg`). What is understood:

* a year, 1900 to next year: ``2019`` (all of it);
* years from-to: ``2019-2021``, ``2019–2021``, ``2019..2021`` (both years whole);
* a month and a year, either way round, English names or their first three letters: ``july 2023``,
  ``Jul 2023``, ``2023 july``; and the ISO month ``2023-07``;
* a season and a year, meteorological seasons of the northern hemisphere: ``spring`` March-May,
  ``summer`` June-August, ``autumn``/``fall`` September-November, ``winter 2021`` December 2021 to
  February 2022 (the winter that starts in that year);
* an ISO day: ``2023-07-14``;
* ``today``, ``yesterday``, ``this month``, ``last month``, ``this year``, ``last year`` (by today's date).

A month or season without a year (``july``, ``summer``) is left as a word: it could be the word on a
sign as well as a date. Every range has a `value`, a canonical phrase that `parse_when` reads back to
the same range (``2023-07``, ``summer 2021``, ``2019-2021``, ``last year``), for a removable chip and a
URL, and a `label` for people (``July 2023``). Relative dates keep their words as their value, so a
bookmark of "last year" means last year whenever it is opened.

Pure Python: nothing here imports torch, a model or a store.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta

MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): n for n, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}  # the first month of each
SEASON_NAMES = {3: "spring", 6: "summer", 9: "autumn", 12: "winter"}
FIRST_YEAR = 1900

_YEAR = r"(?:19|20)\d\d"
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_SEASON = "|".join(SEASONS)
# Order matters: the longer forms first, so "2019-2021" is not read as 2019 and a word "-2021".
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    # Not inside a longer token: "LH2019", "12.2019", "2019/07" and "IMG_2019" are no dates.
    (kind, re.compile(rf"(?<![\w\-./:]){pattern}(?![\w\-/:]|[.,]\d)", re.IGNORECASE))
    for kind, pattern in (
        ("day", rf"(?P<y>{_YEAR})-(?P<m>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12]\d|3[01])"),
        ("years", rf"(?P<y>{_YEAR})\s*(?:-|–|—|\.\.)\s*(?P<y2>{_YEAR})"),
        ("isomonth", rf"(?P<y>{_YEAR})-(?P<m>0[1-9]|1[0-2])"),
        ("month", rf"(?P<mn>{_MONTH})\.?,?\s+(?P<y>{_YEAR})"),
        ("month", rf"(?P<y>{_YEAR})\s+(?P<mn>{_MONTH})"),
        ("season", rf"(?P<sn>{_SEASON})\s+(?:of\s+)?(?P<y>{_YEAR})"),
        ("relative", r"(?P<rel>today|yesterday|(?:this|last)\s+(?:month|year))"),
        ("year", rf"(?P<y>{_YEAR})"),
    )
)


@dataclass(frozen=True)
class DateRange:
    """Days from `start` to `end`, both included; `value` reads back to it (`parse_when`)."""

    start: date
    end: date
    value: str
    label: str
    said: tuple[str, ...] = ()  # the dates as typed ("July 2023"), which pictures may also say; none when relative
    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"a date range ends before it starts: {self.start} to {self.end}")


@dataclass(frozen=True)
class Found:
    """What `find_dates` found in a text."""

    text: str
    rest: str  # the text without its dates (spaces tidied): what is left to search by meaning
    phrases: tuple[str, ...]  # the dates as they were typed ("July 2023"): still words of the text
    ranges: tuple[DateRange, ...]

    @property
    def when(self) -> DateRange | None:
        """All the ranges found as one (from the first day of any to the last), or None."""
        return span(self.ranges)


def find_dates(text: str, today: date | None = None) -> Found:
    """The dates typed in `text` (see the module's docstring for what is understood)."""
    today = today or date.today()
    taken: list[tuple[int, int, DateRange]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < b and a < end for a, b, _ in taken):
                continue
            found = _range(kind, match, today)
            if found is not None:
                taken.append((start, end, replace(found, said=_said(kind, match, found))))
    taken.sort(key=lambda item: item[0])
    rest, last = [], 0
    for start, end, _ in taken:
        rest.append(text[last:start])
        last = end
    rest.append(text[last:])
    return Found(
        text,
        " ".join("".join(rest).split()),
        tuple(text[a:b] for a, b, _ in taken),
        tuple(r for _, _, r in taken),
    )


def parse_when(value: str, today: date | None = None) -> DateRange:
    """The range a `DateRange.value` (or any date phrase alone) stands for; ValueError if it is none."""
    found = find_dates(value, today)
    if found.rest or not found.ranges:
        raise ValueError(f"{value!r} is not a date: use e.g. 2019, 2023-07, july 2023, summer 2021, 2019-2021 or last year")
    return found.when  # type: ignore[return-value]


def span(ranges: tuple[DateRange, ...] | list[DateRange]) -> DateRange | None:
    """One range from the first day of `ranges` to the last (the only one as it is)."""
    if not ranges:
        return None
    if len(ranges) == 1:
        return ranges[0]
    start, end = min(r.start for r in ranges), max(r.end for r in ranges)
    said = tuple(s for r in ranges for s in r.said)
    return DateRange(start, end, " ".join(r.value for r in ranges), " and ".join(r.label for r in ranges), said)


def _range(kind: str, match: re.Match[str], today: date) -> DateRange | None:
    groups = match.groupdict()
    if kind == "relative":
        return _relative(" ".join(groups["rel"].lower().split()), today)
    year = int(groups["y"])
    if not FIRST_YEAR <= year <= today.year + 1:
        return None
    if kind == "year":
        return DateRange(date(year, 1, 1), date(year, 12, 31), str(year), str(year))
    if kind == "years":
        last = int(groups["y2"])
        if last < year or last > today.year + 1:
            return None
        return DateRange(date(year, 1, 1), date(last, 12, 31), f"{year}-{last}", f"{year}–{last}")
    if kind in ("month", "isomonth"):
        month = int(groups["m"]) if kind == "isomonth" else MONTHS[groups["mn"].lower()]
        return DateRange(date(year, month, 1), _month_end(year, month), f"{year}-{month:02d}",
                         f"{calendar.month_name[month]} {year}")
    if kind == "season":
        first = SEASONS[groups["sn"].lower()]
        start = date(year, first, 1)
        end_year, end_month = (year + 1, 2) if first == 12 else (year, first + 2)
        name = SEASON_NAMES[first]
        months = f"{calendar.month_abbr[first]} {year}–{calendar.month_abbr[end_month]} {end_year}" if first == 12 else (
            f"{calendar.month_name[first]}–{calendar.month_name[end_month]}"
        )
        return DateRange(start, _month_end(end_year, end_month), f"{name} {year}", f"{name} {year} ({months})")
    try:
        day = date(year, int(groups["m"]), int(groups["d"]))
    except ValueError:  # 2023-02-30
        return None
    return DateRange(day, day, day.isoformat(), day.isoformat())


def _said(kind: str, match: re.Match[str], found: DateRange) -> tuple[str, ...]:
    """How a picture may say the date: as typed (a range of years: any of them); a relative date, never."""
    if kind == "relative":
        return ()
    if kind == "years":
        return tuple(str(y) for y in range(found.start.year, found.end.year + 1))
    return (match.group(0),)


def _relative(phrase: str, today: date) -> DateRange:
    if phrase == "today":
        return DateRange(today, today, phrase, f"today ({today.isoformat()})")
    if phrase == "yesterday":
        day = today - timedelta(days=1)
        return DateRange(day, day, phrase, f"yesterday ({day.isoformat()})")
    if phrase.endswith("month"):
        first = today.replace(day=1)
        if phrase.startswith("last"):
            first = (first - timedelta(days=1)).replace(day=1)
        end = _month_end(first.year, first.month)
        return DateRange(first, end, phrase, f"{phrase} ({calendar.month_name[first.month]} {first.year})")
    year = today.year - (1 if phrase.startswith("last") else 0)
    return DateRange(date(year, 1, 1), date(year, 12, 31), phrase, f"{phrase} ({year})")


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])
