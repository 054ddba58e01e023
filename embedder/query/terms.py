"""A query as a value: weighted terms (text, a picture, a stored image) and how text is phrased.

Parsing what people type (`beach`, `-people`, `2:sunset`, an image id) lives here; nothing here
loads a model or talks to a store.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from embedder.errors import QueryError
from embedder.store.contract import SearchFilter

DEFAULT_TEMPLATE = "a photo of {}"


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
    """

    terms: tuple[Term, ...]
    template: str | None = None
    where: SearchFilter = field(default_factory=SearchFilter)
    min_score: float | None = None
    collapse: float | None = None

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
