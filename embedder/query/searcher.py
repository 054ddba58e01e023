"""Queries → vectors → hits from the store, page by page: the one search path of the CLI and the pages.

Imports no torch: the encoder is handed in (and loaded by whoever opens the engine)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from embedder.errors import QueryError
from embedder.models.vectors import normalise
from embedder.query.pager import Collapser, Result, ResultPages
from embedder.query.terms import Query, Term, apply_template
from embedder.store.contract import VISUAL, ImageStore, SearchFilter

if TYPE_CHECKING:
    from embedder.models.base import Encoder

log = logging.getLogger(__name__)

TEXT_CACHE_SIZE = 512
GENERIC_PROMPTS = ("a photo", "a picture", "an image")  # what any picture fits: the baseline of a match


class Searcher:
    """Turns queries into vectors (text vectors cached) and asks the store for the nearest images.

    With an image-only model (`visual`, EMBEDDER_VISUAL_MODEL) whose vectors the store holds,
    queries of pictures alone ("Similar", search with an image) compare those; any query with words
    (text, or text and pictures composed) stays in CLIP's space, where words and pictures meet.
    """

    def __init__(self, encoder: Encoder, store: ImageStore, visual: Encoder | None = None) -> None:
        self.encoder = encoder
        self.store = store
        self.visual = visual
        self.text_vector: Callable[[str], np.ndarray] = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._encode_text)

    def _encode_text(self, text: str) -> np.ndarray:
        vector = self.encoder.encode_texts([text])[0]
        vector.setflags(write=False)
        return vector

    @property
    def min_side(self) -> int:
        """The side a query picture must be decoded at, at least, for every model that reads it."""
        return max(self.encoder.image_size, self.visual.image_size if self.visual else 0)

    def space(self, terms: Sequence[Term]) -> str | None:
        """Which vectors answer `terms`: VISUAL for pictures alone when the image-only model is in
        use (and the store holds its vectors), else None: CLIP's. A stored image not yet given its
        visual vector (see `embedder backfill-visual`) is compared by CLIP's, as before."""
        if self.visual is None or self.store.visual_model is None:
            return None
        weighted = [term for term in terms if term.weight != 0]
        if not weighted or not all(term.text is None and term.looks() for term in weighted):
            return None
        stored = [term.point_id for term in weighted if term.point_id is not None]
        if any(self.store.vector(pid, using=VISUAL) is None for pid in stored):
            log.info("a stored image of the query has no visual vector yet: comparing CLIP vectors")
            return None
        return VISUAL

    def visual_vector(self, image: Image.Image) -> np.ndarray | None:
        """A picture's vector by the image-only model (None without one): kept with an uploaded query."""
        return None if self.visual is None else self.visual.encode_images([image])[0]

    def vector(self, query: Query) -> np.ndarray:
        """The query's vector: the weighted, normalised sum of its terms' vectors (in `space`)."""
        return self.compose(query.terms, query.template, self.space(query.terms))

    def pages(self, query: Query, start: int = 0) -> ResultPages:
        """The query's results, page by page, best first: terms encoded once, for every page.

        Stored images that are positive terms are left out (more like this never shows the image
        itself); with `query.collapse`, near-duplicates of a better result are left out too.
        """
        space = self.space(query.terms)
        vector = self.compose(query.terms, query.template, space)
        used = tuple(t.point_id for t in query.terms if t.point_id and t.weight > 0)
        where = replace(query.where, exclude_ids=(*query.where.exclude_ids, *used)) if used else query.where
        with_vectors = query.collapse is not None

        def fetch(limit: int, offset: int) -> list[Result]:
            hits = self.store.query(
                vector, limit=limit, offset=offset, score_threshold=query.min_score, where=where,
                with_vectors=with_vectors, using=space,
            )
            return [Result.from_hit(h) for h in hits]

        return ResultPages(fetch, Collapser(query.collapse) if with_vectors else None, start)

    def browse(self, where: SearchFilter | None = None) -> ResultPages:
        """Every image (that `where` lets through), newest first by date taken, page by page.

        Qdrant orders by the `date` field's range index; each page asks for everything up to its
        end (order-by scrolls have no offset), so memory stays at what is shown.
        """

        def fetch(limit: int, offset: int) -> list[Result]:
            return [Result.from_hit(h) for h in self.store.newest(offset + limit, where)[offset:]]

        return ResultPages(fetch)

    def search(self, query: Query, limit: int = 12, offset: int = 0) -> list[Result]:
        """The best `limit` results of `query`, skipping the first `offset`."""
        return self.pages(query, offset).first(limit)[0]

    def match_margins(self, results: Sequence[Result]) -> dict[str, float]:
        """How much better each result fits the query than generic captions (`a photo`, …) fit it:
        comparable across queries, unlike raw cosines (a vague query scores high everywhere)."""
        generic = np.stack([self.text_vector(p) for p in GENERIC_PROMPTS])
        margins: dict[str, float] = {}
        for result in results:
            vector = result.vector if result.vector is not None else self.store.vector(result.id)
            if vector is not None:
                margins[result.id] = result.score - float(np.max(generic @ vector))
        return margins

    def compose(self, terms: Sequence[Term], template: str | None = None, space: str | None = None) -> np.ndarray:
        """The weighted sum of the terms' unit vectors, normalised (negative weights push away), in
        CLIP's space or with `space=VISUAL` the image-only model's (see `space`)."""
        weighted = [term for term in terms if term.weight != 0]
        if not weighted:
            raise QueryError("the query has no term with a weight other than 0")
        # The sum is normalised, so dividing every weight by the largest changes nothing, and keeps
        # weights like 1e300 or 1e-300 from overflowing or vanishing in float32.
        largest = max(abs(term.weight) for term in weighted)
        parts = [term.weight / largest * self._term_vector(term, template, space) for term in weighted]
        combined = np.sum(parts, axis=0)
        if not np.any(np.abs(combined) > 1e-6):
            raise QueryError("the terms cancel each other out: change a weight or remove a term")
        return normalise(combined)

    def _term_vector(self, term: Term, template: str | None, space: str | None = None) -> np.ndarray:
        if space == VISUAL:
            return self._visual_term_vector(term)
        if term.text is not None:
            return self.text_vector(apply_template(term.text, template))
        if term.vector is not None:
            return normalise(term.vector)
        if term.image is not None:
            return self.encoder.encode_images([term.image])[0]
        if term.point_id is not None:
            vector = self.store.vector(term.point_id)
            if vector is None:
                raise QueryError(f"{term.label or term.point_id} is no longer in the index")
            return vector
        raise QueryError("a query term needs a text, an image or a stored image")

    def _visual_term_vector(self, term: Term) -> np.ndarray:
        """A picture term's vector by the image-only model."""
        if term.visual is not None:
            return normalise(term.visual)
        if term.image is not None and self.visual is not None:
            return self.visual.encode_images([term.image])[0]
        if term.point_id is not None:
            vector = self.store.vector(term.point_id, using=VISUAL)
            if vector is None:  # deleted since `space` looked
                raise QueryError(f"{term.label or term.point_id} is no longer in the index")
            return vector
        raise QueryError("a query term needs an image or a stored image")
