"""The product's working parts, opened once and wired together: model, store, indexer, searcher."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from embedder.config import Settings
from embedder.encoder import Encoder
from embedder.indexer import Indexer
from embedder.search import Searcher
from embedder.store import ImageStore, open_store

log = logging.getLogger(__name__)


@dataclass
class Engine:
    settings: Settings
    encoder: Encoder
    store: ImageStore
    indexer: Indexer
    searcher: Searcher

    @classmethod
    def open(cls, settings: Settings, shard: tuple[int, int] | None = None) -> Engine:
        """Load the model, then open the store for its dimension (either may raise an EmbedderError)."""
        encoder = Encoder(settings.model, settings.device, settings.batch_size)
        store = open_store(settings, encoder.model_id, encoder.dim)
        indexer = Indexer(
            encoder, store, settings.max_image_pixels, settings.workers, shard, settings.max_upload_mb * 2**20
        )
        return cls(settings, encoder, store, indexer, Searcher(encoder, store))

    def info(self) -> dict[str, Any]:
        """What a person wants to know about the index."""
        return {
            "storage": self.store.mode,
            "location": self.store.location,
            "collection": self.store.collection,
            "model": self.encoder.model_id,
            "dimension": self.encoder.dim,
            "device": self.encoder.device,
            "images": self.store.count(),
        }

    def close(self) -> None:
        self.store.close()
