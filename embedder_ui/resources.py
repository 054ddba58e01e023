"""The process's one Engine and its background jobs, shared by every page and browser session.

The Engine (model + store) is a cached resource; so is its job runner, which indexes in a thread of
its own: leaving a page, reloading it or closing the browser does not stop a run. With WATCH on, the
folders in IMAGE_DIRS are watched from the moment the app opens the store.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from embedder.config import Settings
from embedder.engine import Engine
from embedder.query.filters import folder_choices
from embedder.indexing.tags import tag_counts
from embedder_ui.format import job_progress, job_title, literal
from embedder_ui.widgets import errors_as_messages, show_error

log = logging.getLogger(__name__)

STATUS_REFRESH_S = 2.0
_INDEXING = "sidebar_saw_a_job"  # the id of the running job this session's sidebar showed last (None: none)


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
    engine = Engine.open(_settings)
    try:
        engine.jobs.start()  # picks up jobs a previous run of the app left unfinished
        if _settings.watch and _settings.image_dirs:
            engine.watch(_settings.image_dirs)
    except Exception:
        engine.close()
        raise
    return engine


_engine_key_lock = threading.Lock()
_engine_key: str | None = None


def get_engine(loading: DeltaGenerator | None = None) -> Engine:
    """The process's one Engine (model + store), opened on first use; on failure a message and stop.
    `loading` (a "Loading…" placeholder) is cleared either way, so an error is never shown beside it.

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
    try:
        engine = _open_engine(key, settings)
    except Exception as exc:  # noqa: BLE001 - every failure is a message
        if loading is not None:
            loading.empty()  # before the message: nothing drawn after st.stop reaches the browser
        show_error(exc, settings)
    if loading is not None:
        loading.empty()
    return engine


def index_info(engine: Engine) -> dict[str, Any]:
    with errors_as_messages(engine.settings):
        return engine.info()


def sidebar_info(engine: Engine, info: dict[str, Any] | None = None, jobs: bool = True) -> dict[str, Any]:
    """The index at a glance, in the sidebar of every page (with the running job, if `jobs`);
    returns `engine.info()`."""
    info = info or index_info(engine)
    with st.sidebar:
        st.metric("Images indexed", f"{info['images']:,}")
        rows = [
            ("Collection", info["collection"]),
            ("Model", f"{info['model']} ({info['dimension']}-d, {info['device']})"),
            ("Storage", f"{info['storage']}: {info['location']}"),
        ]
        st.caption("  \n".join(f"**{name}** · {literal(value)}" for name, value in rows))
        if jobs:
            # Last in the sidebar: a fragment that redraws itself every few seconds while a full rerun
            # draws the page can leave the elements after it at shifted places (the count went missing).
            _job_status(engine)
    return info


@st.fragment(run_every=STATUS_REFRESH_S)
def _job_status(engine: Engine) -> None:
    """A line about the running job, redrawn on its own while the person reads the page."""
    job = engine.jobs.active()
    seen = st.session_state.get(_INDEXING)
    if seen is not None and seen != (job.id if job else None):
        # the job this sidebar showed has finished (another, such as the text pass that follows an
        # index, may have started): the page's counts (and results) are the whole page's
        st.session_state[_INDEXING] = job.id if job else None
        st.rerun()
    if job is not None:
        st.session_state[_INDEXING] = job.id
        st.caption(f":material/sync: {job_title(job)} · {literal(job_progress(job))}")


@st.cache_data(max_entries=4, ttl=300, show_spinner=False)
def _folder_choices(_engine: Engine, key: str, count: int) -> list[str]:
    return folder_choices(_engine.store, _engine.settings.upload_dir)


def indexed_folders(engine: Engine, count: int) -> list[str]:
    """Folders to offer in the folder filter: worked out again when the number of images changes."""
    with errors_as_messages(engine.settings):
        return _folder_choices(engine, _settings_key(engine.settings), count)


@st.cache_data(max_entries=4, ttl=300, show_spinner=False)
def _tag_counts(_engine: Engine, key: str, count: int) -> dict[str, int]:
    return tag_counts(_engine.store)


def library_tags(engine: Engine, count: int) -> dict[str, int]:
    """Every tag in the library with how many images carry it, most first: worked out again when the
    number of images changes (or after five minutes, for a re-tagged library)."""
    with errors_as_messages(engine.settings):
        return _tag_counts(engine, _settings_key(engine.settings), count)
