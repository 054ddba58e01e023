"""Queries: text, image or a stored point → query vector → hits from the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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
        vector = self.store.vector(point_id)
        if vector is None:
            return []
        base = where or SearchFilter()
        excluded = SearchFilter(**{**base.__dict__, "exclude_ids": (*base.exclude_ids, point_id)})
        return self.by_vector(vector, limit, offset, min_score, excluded)

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
