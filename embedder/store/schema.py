"""The payload fields that get an index, declared once for every backend, and the one field the store derives.

Keyword fields answer exact matches (a path, a folder and everything below it, a file type); number
fields answer ranges (dates, sizes); text fields (words separated by spaces, already normalised by
`embedder.words`, so the index only splits at spaces) answer "holds this word". Each backend turns
this table into its own index calls, and its filter builder uses only these fields.

`day` is not written by the indexer: every backend derives it from `date` on every write
(`with_day`), so it always equals `date // 86400`, the day on the camera's own clock. The date filter
asks for a range of days; an integer range on one field, with the points of each optimized segment
kept in day order (`PRINCIPAL_FIELDS`), is several times faster at 1M than two float ranges on
`date` (BENCHMARKS.md, section 4). Points stored before the field existed lack it until
`ImageStore.fill_days` gives it to them; until then the date condition answers for them.
"""

from __future__ import annotations

import math
from typing import Any

SECONDS_PER_DAY = 86_400
DAY_FIELD = "day"  # days since 1970-01-01 on the camera's clock: date // 86400 (derived, never written by hand)

PAYLOAD_INDEXES: dict[str, str] = {
    "paths": "keyword",  # every path of the image: a path belongs to one point
    "folders": "keyword",  # every folder above each path: the folder filter
    "format": "keyword",  # JPEG, PNG, …: the file-type filter
    "tags": "keyword",  # labels found in the picture (embedder/indexing/tags.py): the tag filter and its counts
    "date": "float",  # date taken (EXIF) or the file's time: browsing by date, the date filter's fallback
    "bytes": "float",
    "width": "float",
    "height": "float",
    DAY_FIELD: "integer",  # the date filter (see the module's docstring)
    "text_reader": "keyword",  # which reader read the picture's text (embedder/indexing/text_pass.py)
    "text": "text",  # the words of the text read in the picture
    "name_text": "text",  # the words of its file and folder names (uploads: the names they were sent as)
    "words": "text",  # all of its words: text, names and tags (what a query's words must be found in)
}
KEYWORD_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "keyword")
NUMBER_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "float")
INTEGER_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "integer")
TEXT_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "text")
TEXT_READER = "text_reader"
WORDS_FIELD = "words"
# Fields whose index orders the points of every segment Qdrant builds (its `is_principal`): a range
# of days is then a run of neighbouring points, read in order.
PRINCIPAL_FIELDS = (DAY_FIELD,)


def day_of(date: Any) -> int | None:
    """The day number of a stored `date` (seconds on the camera's clock read as UTC); None if it is not a number."""
    if isinstance(date, bool) or not isinstance(date, (int, float)) or not math.isfinite(date):
        return None
    return int(date // SECONDS_PER_DAY)  # floor division of floats is exact: the day the date falls in


def with_day(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with `day` derived from its `date` (a copy when that changes anything; never in place)."""
    day = day_of(payload.get("date"))
    if day is None:
        return {k: v for k, v in payload.items() if k != DAY_FIELD} if DAY_FIELD in payload else payload
    held = payload.get(DAY_FIELD)
    if held == day and type(held) is int:
        return payload
    return {**payload, DAY_FIELD: day}


def shown(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored payload as reads return it: without the derived `day`, which is the store's own."""
    return {k: v for k, v in payload.items() if k != DAY_FIELD}
