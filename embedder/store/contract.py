"""What the rest of the product may ask of a store, whichever backend holds the images.

`ImageStore` is the contract both backends (and the in-memory one the tests use) keep; `Point`,
`Hit` and `SearchFilter` are what goes in and out. Nothing here imports a Qdrant library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedder.errors import StoreError

if TYPE_CHECKING:
    from embedder.store.fusion import Fusion, Nearest

SCROLL_PAGE = 256
# The name of the optional image-only vector (EMBEDDER_VISUAL_MODEL) beside the CLIP one, which is
# the collection's unnamed vector (""), as it always was: stores without a visual model are unchanged.
VISUAL = "visual"
# The name of the sparse vector of each point's words (the text read in the picture, its file and
# folder names, its tags): BM25 term weights over `embedder.words`, which the engine weighs by IDF.
WORDS = "words"
# The most distinct values a facet (e.g. the tag counts) returns: far more than any tag vocabulary.
FACET_LIMIT = 100_000


@dataclass(frozen=True)
class SparseWords:
    """A sparse vector: term ids (hashes of words) and their weights, both in the same order."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray
    payload: dict[str, Any]
    visual: np.ndarray | None = field(default=None, compare=False, repr=False)  # the VISUAL vector, if any
    words: SparseWords | None = field(default=None, compare=False, repr=False)  # the WORDS vector, if any


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # when asked for


@dataclass(frozen=True)
class TypedDate:
    """A date typed in a query: points taken on the days `day_from` to `day_to` (day numbers, as the
    `day` field), or whose words say it (any of `said`: each a date as typed, every piece of it, any
    of each piece's words)."""

    day_from: int
    day_to: int
    said: tuple[tuple[tuple[str, ...], ...], ...] = ()


@dataclass(frozen=True)
class Recorded:
    """What the configured collection records about its vectors, read without opening it (and so
    without a model): whether it exists, and the model id and size of its vectors when it says so."""

    exists: bool
    model: str | None = None
    dim: int | None = None

    @property
    def known(self) -> bool:
        """Whether a store can be opened for it as it is (or there is nothing to open)."""
        return not self.exists or (self.model is not None and self.dim is not None)


@dataclass(frozen=True)
class SearchFilter:
    """Conditions on the payload, applied inside Qdrant. Empty fields mean no condition."""

    folder: str | None = None  # subtree: matches images in this folder or below
    formats: tuple[str, ...] = ()  # e.g. ("JPEG", "PNG")
    date_from: float | None = None  # date taken (or mtime), seconds on the camera's clock read as UTC
    date_to: float | None = None
    # The date filter: inclusive days on the camera's clock (days since 1970-01-01, `date // 86400`);
    # either end open when None. Backends search these on the derived `day` field (store/schema.py).
    day_from: int | None = None
    day_to: int | None = None
    min_width: int | None = None
    min_height: int | None = None
    exclude_ids: tuple[str, ...] = field(default=())
    paths: tuple[str, ...] = ()  # points listing any of these paths (stored text)
    tags: tuple[str, ...] = ()  # points carrying every one of these tags (all-of: each narrows)
    text_unread_by: str | None = None  # points whose text was not read by this reader (its version)
    typed_date: TypedDate | None = None  # taken then, or saying so (a date typed in the query)

    def is_empty(self) -> bool:
        return self == SearchFilter()


class ImageStore(ABC):
    """What the rest of the product may ask of Qdrant."""

    mode: str  # "embedded" or "server"
    location: str  # folder or URL (never the API key)
    collection: str
    model_id: str
    dim: int
    visual_model: str | None = None  # the image-only model whose VISUAL vectors it holds, when in use
    visual_dim: int | None = None
    has_words: bool = False  # the collection has the WORDS sparse vector: points can be found by their words

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Payloads of the points that exist among `ids`."""

    @abstractmethod
    def upsert(self, points: Sequence[Point]) -> None:
        """Write whole points: an existing point's vectors and payload are replaced (a point without
        a `visual` vector has none afterwards)."""

    @abstractmethod
    def set_visual(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Give existing points their VISUAL vector, keeping their CLIP vector and payload (back-fill)."""

    def without_visual(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point that has no VISUAL vector yet: (id, payload)."""
        for pid, payload, vector in self.scroll(with_vectors=True, using=VISUAL):
            if vector is None:
                yield pid, payload

    @abstractmethod
    def set_words(self, vectors: Mapping[str, SparseWords | None]) -> None:
        """Give existing points their WORDS vector (None or an empty one: none any more), keeping their
        other vectors and payload."""

    @abstractmethod
    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Replace a point's whole payload, keeping its vectors."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def query(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        using: str | None = None,
    ) -> list[Hit]:
        """Nearest points by cosine similarity, best first (with their vectors if asked).

        `using`: None compares CLIP vectors; VISUAL the image-only ones (points without one are not
        found), and the hits carry those."""

    @abstractmethod
    def fused(
        self,
        parts: Sequence[Nearest],
        fusion: Fusion,
        limit: int,
        offset: int = 0,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """One request: each part a prefetch (with `where` and its own conditions), their scores fused
        (embedder/store/fusion.py), best first. `with_vectors` brings the CLIP vector of each hit."""

    @abstractmethod
    def vector(self, point_id: str, using: str | None = None) -> np.ndarray | None:
        """A point's CLIP vector (or with `using=VISUAL` its visual one); None if it has none."""

    @abstractmethod
    def scroll(
        self, with_vectors: bool = False, where: SearchFilter | None = None, using: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any], np.ndarray | None]]:
        """Every point (that matches `where`), page by page: (id, payload, vector or None); the
        vector is the CLIP one, or with `using=VISUAL` the visual one (None where a point has none)."""

    @abstractmethod
    def newest(self, limit: int, where: SearchFilter | None = None, oldest: bool = False) -> list[Hit]:
        """The `limit` points with the latest `date` first (with `oldest`, the earliest first; browsing
        without a query; scores are 0), ordered inside Qdrant by the field's range index."""

    def facet(self, key: str, where: SearchFilter | None = None) -> dict[str, int]:
        """How many points (that match `where`) hold each value of the keyword field `key`, most first.

        This default reads every payload (no vectors); the Qdrant backends ask the engine's facet API.
        """
        counts: dict[str, int] = {}
        for _, payload, _ in self.scroll(where=where):
            value = payload.get(key)
            for item in dict.fromkeys(value if isinstance(value, list) else [value]):
                if isinstance(item, str):
                    counts[item] = counts.get(item, 0) + 1
        return facet_counts(counts.items())

    @abstractmethod
    def close(self) -> None: ...

    def optimize(self, force: bool = False) -> bool:
        """Build search indexes after a bulk load, where the engine needs it; True if it did work."""
        return False

    def fill_days(self) -> int:
        """Give points stored without the derived `day` field (store/schema.py) theirs, from their stored
        date; how many were given. Stores that derive it on every write and hold none without it: 0."""
        return 0

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def facet_counts(hits: Iterable[tuple[Any, int]]) -> dict[str, int]:
    """Facet hits as {value: count}, most first (then by value), text values only. Edge reports a value
    no point holds any more with a count of 0 (until its segment is rebuilt): left out."""
    counts = {value: int(count) for value, count in hits if isinstance(value, str) and count > 0}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:FACET_LIMIT])


def mismatch_message(collection: str, size: int | None, recorded: str | None, model_id: str, dim: int) -> str:
    """Why a collection is refused, and the two ways out (the same words for every backend)."""
    return (
        f"Collection {collection!r} holds {size}-d vectors made by model {recorded or 'unknown'!r}, but "
        f"EMBEDDER_MODEL is {model_id!r} ({dim}-d). Set EMBEDDER_MODEL back to "
        f"{recorded or 'that model'!r}, or set QDRANT_COLLECTION to a new name to index with this model."
    )


def visual_mismatch_message(collection: str, recorded: str | None, size: int | None, model_id: str, dim: int) -> str:
    """Why a collection is refused for its visual vectors, and the ways out (every backend)."""
    return (
        f"Collection {collection!r} holds {size}-d visual vectors made by {recorded or 'unknown'!r}, but "
        f"EMBEDDER_VISUAL_MODEL is {model_id!r} ({dim}-d). Set EMBEDDER_VISUAL_MODEL back to "
        f"{recorded or 'that model'!r} (or unset it), or set QDRANT_COLLECTION to a new name to index with this one."
    )


def pick_vector(raw: Any, using: str | None) -> np.ndarray | None:
    """One vector out of what Qdrant returns: a plain list (the unnamed vector alone) or {name: list}."""
    if isinstance(raw, dict):
        raw = raw.get(using or "")
    elif using:  # a plain list is the unnamed (CLIP) vector
        raw = None
    return None if raw is None else np.asarray(raw, dtype=np.float32)


def damaged_message(location: str | Path, what: str) -> str:
    """The words for an embedded store whose files cannot be read back (every backend uses them)."""
    return (
        f"The storage folder {location} is damaged ({what}). Restore a backup with `embedder restore "
        "BACKUP --force` (the damaged files are kept aside), or move it away and index your folders again "
        "(nothing else is lost: your images are untouched)."
    )


def damaged(folder: Path, exc: Exception) -> StoreError:
    """`damaged_message` as an error, with the first line of what went wrong."""
    return StoreError(damaged_message(folder, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
