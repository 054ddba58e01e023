"""Why a picture matched a query: which of its parts (`picture`, `text`, `name`, `tag`) and, for text,
the line it was found in with the query's words marked (offsets, so a page can highlight them without
rendering the line as Markdown or HTML: text read in a picture is the user's, shown literally).

Pure Python: nothing here imports torch or a store.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embedder.indexing.lexicon import names_of, tags_of
from embedder.words import fold, word_spans, words

PARTS = ("picture", "text", "name", "tag")  # in the order they are listed


@dataclass(frozen=True)
class Why:
    matched: tuple[str, ...] = ()  # some of PARTS, in their order
    line: str | None = None  # the line of text in the picture that holds the most of the query's words
    marks: tuple[tuple[int, int], ...] = ()  # where the query's words are in `line`: (start, end), in order


def explain(
    payload: Mapping[str, Any], needed: Sequence[Sequence[Sequence[str]]], wanted: frozenset[str], picture: bool
) -> Why:
    """Why a picture (`payload`) matched: `needed` are the words an exact match holds (per term, per
    piece, its words), `wanted` every word of the query; `picture` whether its looks matched."""
    text = set((payload.get("text") or "").split()) if isinstance(payload.get("text"), str) else set()
    parts = {"text": text, "name": set(names_of(payload)), "tag": set(tags_of(payload))}
    every = set().union(*parts.values())
    exact = [need for need in needed if need and all(any(w in every for w in piece) for piece in need)]
    found_in = {
        name: any(w in have for need in exact for piece in need for w in piece) for name, have in parts.items()
    }
    matched = tuple(p for p in PARTS if (picture if p == "picture" else found_in[p]))
    line, marks = best_line(payload, wanted) if found_in["text"] else (None, ())
    return Why(matched, line, marks)


def best_line(payload: Mapping[str, Any], wanted: frozenset[str]) -> tuple[str | None, tuple[tuple[int, int], ...]]:
    """The recognised line holding the most of `wanted`'s words, with where they are in it."""
    best: tuple[int, str, tuple[tuple[int, int], ...]] | None = None
    for entry in payload.get("text_lines") or []:
        raw = entry.get("text") if isinstance(entry, Mapping) else None
        if not isinstance(raw, str):
            continue
        line = unicodedata.normalize("NFKC", raw)
        marks = mark(line, wanted)
        if marks and (best is None or len(marks) > best[0]):
            best = (len(marks), line, marks)
    return (best[1], best[2]) if best else (None, ())


def mark(line: str, wanted: frozenset[str]) -> tuple[tuple[int, int], ...]:
    """Where `wanted`'s words are in `line` (NFKC-normal): each word part that is one of them (or is,
    without its accents), and a whole run like ``Wi-Fi`` when its joined form ``wifi`` is."""
    spans = word_spans(line)
    marks: list[tuple[int, int]] = []
    start = 0
    for piece in line.split(" "):
        end = start + len(piece)
        inside = [s for s in spans if start <= s.start and s.end <= end]
        if inside and set(words(piece)) & wanted:
            hits = [(s.start, s.end) for s in inside if s.word in wanted or fold(s.word) in wanted]
            marks += hits or [(inside[0].start, inside[-1].end)]
        start = end + 1
    return tuple(marks)
