"""Queries: text, image or a stored point → query vector → hits from the store."""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedder.models.base import Encoder
from embedder.models.vectors import normalise
from embedder.errors import QueryError
from embedder.media.formats import RAW, RAW_FORMATS
from embedder.media.formats import file_types as _stored_types
from embedder.query.pager import Collapser, ResultPages
from embedder.store import VISUAL, Hit, ImageStore, SearchFilter

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of {}"
TEXT_CACHE_SIZE = 512
GENERIC_PROMPTS = ("a photo", "a picture", "an image")  # what any picture fits: the baseline of a match


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


@dataclass(frozen=True)
class Result:
    """One found image: its id, cosine score, where it lives and what is stored about it."""

    id: str
    score: float
    path: str
    name: str
    payload: dict[str, Any]
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # when collapsing

    @classmethod
    def from_hit(cls, hit: Hit) -> Result:
        paths = hit.payload.get("paths") or [""]
        return cls(hit.id, hit.score, paths[0], hit.payload.get("name") or paths[0], hit.payload, hit.vector)


def apply_template(text: str, template: str | None) -> str:
    """`a photo of {}` + `dog` → `a photo of dog`; no `{}` in the template means it is a prefix."""
    text = text.strip()
    if not template:
        return text
    return template.replace("{}", text) if "{}" in template else f"{template} {text}"


FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF", "HIF": "HEIF"}
# Phones write JPEGs with extra pictures inside, which Pillow calls MPO: to people they are JPEGs. Each
# camera RAW is stored as its own format (NEF, CR3, DNG, …); RAW stands for all of them.
FORMAT_FAMILIES = {"JPEG": ("JPEG", "MPO"), RAW: tuple(sorted(set(RAW_FORMATS.values())))}


def file_types() -> list[str]:
    """The file types people can filter by: one per format the indexer reads, RAW for every camera format."""
    return _stored_types()


def check_file_types(types: Sequence[str]) -> list[str]:
    """The file types people typed (`jpg`, `PNG`), each one a type the indexer reads, else a QueryError."""
    known = set(file_types()) | set(FORMAT_ALIASES) | {f for family in FORMAT_FAMILIES.values() for f in family}
    typed = [t.strip() for t in types if t.strip()]
    unknown = [t for t in typed if t.upper() not in known]
    if unknown:
        raise QueryError(f"unknown file type {', '.join(unknown)}: use some of {', '.join(file_types()).lower()}")
    return typed


def make_filter(
    folder: str | None = None,
    types: Sequence[str] = (),
    after: date | None = None,
    before: date | None = None,
    min_width: int | None = None,
    min_height: int | None = None,
    tags: Sequence[str] = (),
) -> SearchFilter:
    """A `SearchFilter` from what people type: `jpg` → JPEG, dates inclusive, folders absolute,
    tags as stored (all of them must be on an image)."""
    named = (FORMAT_ALIASES.get(t.strip().upper(), t.strip().upper()) for t in types if t.strip())
    formats = tuple(dict.fromkeys(f for name in named for f in FORMAT_FAMILIES.get(name, (name,))))
    return SearchFilter(
        folder=os.path.abspath(os.path.expanduser(folder)) if folder else None,
        formats=formats,
        date_from=_utc(after) if after else None,
        date_to=_utc(before) + 86_399.999 if before else None,
        min_width=min_width or None,
        min_height=min_height or None,
        tags=tuple(dict.fromkeys(t.strip() for t in tags if t.strip())),
    )


def folder_choices(store: ImageStore, upload_dir: Path | None = None) -> list[str]:
    """Folders worth offering as a filter: each folder holding images (uploads as one folder) and
    every parent where two of them branch off, below the folder that holds them all (which, like
    `/` or `/tmp` above it, would filter nothing), sorted."""
    uploads = os.path.abspath(upload_dir) if upload_dir else None
    leaves: set[str] = set()
    for _, payload, _ in store.scroll():
        for path in payload.get("paths", []):
            folder = os.path.dirname(path)
            inside_uploads = uploads and (folder + os.sep).startswith(os.path.join(uploads, ""))
            leaves.add(uploads if inside_uploads else folder)
    children: dict[str, set[str]] = {}
    for leaf in leaves:
        child = leaf
        for parent in map(str, Path(leaf).parents):
            children.setdefault(parent, set()).add(child)
            child = parent
    common = os.path.commonpath(sorted(leaves)) if leaves else ""
    branches = {f for f, below in children.items() if len(below) > 1 and f != common and f.startswith(common)}
    return sorted(leaves | branches)


def _utc(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


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
