"""Queries → one store request → hits, page by page: the one search path of the CLI and the pages.

A query's picture part is the weighted sum of its terms' vectors (CLIP's, or the image-only model's
for pictures alone); its words part is the words of its positive text terms (embedder/query/lexical.py).
With words to find and a store that holds words, both go to the store as ONE fused request
(embedder/store/fusion.py): the CLIP vector's nearest points and the points whose words hold the
query's, each with the filters, fused by `FUSION`: a picture whose text, names or tags hold the
query's words (an exact match) ranks above every picture that only looks like it, and pictures that
only look like it keep their cosine as their score. Why chosen: BENCHMARKS.md ("One search box").

Dates typed in the text (`Query.dates`) are a date filter; the words of a date are left out of the
picture part and kept in the words part (a sign saying 2019 still matches 2019). A query of nothing
but dates shows the pictures of that time, newest first. Every result says why it matched
(`Result.matched`, embedder/query/why.py); with `Query.cut`, the results that only look like the
query stop where its score curve bends (embedder/query/cutoff.py), `weaker` counting the rest.

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
from embedder.query.cutoff import knee
from embedder.query.dates import DateRange, find_dates
from embedder.query.filters import within
from embedder.query.lexical import WordsPart, words_part
from embedder.query.pager import CANDIDATES, Collapser, Result, ResultPages, Reviewed
from embedder.query.terms import Query, Term, apply_template, check_text, long_text
from embedder.query.why import explain
from embedder.store.contract import VISUAL, WORDS, ImageStore, SearchFilter
from embedder.store.fusion import Boost, Nearest

if TYPE_CHECKING:
    from embedder.models.base import Encoder

log = logging.getLogger(__name__)

TEXT_CACHE_SIZE = 512
GENERIC_PROMPTS = ("a photo", "a picture", "an image")  # what any picture fits: the baseline of a match
# How the picture part and the words part are fused (embedder/store/fusion.py; chosen on the bench,
# BENCHMARKS.md "One search box"): an exact match of words adds 2, so it ranks above every cosine,
# plus up to 0.1 as its words are rarer and more (a BM25 score of 10: two or three rare words); a
# words score under 1 (a word in more than about a third of the library: it tells nothing apart) is
# no match. Scores above 1 are exact matches.
FUSION = Boost(bonus=2.0, floor=1.0, lift=0.1, full=10.0)
EXACT_ABOVE = 1.0  # fused scores above this are exact matches (cosines are at most 1)
ONLY_DATES = "only a date ({}): every picture taken then (or saying it), newest first"


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
        for term in query.terms:
            if term.text is not None and term.weight:
                check_text(term.text)
        where = within(query.where, query.dates) if query.dates else query.where
        terms = undated(query.terms) if query.dates else list(query.terms)
        if query.dates and not any(t.weight for t in terms):
            return self._dated(where, query.dates, query.sort)
        space = self.space(terms)
        vector = self.compose(terms, query.template, space)
        used = tuple(t.point_id for t in terms if t.point_id and t.weight > 0)
        where = replace(where, exclude_ids=(*where.exclude_ids, *used)) if used else where
        with_vectors = query.collapse is not None
        words = None
        if space is None and self.store.has_words and query.only != "picture":
            words = words_part(query.terms, query.only or "all", read_dates=query.dates is not None)
        if query.only in ("text", "name") and words is None:
            raise QueryError(f"only {query.only} needs words to find: type some, or search without it")
        collapser = Collapser(query.collapse) if with_vectors else None
        if words is None:

            def fetch(limit: int, offset: int) -> list[Result]:
                hits = self.store.query(
                    vector, limit=limit, offset=offset, score_threshold=query.min_score, where=where,
                    with_vectors=with_vectors, using=space,
                )
                return [replace(Result.from_hit(h), matched=("picture",)) for h in hits]

            plain = not query.cut and query.sort == "relevance"
            review = None if plain else _Review(None)
            return ResultPages(fetch, collapser, start, review, query.cut, query.sort, long_text(query.terms))
        pushed = tuple(t.point_id for t in terms if t.point_id and t.weight < 0)
        parts = fused_parts(vector, words, max(CANDIDATES, start), query.only, pushed)

        def fused(limit: int, offset: int) -> list[Result]:
            deeper = [replace(p, limit=max(p.limit, offset + limit)) for p in parts]
            hits = self.store.fused(deeper, FUSION, limit, offset, where, with_vectors, query.min_score)
            return [Result.from_hit(h) for h in hits]

        return ResultPages(fused, collapser, start, _Review(words), query.cut, query.sort, long_text(query.terms))

    def _dated(self, where: SearchFilter, dates: DateRange, order: str) -> ResultPages:
        """A query of nothing but dates: the pictures of that time, newest (or oldest) first."""
        oldest = order == "oldest"

        def fetch(limit: int, offset: int) -> list[Result]:
            return [Result.from_hit(h) for h in self.store.newest(offset + limit, where, oldest=oldest)[offset:]]

        return ResultPages(fetch, note=ONLY_DATES.format(dates.label).replace("newest", "oldest" if oldest else "newest"))

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
        comparable across queries, unlike raw cosines (a vague query scores high everywhere). Results
        whose words matched (fused scores above EXACT_ABOVE, not cosines) are left out: they match."""
        generic = np.stack([self.text_vector(p) for p in GENERIC_PROMPTS])
        margins: dict[str, float] = {}
        for result in results:
            if result.score > EXACT_ABOVE:
                continue
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


def fused_parts(
    vector: np.ndarray, words: WordsPart, depth: int, only: str | None, pushed: tuple[str, ...] = ()
) -> list[Nearest]:
    """The two prefetches of a fused request: the picture part's nearest and the points whose words
    the query's are (at least FUSION.floor: a word most pictures hold is no match); with `only` text
    or name, the picture part too keeps to the points whose text or names hold the words. Stored
    images the query pushes away (`pushed`) are not found by their words: only their looks count."""
    looks = (words.need,) if only in ("text", "name") else ()
    return [
        Nearest(vector, depth, must=looks),
        Nearest(words.vector, depth, using=WORDS, must=(words.need,), score_threshold=FUSION.floor, exclude_ids=pushed),
    ]


def undated(terms: tuple[Term, ...]) -> list[Term]:
    """The terms with the dates typed in their text left out (what the picture part reads)."""
    out = []
    for term in terms:
        if term.text is None:
            out.append(term)
            continue
        rest = find_dates(term.text).rest
        out.append(replace(term, text=rest) if rest else replace(term, text=term.text, weight=0.0))
    return out


class _Review:
    """Says why each result matched and, on the best candidates, where the long tail starts: exact
    matches (scores above EXACT_ABOVE) always stand out; the others, found by their looks alone, stand
    out down to the knee of their cosines (embedder/query/cutoff.py)."""

    def __init__(self, words: WordsPart | None) -> None:
        self.words = words
        # The lowest cosine that stood out: an exact match looks like the query too when its cosine
        # is at least this (None: no knee, so no look stood out).
        self.floor: float | None = None

    def review(self, candidates: list[Result]) -> Reviewed:
        exact = [r for r in candidates if self._exact(r)]
        looks = [r for r in candidates if not self._exact(r)]
        keep = knee([r.score for r in looks])
        self.floor = looks[keep - 1].score if 0 < keep < len(looks) else None  # no knee: nothing stands out
        return Reviewed(self.annotate(candidates), len(exact) + keep)

    def annotate(self, results: list[Result]) -> list[Result]:
        return [self._why(r) for r in results]

    def _exact(self, result: Result) -> bool:
        return self.words is not None and result.score > EXACT_ABOVE

    def _why(self, result: Result) -> Result:
        if self.words is None:
            return replace(result, matched=("picture",))
        exact = self._exact(result)
        looks = result.score - FUSION.bonus - FUSION.lift / 2 if exact else result.score
        picture = not exact or (self.floor is not None and looks >= self.floor)
        why = explain(result.payload, self.words.needed if exact else (), self.words.words, picture)
        return replace(result, matched=why.matched, line=why.line, marks=why.marks)
