"""Storage: the only code that talks to Qdrant.

- `contract.py`: `ImageStore`, `Point`, `Hit`, `SearchFilter` and the messages every backend shares
- `schema.py`: the payload fields that get an index, declared once
- `lock.py`: `FolderLock`, one process per embedded folder (light: taken before torch loads)
- `edge.py`: the embedded backend on Qdrant Edge (the default, QDRANT_PATH)
- `aside.py` + `graph_child.py`: its search graph built in a child process on a copy, so searches never wait
- `conditions.py`: one neutral description of a filter, which each backend translates
- `policy.py`: when and how the store searches exactly or on a graph, one policy for every backend
- `server.py` + `http.py`: a Qdrant server or cluster through qdrant-client (QDRANT_URL)
- `migrate.py`: converting an old qdrant-client local-mode folder to Edge

Importing this package loads no Qdrant library: `open_store` loads the backend it needs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from embedder.store.contract import (
    SCROLL_PAGE,
    VISUAL,
    Hit,
    ImageStore,
    Point,
    Recorded,
    SearchFilter,
    damaged,
    damaged_message,
    mismatch_message,
    visual_mismatch_message,
)
from embedder.models.ids import expected_model_id
from embedder.store.lock import LOCK_NAME, FolderLock
from embedder.store.schema import KEYWORD_FIELDS, NUMBER_FIELDS, PAYLOAD_INDEXES

if TYPE_CHECKING:
    from embedder.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "KEYWORD_FIELDS", "LOCK_NAME", "NUMBER_FIELDS", "PAYLOAD_INDEXES", "SCROLL_PAGE", "FolderLock", "Hit",
    "ImageStore", "Point", "QdrantStore", "Recorded", "SearchFilter", "VISUAL", "damaged", "damaged_message", "mismatch_message",
    "open_recorded", "open_store", "recorded_model", "visual_mismatch_message",
]


def open_store(
    settings: Settings,
    model_id: str,
    dim: int,
    lock: FolderLock | None = None,
    visual: tuple[str, int] | None = None,
) -> ImageStore:
    """Open the configured storage and make sure its collection fits `model_id` and `dim`.

    `visual`: (model id, dimension) of the image-only model (EMBEDDER_VISUAL_MODEL), whose VISUAL
    vector the collection must hold (a new one is made with it); None: the CLIP vector alone.

    `lock`: the embedded folder's lock when the caller took it already (the CLI takes it first, to
    answer "in use" before loading the model); the store then owns it and releases it on close.
    """
    if settings.qdrant_url:
        from embedder.store.server import QdrantStore

        return QdrantStore.server(settings, model_id, dim, visual)
    from embedder.store import edge  # the embedded engine: Qdrant Edge (see BENCHMARKS.md)

    if edge.edge_available():
        return edge.EdgeStore(settings, model_id, dim, lock=lock, visual=visual)
    from embedder.store.server import QdrantStore

    log.warning("qdrant-edge-py is not installed: falling back to qdrant-client local mode (slow past ~10k images)")
    return QdrantStore.embedded(settings, model_id, dim, lock=lock, visual=visual)


def recorded_model(settings: Settings) -> Recorded:
    """What the configured collection records (model id, vector size), without loading a model or
    creating anything: commands that only read (`info`, `tags`) open the store with it."""
    if settings.qdrant_url:
        from embedder.store.server import recorded_on_server

        return recorded_on_server(settings)
    from embedder.store import edge

    if not edge.edge_available():
        return Recorded(exists=True)  # qdrant-client local mode: only the model can tell
    return edge.recorded_in_folder(settings)


def open_recorded(settings: Settings, lock: FolderLock | None = None) -> ImageStore | None:
    """The configured collection opened with the model and size it records (every check of a
    normal open runs), None when there is none yet; raises `LookupError` when only the model
    EMBEDDER_MODEL names can tell (an unlabelled or unreadable collection, or one another model
    made: open it the usual way). Nothing is created; `lock` is released when there is nothing to open."""
    recorded = recorded_model(settings)
    if not recorded.known or (recorded.exists and recorded.model != expected_model_id(settings.model)):
        raise LookupError(settings.collection)  # another model's collection: the usual open refuses it, saying how
    if not recorded.exists:
        if lock is not None:
            lock.release()
        return None
    assert recorded.model is not None and recorded.dim is not None
    return open_store(settings, recorded.model, recorded.dim, lock)


def __getattr__(name: str) -> Any:
    """`QdrantStore` on first use, so that importing the package stays light."""
    if name == "QdrantStore":
        from embedder.store.server import QdrantStore

        return QdrantStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
