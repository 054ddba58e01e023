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
    SearchFilter,
    damaged,
    damaged_message,
    mismatch_message,
    visual_mismatch_message,
)
from embedder.store.lock import LOCK_NAME, FolderLock
from embedder.store.schema import KEYWORD_FIELDS, NUMBER_FIELDS, PAYLOAD_INDEXES

if TYPE_CHECKING:
    from embedder.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "KEYWORD_FIELDS", "LOCK_NAME", "NUMBER_FIELDS", "PAYLOAD_INDEXES", "SCROLL_PAGE", "FolderLock", "Hit",
    "ImageStore", "Point", "QdrantStore", "SearchFilter", "VISUAL", "damaged", "damaged_message", "mismatch_message",
    "open_store", "visual_mismatch_message",
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


def __getattr__(name: str) -> Any:
    """`QdrantStore` on first use, so that importing the package stays light."""
    if name == "QdrantStore":
        from embedder.store.server import QdrantStore

        return QdrantStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
