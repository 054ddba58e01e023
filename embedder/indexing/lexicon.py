"""A point's words: what a query's words are matched against, made from its payload in one place.

Three kinds of words, each through `embedder.words` (the one normaliser queries go through too):

* names: the name of every file the picture is stored as (an upload by the name it was sent as) and
  of every folder above them (``2019/june/grandmas-birthday-cake.jpg`` → 2019, june, grandmas,
  birthday, cake; folders every picture shares, like ``home`` or ``Pictures``, weigh nothing by IDF);
* tags: the words of its tags (embedder/indexing/tags.py);
* text: the words of the text read in the picture (the `text` field, written by the text pass).

`word_fields(payload)` gives the fields a point stores for them — `name_text` (names), `words` (all
three, what a query's words must be found in) and `words_by` (how they were made: a point without
today's is given them again by the next index run, from its payload: nothing is decoded) — and
`words_vector` the WORDS sparse vector of its BM25 term weights. Every write that changes a point's
paths, names, tags or text calls `with_words`, so the fields and the vector never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from embedder.models import bm25
from embedder.store.contract import ImageStore, SparseWords
from embedder.words import name_words, words

WORDS_BY = 1  # raise when the words of a point are made differently: every point gets them again
FIELDS = frozenset({"name_text", "words", "words_by"})  # what word_fields writes
TEXT_FIELDS = frozenset({"text_lines", "text", "text_size", "text_reader", "text_failed"})  # what reading its text writes


def names_of(payload: Mapping[str, Any]) -> list[str]:
    """The words of a point's file names (its `names`: upload names as sent) and of the folders above its paths."""
    found: dict[str, None] = {}
    for name in _strings(payload.get("names")):
        found.update(dict.fromkeys(name_words(name)))
    for path in _strings(payload.get("paths")):
        for folder in PurePath(path).parent.parts:
            found.update(dict.fromkeys(name_words(folder, is_file=False)))
    return list(found)


def tags_of(payload: Mapping[str, Any]) -> list[str]:
    found: dict[str, None] = {}
    for tag in _strings(payload.get("tags")):
        found.update(dict.fromkeys(words(tag)))
    return list(found)


def word_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a point's words, from its payload (see the module's docstring)."""
    names = names_of(payload)
    text = payload.get("text") if isinstance(payload.get("text"), str) else ""
    every = list(dict.fromkeys([*names, *tags_of(payload), *text.split()]))
    return {"name_text": " ".join(names), "words": " ".join(every), "words_by": WORDS_BY}


def words_vector(payload: Mapping[str, Any]) -> SparseWords:
    """The WORDS vector of a point: each of its name and tag words once, the words of its text once for
    every line they were read in (a receipt's "milk" on two lines counts twice)."""
    text = payload.get("text") if isinstance(payload.get("text"), str) else ""
    counted = [*names_of(payload), *tags_of(payload), *text.split()]
    return bm25.document(counted)


def with_words(payload: Mapping[str, Any]) -> tuple[dict[str, Any], SparseWords]:
    """`payload` with its word fields made again, and its WORDS vector."""
    fresh = {**payload, **word_fields(payload)}
    return fresh, words_vector(fresh)


def needs_words(payload: Mapping[str, Any]) -> bool:
    """Whether a stored point's words were made before today's rules (or never)."""
    return payload.get("words_by") != WORDS_BY


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def rewrite(store: ImageStore, point_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Store `payload` as the point's whole payload, its word fields and WORDS vector made again from
    it (the vector first: a crash in between leaves a point the next run gives its words again)."""
    fresh, vector = with_words(payload)
    if store.has_words:
        store.set_words({point_id: vector})
    store.set_payload(point_id, fresh)
    return fresh
