"""Streamlit helpers shared by the Search and Index pages.

One `Engine` per process (`st.cache_resource`), errors shown as messages, small cached
thumbnails, the result grid and the index summary in the sidebar. Nothing here talks to Qdrant
or the model except through the Engine.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st
from PIL import Image, ImageOps

from embedder.config import Settings
from embedder.engine import Engine
from embedder.errors import EmbedderError
from embedder.images import IMAGE_EXTENSIONS, decode
from embedder.indexer import Progress
from embedder.paths import text_to_path
from embedder.search import Result, folder_choices
from embedder.uploads import display_name, upload_path

log = logging.getLogger(__name__)

APP_TITLE = "Image search"
THUMB_SIDE = 256  # thumbnails are square crops of this many pixels
PREVIEW_SIDE = 1600  # the "full image" view: at most this many pixels on the long side
GRID_COLUMNS = 4
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
SETTINGS_HINT = (
    "Settings come from environment variables and `qdrant.env` (EMBEDDER_MODEL, QDRANT_PATH, QDRANT_URL, …); "
    "restart the app after changing them."
)


# --------------------------------------------------------------------------------------------
# Text shown literally


_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def literal(text: str) -> str:
    """`text` escaped so Markdown shows it as typed: no links, emphasis, HTML, emoji codes or maths."""
    flat = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def score_caption(result: Result) -> str:
    """The caption under a thumbnail: the file name, then the cosine score to 3 decimals."""
    return f"{literal(result.name)} · {result.score:.3f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"about {minutes} min {seconds:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


# --------------------------------------------------------------------------------------------
# Settings, the Engine and errors


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


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except Exception as exc:  # noqa: BLE001
        show_error(exc)


def _settings_key(settings: Settings) -> str:
    """What identifies an Engine: every setting, the API key only as a hash."""
    parts = sorted(settings.env().items())
    key = settings.qdrant_api_key or ""
    parts.append(("api-key-sha256", hashlib.sha256(key.encode()).hexdigest() if key else ""))
    return repr(parts)


def _close_engine(engine: Engine) -> None:
    """Evicted or cleared: close the store so an embedded folder's lock is released."""
    try:
        engine.close()
    except Exception:  # noqa: BLE001 - never fail a cache clear over a close
        log.warning("closing the engine failed", exc_info=True)


@st.cache_resource(max_entries=1, on_release=_close_engine, show_spinner="Loading the model and opening the index…")
def _open_engine(key: str, _settings: Settings) -> Engine:
    log.info("opening the engine for %s", key)
    return Engine.open(_settings)


_engine_key_lock = threading.Lock()
_engine_key: str | None = None


def get_engine() -> Engine:
    """The process's one Engine (model + store), opened on first use; on failure a message and stop.

    One per process: the embedded store holds an exclusive lock on its folder, so every page and
    every browser session must share this one. When the settings change (qdrant.env edited), the
    old Engine is closed first, so its folder lock is gone before the new one takes it.
    """
    global _engine_key
    settings = load_settings()
    key = _settings_key(settings)
    with _engine_key_lock:
        if _engine_key not in (None, key):
            _open_engine.clear()  # on_release closes the old store
        _engine_key = key
    with errors_as_messages(settings):
        return _open_engine(key, settings)


def index_info(engine: Engine) -> dict[str, Any]:
    with errors_as_messages(engine.settings):
        return engine.info()


def sidebar_info(engine: Engine, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The index at a glance, in the sidebar of every page; returns `engine.info()`."""
    info = info or index_info(engine)
    with st.sidebar:
        st.metric("Images indexed", f"{info['images']:,}")
        rows = [
            ("Collection", info["collection"]),
            ("Model", f"{info['model']} ({info['dimension']}-d, {info['device']})"),
            ("Storage", f"{info['storage']}: {info['location']}"),
        ]
        st.caption("  \n".join(f"**{name}** · {literal(value)}" for name, value in rows))
    return info


@st.cache_data(max_entries=4, ttl=300, show_spinner=False)
def _folder_choices(_engine: Engine, key: str, count: int) -> list[str]:
    return folder_choices(_engine.store, _engine.settings.upload_dir)


def indexed_folders(engine: Engine, count: int) -> list[str]:
    """Folders to offer in the folder filter: worked out again when the number of images changes."""
    with errors_as_messages(engine.settings):
        return _folder_choices(engine, _settings_key(engine.settings), count)


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
def _thumbnail(path: str, mtime: float, max_pixels: int, side: int) -> bytes | str:
    """JPEG bytes of a `side`×`side` centre crop, or the reason there is none (cached per file version)."""
    try:
        image = decode(text_to_path(path), max_pixels, min_side=side).image
    except EmbedderError as exc:
        return str(exc)
    return _jpeg(ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS), quality=82)


def thumbnail(path: str, max_pixels: int, side: int = THUMB_SIDE) -> bytes | str:
    """A small JPEG for the grid (made once per file version), or a reason it cannot be shown."""
    mtime = _mtime(path)
    if mtime is None:
        return "the file is no longer there"
    return _thumbnail(path, mtime, max_pixels, side)


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


def _size(num_bytes: int | None) -> str:
    if not num_bytes:
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return "?"


@st.dialog("Image", width="large")
def full_image(result: Result, max_pixels: int) -> None:
    """Where the image lives and what is known about it, then the image as large as the dialog allows."""
    payload = result.payload
    st.markdown(f"**{literal(result.name)}** · score {result.score:.3f}")
    st.caption(
        f"{payload.get('width', '?')}×{payload.get('height', '?')} · {literal(payload.get('format', '?'))} · "
        f"{_size(payload.get('bytes'))}"
    )
    paths = payload.get("paths") or [result.path]
    for path in paths:
        st.code(path, language=None, wrap_lines=True)
    picture = preview(result.path, max_pixels)
    if isinstance(picture, bytes):
        st.image(picture)  # its own size, shrunk to the dialog's width when larger
    else:
        st.warning(f"Cannot show this image: {literal(picture)}")


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


def result_grid(
    results: list[Result],
    max_pixels: int,
    actions: Sequence[CardAction] = (),
    columns: int = GRID_COLUMNS,
) -> None:
    """Thumbnails in rows of `columns`, best score first, each with its name, score, View and `actions`."""
    ordered = sorted(results, key=lambda r: r.score, reverse=True)
    for row_start in range(0, len(ordered), columns):
        cells = st.columns(columns, gap="medium")
        for cell, (rank, result) in zip(cells, enumerate(ordered[row_start : row_start + columns], row_start)):
            with cell, st.container(border=True):
                picture = thumbnail(result.path, max_pixels)
                if isinstance(picture, bytes):
                    st.image(picture, width="stretch")
                else:
                    st.warning(f"No preview: {literal(picture)}", icon=":material/broken_image:")
                st.caption(score_caption(result))
                with st.container(horizontal=True, gap="small"):
                    view = st.button(
                        "View", key=f"view-{rank}-{result.id}", icon=":material/open_in_full:", type="tertiary"
                    )
                    if view:
                        full_image(result, max_pixels)
                    for action in actions:
                        st.button(
                            action.label,
                            key=f"{action.key}-{rank}-{result.id}",
                            icon=action.icon,
                            help=action.help,
                            on_click=action.on_click,
                            args=(result,),
                            type="tertiary",
                        )


# --------------------------------------------------------------------------------------------
# Indexing helpers


class ProgressBar:
    """An `on_progress` callback drawing `st.progress` with count, images/s and time left."""

    def __init__(self, label: str, min_interval_s: float = 0.15) -> None:
        self.label = label
        self.min_interval_s = min_interval_s
        self.bar = st.progress(0.0, text=f"{literal(label)}: starting…")
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.done < p.total and now - self._last < self.min_interval_s:
            return
        self._last = now
        fraction = min(1.0, p.done / p.total) if p.total else 1.0
        self.bar.progress(
            fraction,
            text=(
                f"{literal(self.label)}: {p.done:,} of {p.total:,} files · {p.images_per_s:.1f} images/s · "
                f"{duration(p.eta_s) if p.done < p.total else 'done'}"
            ),
        )


def upload_names(uploads: list[tuple[str, bytes]], upload_dir: Path) -> dict[str, str]:
    """Where `index_uploads` will keep each upload (content-addressed) → the name the person gave it."""
    names: dict[str, str] = {}
    for raw_name, data in uploads:
        name = display_name(raw_name)
        names.setdefault(os.path.abspath(upload_path(upload_dir, name, data)), name)
    return names
