"""What the rest of the product may ask of a store, whichever backend holds the images.

`ImageStore` is the contract both backends (and the in-memory one the tests use) keep; `Point`,
`Hit` and `SearchFilter` are what goes in and out. Nothing here imports a Qdrant library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedder.errors import StoreError

SCROLL_PAGE = 256


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # when asked for


@dataclass(frozen=True)
class SearchFilter:
    """Conditions on the payload, applied inside Qdrant. Empty fields mean no condition."""

    folder: str | None = None  # subtree: matches images in this folder or below
    formats: tuple[str, ...] = ()  # e.g. ("JPEG", "PNG")
    date_from: float | None = None  # date taken (or mtime), UTC seconds
    date_to: float | None = None
    min_width: int | None = None
    min_height: int | None = None
    exclude_ids: tuple[str, ...] = field(default=())
    paths: tuple[str, ...] = ()  # points listing any of these paths (stored text)

    def is_empty(self) -> bool:
        return self == SearchFilter()


class ImageStore(ABC):
    """What the rest of the product may ask of Qdrant."""

    mode: str  # "embedded" or "server"
    location: str  # folder or URL (never the API key)
    collection: str
    model_id: str
    dim: int

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Payloads of the points that exist among `ids`."""

    @abstractmethod
    def upsert(self, points: Sequence[Point]) -> None: ...

    @abstractmethod
    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Replace a point's whole payload, keeping its vector."""

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
    ) -> list[Hit]:
        """Nearest points by cosine similarity, best first (with their vectors if asked)."""

    @abstractmethod
    def vector(self, point_id: str) -> np.ndarray | None: ...

    @abstractmethod
    def scroll(
        self, with_vectors: bool = False, where: SearchFilter | None = None
    ) -> Iterator[tuple[str, dict[str, Any], np.ndarray | None]]:
        """Every point (that matches `where`), page by page: (id, payload, vector or None)."""

    @abstractmethod
    def newest(self, limit: int, where: SearchFilter | None = None) -> list[Hit]:
        """The `limit` points with the latest `date` first (browsing without a query; scores are 0),
        ordered inside Qdrant by the field's range index."""

    @abstractmethod
    def close(self) -> None: ...

    def optimize(self, force: bool = False) -> bool:
        """Build search indexes after a bulk load, where the engine needs it; True if it did work."""
        return False

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mismatch_message(collection: str, size: int | None, recorded: str | None, model_id: str, dim: int) -> str:
    """Why a collection is refused, and the two ways out (the same words for every backend)."""
    return (
        f"Collection {collection!r} holds {size}-d vectors made by model {recorded or 'unknown'!r}, but "
        f"EMBEDDER_MODEL is {model_id!r} ({dim}-d). Set EMBEDDER_MODEL back to "
        f"{recorded or 'that model'!r}, or set QDRANT_COLLECTION to a new name to index with this model."
    )


def damaged_message(location: str | Path, what: str) -> str:
    """The words for an embedded store whose files cannot be read back (every backend uses them)."""
    return (
        f"The storage folder {location} is damaged ({what}). Restore it from a backup, or move it "
        "away and index your folders again (nothing else is lost: your images are untouched)."
    )


def damaged(folder: Path, exc: Exception) -> StoreError:
    """`damaged_message` as an error, with the first line of what went wrong."""
    return StoreError(damaged_message(folder, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
