"""Filters as people type them (`jpg`, a folder, inclusive dates, tags) → the store's `SearchFilter`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING
from pathlib import Path

from embedder.errors import QueryError
from embedder.media.formats import RAW, RAW_FORMATS
from embedder.media.formats import file_types as stored_types
from embedder.store.contract import ImageStore, SearchFilter, TypedDate
from embedder.words import word_spans

if TYPE_CHECKING:
    from embedder.query.dates import DateRange


EPOCH = date(1970, 1, 1)
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF", "HIF": "HEIF"}
# Phones write JPEGs with extra pictures inside, which Pillow calls MPO: to people they are JPEGs. Each
# camera RAW is stored as its own format (NEF, CR3, DNG, …); RAW stands for all of them.
FORMAT_FAMILIES = {"JPEG": ("JPEG", "MPO"), RAW: tuple(sorted(set(RAW_FORMATS.values())))}


def file_types() -> list[str]:
    """The file types people can filter by: one per format the indexer reads, RAW for every camera format."""
    return stored_types()


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
        day_from=day_number(after) if after else None,
        day_to=day_number(before) if before else None,
        min_width=min_width or None,
        min_height=min_height or None,
        tags=tuple(dict.fromkeys(t.strip() for t in tags if t.strip())),
    )


def within(where: SearchFilter, dates: DateRange) -> SearchFilter:
    """`where` narrowed to the pictures taken on the days of `dates`, or whose words say one of them
    as typed (every word of it, in any order: "14.07.2023" says 2023-07-14); `where`'s own dates still hold."""
    said = tuple(tuple((span.word,) for span in word_spans(phrase)) for phrase in dates.said)
    return replace(where, typed_date=TypedDate(day_number(dates.start), day_number(dates.end), said))


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


def day_number(day: date) -> int:
    """The stored day number of a calendar day on the camera's clock (days since 1970-01-01)."""
    return (day - EPOCH).days
