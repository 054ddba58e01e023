"""Draft captions for a folder's pictures, from what the index knows about each one, for a person to
correct: the label CSV that `eval` and `tune` read (`embedder label`, the Label page).

A picture's drafts, each one caption (a row of the CSV): its tags (`dog, beach`: the labels of the
tag vocabulary the model sees in it), the text recognised in it (the payload's `text`, when the
index read any), and the words of its file name (`rex-at-the-beach-03.jpg` → `rex at the beach`;
camera names such as `IMG_0001` give none). Drafts with the same words are kept once (case, spacing
and punctuation aside). A picture the index does not know yet is drafted from its name alone; one with
nothing to go on gets an empty caption to fill in. No torch: the index is read, nothing is encoded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedder.errors import DatasetError
from embedder.evaluation.datasets import CAPTION_SEPARATOR, LabelRow, check_spellings, normalised
from embedder.media.excludes import Excludes
from embedder.media.images import discover
from embedder.paths import path_to_text
from embedder.store import ImageStore, SearchFilter

log = logging.getLogger(__name__)

# Words cameras, phones and apps put in file names: they describe no picture.
CAMERA_WORDS = frozenset(
    "img image dsc dscn dscf dcim pxl mvimg vid pict pic photo screenshot scan edited copy final "
    "burst cover portrait hdr pano wa jpg jpeg png heic raw".split()
)
MAX_TAGS = 3  # tags in a drafted caption: the most probable first
MAX_TEXT_WORDS = 8  # of the recognised text: a query is short
_WORD = re.compile(r"[^\W\d_]+")  # letters of any script, no digits or underscores


@dataclass(frozen=True)
class Draft:
    """One picture and its drafted captions (possibly none); `indexed`: whether the index knew it."""

    path: str
    captions: tuple[str, ...]
    indexed: bool


def name_caption(path: str | Path) -> str:
    """The words of a file name, camera words and numbers left out: `Rex_at-the.beach 03.jpg` → `Rex at the beach`."""
    words = [w for w in _WORD.findall(Path(path).stem) if len(w) > 1 and w.casefold() not in CAMERA_WORDS]
    return " ".join(words)


def text_caption(text: Any) -> str:
    """Recognised text as a caption: its first MAX_TEXT_WORDS words, spaces collapsed ('' if none)."""
    if not isinstance(text, str):
        return ""
    return " ".join(text.split()[:MAX_TEXT_WORDS])


def tags_caption(tags: Any) -> str:
    """The first MAX_TAGS tags, most probable first: `dog, beach` ('' if none)."""
    if not isinstance(tags, list):
        return ""
    return ", ".join(" ".join(t.split()) for t in tags[:MAX_TAGS] if isinstance(t, str) and t.strip())


def draft_captions(path: str | Path, payload: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A picture's drafts (tags, recognised text, file name), each kept once."""
    payload = payload or {}
    drafts = (tags_caption(payload.get("tags")), text_caption(payload.get("text")), name_caption(path))
    unique: dict[str, str] = {}
    for caption in drafts:
        caption = caption.replace("|", " ").strip()  # `|` separates captions in the CSV
        if caption:  # the same words (case and punctuation aside) are one draft
            unique.setdefault(" ".join(re.findall(r"\w+", normalised(caption))), caption)
    return tuple(unique.values())


def draft_labels(folder: Path, store: ImageStore | None, exclude: Excludes | None = None) -> list[Draft]:
    """Every picture under `folder` (as `index` would find it) with its drafted captions; `store`:
    the index to read tags and text from (None: none yet)."""
    folder = folder.expanduser().absolute()
    known = _payloads(store, folder) if store is not None else {}
    drafts = []
    for path in discover([folder], exclude=exclude):
        payload = known.get(path_to_text(path))
        drafts.append(Draft(str(path), draft_captions(path, payload), payload is not None))
    log.info("drafted captions for %d pictures under %s (%d known to the index)",
             len(drafts), folder, sum(d.indexed for d in drafts))
    return drafts


def _payloads(store: ImageStore, folder: Path) -> dict[str, Mapping[str, Any]]:
    """Stored path → payload, for every image the index holds under `folder`."""
    found: dict[str, Mapping[str, Any]] = {}
    for _, payload, _ in store.scroll(where=SearchFilter(folder=path_to_text(folder))):
        for stored in payload.get("paths", []):
            found[stored] = payload
    return found


def draft_rows(drafts: Iterable[Draft]) -> list[LabelRow]:
    """The label CSV's rows: one per picture and caption, an empty caption for a picture with none."""
    return [LabelRow(d.path, caption) for d in drafts for caption in (d.captions or ("",))]


@dataclass(frozen=True)
class Edited:
    """One picture as a person left it on the Label page: its captions, one a line, and the group of
    paraphrases they belong to ('' for none)."""

    path: str
    captions: str
    group: str = ""


def edited_rows(pictures: Sequence[Edited], source: Path) -> list[LabelRow]:
    """The label CSV's rows for what a person typed (`source`: the CSV, named in errors): each line a
    caption (spaces collapsed, empty lines dropped), a picture with none an empty caption. The same
    DatasetError `eval` would give later comes now, before anything is written: a caption holding
    the separator, a caption in two groups, labels that differ only in case or spacing."""
    rows: list[LabelRow] = []
    groups: dict[str, str] = {}
    for picture in pictures:
        group = " ".join(picture.group.split())
        captions = list(dict.fromkeys(" ".join(line.split()) for line in picture.captions.splitlines() if line.strip()))
        for caption in captions:
            if CAPTION_SEPARATOR in caption:
                raise DatasetError(
                    f"{Path(picture.path).name}: the caption {caption!r} holds {CAPTION_SEPARATOR!r}; "
                    "put each caption on a line of its own instead"
                )
            if group and groups.setdefault(caption, group) != group:
                raise DatasetError(
                    f"{Path(picture.path).name}: the caption {caption!r} is in group {groups[caption]!r} "
                    f"already, not {group!r}; a caption paraphrases one group of captions"
                )
        rows += [LabelRow(picture.path, caption, group) for caption in captions or [""]]
    check_spellings(source, {row.caption for row in rows if row.caption})
    return rows
