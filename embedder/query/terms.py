"""A query as a value: weighted terms (text, a picture, a stored image) and how text is phrased.

Parsing what people type (`beach`, `-people`, `2:sunset`, an image id) lives here; nothing here
loads a model or talks to a store.
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
from PIL import Image

from embedder.errors import QueryError
from embedder.query.dates import DateRange, find_dates, span
from embedder.store.contract import SearchFilter

DEFAULT_TEMPLATE = "a photo of {}"
MAX_TEXT_CHARS = 1000  # a longer search text is searched by the picture part alone, and says so (`long_text`)
ONLY = ("picture", "text", "name")  # what `Query.only` may keep: results that matched that way


@dataclass(frozen=True)
class Term:
    """One part of a composed query, with a weight (< 0 pushes results away from it).

    A term is a text, an image, a stored point (more like this) or a vector already encoded
    (an uploaded image kept across reruns: `vector` by the CLIP model, `visual` by the image-only
    one, when there is one); `label` is how people know an image (its file name).
    """

    text: str | None = None
    image: Image.Image | None = None
    point_id: str | None = None
    weight: float = 1.0
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    label: str = ""
    visual: np.ndarray | None = field(default=None, compare=False, repr=False)

    def looks(self) -> bool:
        """Whether the image-only model can answer this term: a stored image, or a picture (its
        vector by that model at hand, or the picture itself, not only its CLIP vector)."""
        return self.point_id is not None or self.visual is not None or (self.image is not None and self.vector is None)

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise QueryError(f"a term's weight must be a finite number, got {self.weight}")

    def describe(self) -> str:
        """How the term reads: `“dog”`, `images like a.jpg`, `images like your picture b.png`."""
        if self.text is not None:
            return f"“{self.text}”"
        if self.point_id is not None:
            return f"images like {self.label or self.point_id}"
        return f"images like your picture {self.label}".rstrip()


def describe_query(terms: Sequence[Term]) -> str:
    """A composed query as people read it: `“beach” + 2× “sunset” − “people”`."""
    parts: list[str] = []
    for term in terms:
        if term.weight == 0:
            continue
        sign = "− " if term.weight < 0 else ("+ " if parts else "")
        times = f"{abs(term.weight):g}× " if abs(term.weight) != 1 else ""
        parts.append(f"{sign}{times}{term.describe()}")
    return " ".join(parts)


def check_text(text: str) -> str:
    """`text` as a search text, or a QueryError saying why it cannot be one: without a letter, digit or
    symbol (only punctuation)."""
    if not any(unicodedata.category(c)[0] in "LNS" for c in text):
        raise QueryError(f"{text!r} holds no letters or digits to search for: type words, e.g. beach")
    return text


def long_text(terms: Sequence[Term]) -> str:
    """What to tell people about a search text longer than MAX_TEXT_CHARS ("" when there is none)."""
    longest = max((len(t.text) for t in terms if t.text is not None and t.weight), default=0)
    if longest <= MAX_TEXT_CHARS:
        return ""
    return (
        f"a search text of {longest:,} characters: the picture model reads only its start (about 300 characters) "
        "and its words are not looked for one by one; shorten it to the words that matter"
    )


def parse_term(raw: str) -> Term:
    """Query syntax: `beach` (weight 1), `-people` (weight -1), `2:sunset`, `-0.5:crowd`."""
    text = raw.strip()
    if not text:
        raise QueryError("a search term is empty: give words, e.g. beach, or remove the empty argument")
    head, sep, rest = text.partition(":")
    if sep and rest.strip():
        try:
            weight = float(head)
        except ValueError:
            pass
        else:
            if not math.isfinite(weight):
                raise QueryError(
                    f"{text!r}: the weight {head.strip()} is not a finite number; use one like 2:{rest.strip()}"
                )
            return Term(text=rest.strip(), weight=weight)
    if text.startswith("-") and len(text) > 1:
        return Term(text=text[1:].strip(), weight=-1.0)
    return Term(text=text)


def parse_point_id(raw: str) -> str:
    """A stored image's id as people paste it (any case, braces or no dashes) → its canonical form."""
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise QueryError(
            f"{raw!r} is not an image id: ids look like 1b4e28ba-2fa1-41d2-883f-0016d3cca427; "
            "`python -m embedder search --json WORDS` prints the id of every result"
        ) from None


@dataclass(frozen=True)
class Query:
    """One search, as a value: weighted terms, how text is phrased, which images may answer.

    `template` wraps text terms (`a photo of {}`); `where` filters inside the store; `min_score`
    drops weaker matches; `collapse` (a cosine) keeps only the best of each set of near-duplicates.
    `dates`: the dates typed in the text (`with_typed_dates`), applied as a date filter beside `where`'s;
    `only`: results that matched by their "picture", "text" or "name" only; `cut`: leave out the long
    tail of results that only look like the query, where its score curve bends (embedder/query/cutoff.py);
    `sort`: "relevance", "newest" or "oldest" (what passed the cut, by the date taken).
    """

    terms: tuple[Term, ...]
    template: str | None = None
    where: SearchFilter = field(default_factory=SearchFilter)
    min_score: float | None = None
    collapse: float | None = None
    dates: DateRange | None = None
    only: str | None = None
    cut: bool = False
    sort: str = "relevance"

    def __post_init__(self) -> None:
        if self.only is not None and self.only not in ONLY:
            raise QueryError(f"only must be one of {', '.join(ONLY)}, not {self.only!r}")

    def with_typed_dates(self, today: date | None = None) -> Query:
        """This query with the dates typed in its text terms as its `dates` (None when none is typed)."""
        found = [r for t in self.terms if t.text is not None and t.weight > 0 for r in find_dates(t.text, today).ranges]
        return replace(self, dates=span(found))

    @classmethod
    def text(cls, text: str, **options: Any) -> Query:
        return cls((Term(text=text),), **options)

    @classmethod
    def image(cls, image: Image.Image, label: str = "", **options: Any) -> Query:
        return cls((Term(image=image, label=label),), **options)

    @classmethod
    def like(cls, point_id: str, label: str = "", **options: Any) -> Query:
        """More like this stored image (which is left out of its own results)."""
        return cls((Term(point_id=point_id, label=label),), **options)

    def describe(self) -> str:
        return describe_query(self.terms)


def apply_template(text: str, template: str | None) -> str:
    """`a photo of {}` + `dog` → `a photo of dog`; no `{}` in the template means it is a prefix."""
    text = text.strip()
    if not template:
        return text
    return template.replace("{}", text) if "{}" in template else f"{template} {text}"
