"""What `embedder info` and the pages say about the library: the store, the model, every path in use.

It is read from the settings and the open store, so `info` answers without loading a model (or
importing torch): the model is the one EMBEDDER_MODEL names, the vector size the one the
collection records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedder.config import Settings
from embedder.models.hub import looks_like_path
from embedder.models.ids import HF_PREFIX, expected_model_id
from embedder.store import ImageStore


def describe(
    settings: Settings,
    store: ImageStore | None,
    model: str | None = None,
    dim: int | None = None,
    device: str | None = None,
    watching: Sequence[str] = (),
) -> dict[str, Any]:
    """The library at a glance. `store` None: no collection yet (nothing is indexed). `model`,
    `dim`, `device`: the loaded model's, else what the settings and the collection say.
    `watching`: the folders this process watches now (the app's watcher)."""
    model = model or _configured_model(settings.model)
    info: dict[str, Any] = {
        "storage": store.mode if store is not None else settings.storage_mode,
        "location": store.location if store is not None else settings.storage_location,
        "collection": store.collection if store is not None else settings.collection,
        "model": model,
        "dimension": dim or (store.dim if store is not None else "none yet"),
        "device": device or (settings.device if settings.device != "auto" else "auto: picked when the model loads"),
        "images": store.count() if store is not None else 0,
        "settings": str(settings.env_file or "none: defaults and the environment"),
        "uploads": str(settings.upload_dir),
        "thumbnails": f"{settings.thumb_dir} (at most {settings.thumb_cache_mb:,} MB, THUMB_CACHE_MB)"
        if settings.thumb_cache_mb
        else "none (THUMB_CACHE_MB=0)",
        "image folders": ", ".join(str(p) for p in settings.image_dirs) or "none (IMAGE_DIRS)",
        "watched": _watched(settings),
    }
    if watching:
        info["watching"] = ", ".join(watching)
    return info


def _watched(settings: Settings) -> str:
    """Which folders the app watches (IMAGE_DIRS with WATCH on), and how."""
    if not settings.image_dirs:
        return "none: IMAGE_DIRS is empty"
    if not settings.watch:
        return "none (WATCH=false)"
    how = f"polling every {settings.watch_poll_s:g} s" if settings.watch_poll_s > 0 else "file events"
    return f"IMAGE_DIRS, by the app ({how})"


def _configured_model(setting: str) -> str:
    """The model EMBEDDER_MODEL names, by the id its vectors are recorded under; a model folder
    that does not exist says so (loading it would fail)."""
    folder = setting.removeprefix(HF_PREFIX)
    if looks_like_path(folder) and not Path(folder).expanduser().is_dir():
        return f"{setting} (no such folder: set EMBEDDER_MODEL to a model folder or name)"
    return expected_model_id(setting)
