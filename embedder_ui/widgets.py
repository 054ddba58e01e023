"""Widgets the pages share: errors as messages, thumbnails, the viewer, the result grid.

Nothing here talks to Qdrant or the model; `resources.py` holds the process's Engine, and
`format.py` the text helpers (user text is always shown through `format.literal`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import streamlit as st
from PIL import Image

from embedder.config import Settings
from embedder.errors import EmbedderError, ImageError
from embedder.media.images import CHANGED, IMAGE_EXTENSIONS, decode
from embedder.jobs.runner import Job
from embedder.paths import text_to_path
from embedder.query.pager import Result
from embedder.media.thumbnails import BACKGROUND as THUMB_BACKGROUND
from embedder.media.thumbnails import SIDE as THUMB_SIDE
from embedder.media.thumbnails import ThumbnailCache, letterboxed, thumbnail_bytes
from embedder.indexing.tags import tag_list
from embedder_ui.format import (
    file_size, is_upload, literal, marked_line, score_caption, short_locations, tag_caption, when_taken, where_caption,
    why_caption,
)

log = logging.getLogger(__name__)

APP_TITLE = "Image search"
# The browser tab's icon, from the app itself: a Material symbol or an emoji as the page icon makes
# the browser fetch an SVG from a public host on every page load.
APP_ICON = Path(__file__).with_name("icon.png")
PREVIEW_SIDE = 1600  # the "full image" view: at most this many pixels on the long side
GRID_COLUMNS = 4
CARD_WIDTH = 170  # px: two result cards side by side at phone width (400 px less margins), more on larger screens
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
SETTINGS_HINT = (
    "Settings come from environment variables and `qdrant.env` (EMBEDDER_MODEL, QDRANT_PATH, QDRANT_URL, …); "
    "restart the app after changing them."
)


# --------------------------------------------------------------------------------------------
# The page, settings, the Engine and errors


def page_config(title: str) -> None:
    """The page's title, its icon (served by the app) and a menu without links to other sites."""
    st.set_page_config(
        page_title=title, page_icon=str(APP_ICON), layout="wide",
        menu_items={"Get help": None, "Report a bug": None},  # both link to streamlit.io and GitHub
    )


def redact(message: str, settings: Settings | None) -> str:
    """Belt and braces: the API key never reaches the page, even if a message carried it."""
    key = settings.qdrant_api_key if settings else None
    return message.replace(key, "•••") if key else message


def show_error(exc: BaseException, settings: Settings | None = None) -> NoReturn:
    """Show an error as a message (never a traceback) and end this run of the page."""
    if isinstance(exc, EmbedderError):
        st.error(literal(redact(str(exc), settings)), icon=":material/error:")
        st.caption(SETTINGS_HINT)
    else:
        log.error("unexpected error in the app", exc_info=exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        st.error(
            literal(redact(f"Something went wrong: {type(exc).__name__}{': ' + first if first else ''}. "
                           "The details are in the app's log.", settings)),
            icon=":material/error:",
        )
    st.stop()


@contextmanager
def errors_as_messages(settings: Settings | None = None) -> Iterator[None]:
    """Around any use of the Engine: its errors become a message and the page stops there."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - st.stop/st.rerun are BaseExceptions and pass through
        show_error(exc, settings)


def threshold_slider(key: str, settings: Settings, disabled: bool = False) -> float:
    """The near-duplicate similarity, DUPLICATE_THRESHOLD by default (Search and Duplicates share it)."""
    return st.slider(
        "Near-duplicate similarity", 0.80, 1.0, settings.duplicate_threshold, 0.001, format="%.3f",
        key=key, disabled=disabled, persist_state="session",
        help="Images at least this similar (cosine) count as near-duplicates. DUPLICATE_THRESHOLD sets the default.",
    )


# --------------------------------------------------------------------------------------------
# Thumbnails and previews


def _mtime(path: str) -> float | None:
    try:
        return os.stat(text_to_path(path)).st_mtime
    except OSError:
        return None


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


@st.cache_data(max_entries=2000, show_spinner=False)
def _thumbnail(path: str, mtime: float, max_pixels: int, side: int, sha256: str | None, folder: str | None) -> bytes | str:
    """JPEG bytes of a `side`×`side` square holding the whole picture, or the reason there is none
    (cached per file version in memory, and by content hash in THUMB_DIR)."""
    cache = _disk_caches.get(folder) if folder else None
    if cache is not None and sha256 and side == cache.side:
        try:  # only the bytes that were indexed are stored under their hash
            return cache.get_or_make(sha256, lambda: decode(text_to_path(path), max_pixels, side, sha256=sha256).image)
        except ImageError as exc:
            if str(exc) != CHANGED:
                return str(exc)
        except EmbedderError as exc:
            return str(exc)
    try:  # no hash, or the file holds other bytes now: its picture as it is, in memory only
        return thumbnail_bytes(decode(text_to_path(path), max_pixels, min_side=side).image, side)
    except EmbedderError as exc:
        return str(exc)


_disk_caches: dict[str, ThumbnailCache] = {}


def thumbnail(
    path: str, max_pixels: int, side: int = THUMB_SIDE, sha256: str | None = None, cache: ThumbnailCache | None = None
) -> bytes | str:
    """A small JPEG for the grid (made once per file version; with the image's `sha256` and a
    `cache`, kept on disk too), or a reason it cannot be shown."""
    mtime = _mtime(path)
    if mtime is None:
        return "the file is no longer there"
    folder = None
    if cache is not None:
        folder = str(cache.folder)
        _disk_caches[folder] = cache  # st.cache_data hashes arguments: the cache goes by its folder
    return _thumbnail(path, mtime, max_pixels, side, sha256, folder)


@st.cache_data(max_entries=32, show_spinner=False)
def _preview(path: str, mtime: float, max_pixels: int, side: int) -> bytes | str:
    try:
        image = decode(text_to_path(path), max_pixels, min_side=side).image
    except EmbedderError as exc:
        return str(exc)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return _jpeg(image, quality=90)


def preview(path: str, max_pixels: int, side: int = PREVIEW_SIDE) -> bytes | str:
    """The whole image, at most `side` pixels on its long side, for the "full image" view."""
    mtime = _mtime(path)
    if mtime is None:
        return "the file is no longer there"
    return _preview(path, mtime, max_pixels, side)


VIEWER = "viewer_rank"  # the rank of the result the viewer shows; absent while it is closed
DOWNLOAD_MAX_BYTES = 200 * 2**20  # larger originals are not offered for download (read into memory)


def _open_viewer(rank: int) -> None:
    st.session_state[VIEWER] = rank


def _step_viewer(step: int, count: int) -> None:
    """One result on (or back), from the one shown now: a second press sent before the page has
    redrawn still moves on, where a button carrying the rank it was drawn with would repeat it."""
    st.session_state[VIEWER] = (st.session_state.get(VIEWER, 0) + step) % count


def _close_viewer() -> None:
    st.session_state.pop(VIEWER, None)


def _original(path: str) -> bytes | None:
    try:
        if os.path.getsize(path) <= DOWNLOAD_MAX_BYTES:
            return Path(path).read_bytes()
    except OSError:
        pass
    return None


@st.dialog("Image", width="large", on_dismiss=_close_viewer)
def viewer(
    results: Sequence[Result], max_pixels: int, upload_dir: Path | None, forget: Callable[[Result], None] | None
) -> None:
    """One result large, with what is known about it; ← → step through the results (from the last
    round to the first); the original to download; and, for an image whose files are gone, a way to
    forget it."""
    rank = min(max(st.session_state.get(VIEWER, 0), 0), len(results) - 1)
    result = results[rank]
    payload = result.payload
    back, where, forward = st.columns([1, 4, 1], vertical_alignment="center")
    # The ends wrap around rather than disable a button: a button disabled under the focus drops the
    # focus out of the dialog, and Escape then no longer closes it.
    alone = len(results) == 1
    back.button("Previous", key="viewer-previous", icon=":material/chevron_left:", shortcut="Left",
                disabled=alone, on_click=_step_viewer, args=(-1, len(results)), width="stretch")
    where.markdown(f"**{literal(result.name)}** · {rank + 1} of {len(results)} · score {result.score:.3f}")
    forward.button("Next", key="viewer-next", icon=":material/chevron_right:", shortcut="Right",
                   disabled=alone, on_click=_step_viewer, args=(1, len(results)), width="stretch")
    facts = [when_taken(payload), f"{payload.get('width', '?')}×{payload.get('height', '?')}",
             literal(payload.get("format", "?")), file_size(payload.get("bytes"))]
    st.caption(" · ".join(f for f in facts if f))
    tags = tag_caption(payload, limit=len(tag_list(payload)))
    if tags:
        st.caption(tags)
    paths = payload.get("paths") or [result.path]
    for path in paths:
        if is_upload(path, upload_dir):
            st.caption(f"Uploaded as {literal(', '.join(payload.get('names') or [result.name]))}")
        else:
            st.code(path, language=None, wrap_lines=True)
    present = next((p for p in paths if os.path.exists(p)), None)
    picture = preview(present, max_pixels) if present else "the file is no longer there"
    if isinstance(picture, bytes):
        st.image(picture)  # its own size, shrunk to the dialog's width when larger
        original = _original(present)
        if original is not None:
            st.download_button("Download the original", original, file_name=result.name, key="viewer-download",
                               icon=":material/download:", on_click="ignore")
    else:
        st.warning(f"Cannot show this image: {literal(picture)}", icon=":material/broken_image:")
    if present is None and forget is not None:
        st.button("Forget this image", key="viewer-forget", icon=":material/delete_sweep:",
                  help="Remove it from the index (its files are gone; nothing on disk is touched).",
                  on_click=_forget_and_close, args=(forget, result))


def _forget_and_close(forget: Callable[[Result], None], result: Result) -> None:
    forget(result)
    _close_viewer()


# --------------------------------------------------------------------------------------------
# The result grid


@dataclass(frozen=True)
class CardAction:
    """A button under each result: `key` names it (`{key}-{rank}-{id}`), `on_click` gets the result."""

    key: str
    label: str
    icon: str
    help: str
    on_click: Callable[[Result], None]


def _card(
    result: Result, rank: int, max_pixels: int, actions: Sequence[CardAction], where: str, scored: bool,
    thumbnails: ThumbnailCache | None = None,
) -> None:
    """One result: thumbnail, name (and score), where it is, View and the actions."""
    picture = thumbnail(result.path, max_pixels, sha256=result.payload.get("sha256"), cache=thumbnails)
    if isinstance(picture, bytes):
        st.image(picture, width="stretch")
    else:
        st.warning(f"No preview: {literal(picture)}", icon=":material/broken_image:")
    st.caption(score_caption(result) if scored else literal(result.name))
    if result.matched:
        st.caption(f":material/check: {why_caption(result)}", help="Which parts of the picture matched your query")
    if result.line is not None:
        st.caption(marked_line(result.line, result.marks))  # text read in the picture: literal, its words bold
    st.caption(where)
    tags = tag_caption(result.payload)
    if tags:
        st.caption(tags)
    with st.container(horizontal=True, gap="small"):
        st.button(
            "View", key=f"view-{rank}-{result.id}", icon=":material/open_in_full:", type="tertiary",
            on_click=_open_viewer, args=(rank,),
        )
        for action in actions:
            st.button(
                action.label, key=f"{action.key}-{rank}-{result.id}", icon=action.icon, help=action.help,
                on_click=action.on_click, args=(result,), type="tertiary",
            )


def result_grid(
    results: list[Result],
    max_pixels: int,
    actions: Sequence[CardAction] = (),
    upload_dir: Path | None = None,
    forget: Callable[[Result], None] | None = None,
    heading: Callable[[Result], str] | None = None,
    notes: dict[str, str] | None = None,
    thumbnails: ThumbnailCache | None = None,
    keep_order: bool = False,
) -> None:
    """Thumbnails in rows that wrap (as many as fit the screen), each with its name, score, where it
    is (uploads by the name they were sent as), View (the viewer, which can `forget` a gone image)
    and `actions`. `thumbnails`: the disk cache (THUMB_DIR) the pictures are kept in.

    Best score first; with `heading` (browsing), in the order given, a heading wherever it changes
    and no score; with `keep_order`, in the order given too (a search sorted by date). `notes` adds a
    word to a result's card (how close a match it is)."""
    in_order = heading is not None or keep_order
    ordered = list(results) if in_order else sorted(results, key=lambda r: r.score, reverse=True)
    locations = dict(zip((r.id for r in ordered), short_locations([r.path for r in ordered])))
    sections: list[tuple[str, list[tuple[int, Result]]]] = []
    for rank, result in enumerate(ordered):
        title = heading(result) if heading else ""
        if not sections or sections[-1][0] != title:
            sections.append((title, []))
        sections[-1][1].append((rank, result))
    for title, ranked in sections:
        if title:
            st.subheader(title, anchor=False, divider="gray")
        # Cards of a fixed width in a row that wraps: as many as fit, two side by side on a phone.
        with st.container(horizontal=True, gap="small", key=f"result-grid-{title or 'all'}"):
            for rank, result in ranked:
                with st.container(border=True, width=CARD_WIDTH):
                    where = where_caption(result, locations[result.id], upload_dir)
                    if notes and result.id in notes:
                        where = f"{notes[result.id]} · {where}"
                    _card(result, rank, max_pixels, actions, where, scored=heading is None, thumbnails=thumbnails)
    if VIEWER in st.session_state and ordered:
        viewer(ordered, max_pixels, upload_dir, forget)


# --------------------------------------------------------------------------------------------
# Background jobs


def job_fraction(job: Job) -> float:
    p = job.progress
    return min(1.0, p.done / p.total) if p and p.total else 0.0
