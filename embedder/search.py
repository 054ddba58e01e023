"""Queries: text, image or a stored point → query vector → hits from the store."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from embedder.encoder import Encoder, normalise
from embedder.store import Hit, ImageStore, SearchFilter

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of {}"
TEXT_CACHE_SIZE = 512


@dataclass(frozen=True)
class Term:
    """One part of a composed query: a text, an image or a stored point, with a weight (< 0 subtracts)."""

    text: str | None = None
    image: Image.Image | None = None
    point_id: str | None = None
    weight: float = 1.0

    def describe(self) -> str:
        what = self.text if self.text is not None else f"point {self.point_id}" if self.point_id else "image"
        return f"{self.weight:+g}×{what}"


def parse_term(raw: str) -> Term:
    """Query syntax: `beach` (weight 1), `-people` (weight -1), `2:sunset`, `-0.5:crowd`."""
    text = raw.strip()
    head, sep, rest = text.partition(":")
    if sep and rest.strip():
        try:
            return Term(text=rest.strip(), weight=float(head))
        except ValueError:
            pass
    if text.startswith("-") and len(text) > 1:
        return Term(text=text[1:].strip(), weight=-1.0)
    return Term(text=text)


@dataclass(frozen=True)
class Result:
    """One found image: its id, cosine score, where it lives and what is stored about it."""

    id: str
    score: float
    path: str
    name: str
    payload: dict[str, Any]

    @classmethod
    def from_hit(cls, hit: Hit) -> Result:
        paths = hit.payload.get("paths") or [""]
        return cls(hit.id, hit.score, paths[0], hit.payload.get("name") or paths[0], hit.payload)


def apply_template(text: str, template: str | None) -> str:
    """`a photo of {}` + `dog` → `a photo of dog`; no `{}` in the template means it is a prefix."""
    text = text.strip()
    if not template:
        return text
    return template.replace("{}", text) if "{}" in template else f"{template} {text}"


FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}


def make_filter(
    folder: str | None = None,
    types: Sequence[str] = (),
    after: date | None = None,
    before: date | None = None,
    min_width: int | None = None,
    min_height: int | None = None,
) -> SearchFilter:
    """A `SearchFilter` from what people type: `jpg` → JPEG, dates inclusive, folders absolute."""
    formats = tuple(dict.fromkeys(FORMAT_ALIASES.get(t.strip().upper(), t.strip().upper()) for t in types if t.strip()))
    return SearchFilter(
        folder=os.path.abspath(os.path.expanduser(folder)) if folder else None,
        formats=formats,
        date_from=_utc(after) if after else None,
        date_to=_utc(before) + 86_399.999 if before else None,
        min_width=min_width or None,
        min_height=min_height or None,
    )


def _utc(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


class Searcher:
    """Turns queries into vectors (text vectors cached) and asks the store for the nearest images."""

    def __init__(self, encoder: Encoder, store: ImageStore) -> None:
        self.encoder = encoder
        self.store = store
        self.text_vector: Callable[[str], np.ndarray] = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._encode_text)

    def _encode_text(self, text: str) -> np.ndarray:
        vector = self.encoder.encode_texts([text])[0]
        vector.setflags(write=False)
        return vector

    def by_text(
        self,
        text: str,
        limit: int = 12,
        offset: int = 0,
        min_score: float | None = None,
        template: str | None = None,
        where: SearchFilter | None = None,
    ) -> list[Result]:
        return self.by_vector(self.text_vector(apply_template(text, template)), limit, offset, min_score, where)

    def by_image(
        self,
        image: Image.Image,
        limit: int = 12,
        offset: int = 0,
        min_score: float | None = None,
        where: SearchFilter | None = None,
    ) -> list[Result]:
        vector = self.encoder.encode_images([image])[0]
        return self.by_vector(vector, limit, offset, min_score, where)

    def like(
        self,
        point_id: str,
        limit: int = 12,
        offset: int = 0,
        min_score: float | None = None,
        where: SearchFilter | None = None,
    ) -> list[Result]:
        """More like this: the stored image's own vector as the query, the image itself left out."""
        if self.store.vector(point_id) is None:
            return []
        return self.by_terms([Term(point_id=point_id)], limit, offset, min_score, where=where)

    def compose(self, terms: list[Term], template: str | None = None) -> np.ndarray:
        """The weighted sum of the terms' unit vectors, normalised (negative weights push away)."""
        parts: list[np.ndarray] = []
        for term in terms:
            if term.weight == 0:
                continue
            if term.text is not None:
                vector = self.text_vector(apply_template(term.text, template))
            elif term.image is not None:
                vector = self.encoder.encode_images([term.image])[0]
            elif term.point_id is not None:
                vector = self.store.vector(term.point_id)
                if vector is None:
                    raise ValueError(f"no stored image with id {term.point_id}")
            else:
                raise ValueError("a query term needs a text, an image or a point id")
            parts.append(term.weight * vector)
        if not parts:
            raise ValueError("the query has no term with a non-zero weight")
        combined = np.sum(parts, axis=0)
        if not np.any(combined):
            raise ValueError("the terms cancel each other out")
        return normalise(combined)

    def by_terms(
        self,
        terms: list[Term],
        limit: int = 12,
        offset: int = 0,
        min_score: float | None = None,
        template: str | None = None,
        where: SearchFilter | None = None,
    ) -> list[Result]:
        """A composed query, e.g. `beach` + `2:sunset` − `people`; stored query points are left out."""
        used = tuple(t.point_id for t in terms if t.point_id and t.weight > 0)
        if used:
            base = where or SearchFilter()
            where = SearchFilter(**{**base.__dict__, "exclude_ids": (*base.exclude_ids, *used)})
        return self.by_vector(self.compose(terms, template), limit, offset, min_score, where)

    def by_vector(
        self,
        vector: np.ndarray,
        limit: int = 12,
        offset: int = 0,
        min_score: float | None = None,
        where: SearchFilter | None = None,
    ) -> list[Result]:
        query = normalise(vector)
        hits = self.store.query(query, limit=limit, offset=offset, score_threshold=min_score, where=where)
        return [Result.from_hit(h) for h in hits]
