"""The product's working parts, opened once and wired together: model, store, indexer, searcher, jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.models import load_encoder
from embedder.media.excludes import Excludes
from embedder.indexing.indexer import Indexer
from embedder.jobs.runner import Job, JobRunner
from embedder.query.searcher import Searcher
from embedder.store import FolderLock, ImageStore, open_store
from embedder.models import load_visual
from embedder.media.thumbnails import shared_cache
from embedder.indexing.tags import open_tagger

log = logging.getLogger(__name__)


@dataclass
class Engine:
    settings: Settings
    encoder: Encoder
    store: ImageStore
    indexer: Indexer
    searcher: Searcher
    jobs: JobRunner  # background indexing for this store; started by whoever wants it (the app, `watch`)
    watcher: Any = field(default=None)  # a FolderWatcher once `watch` is called
    visual: Encoder | None = None  # the image-only model (EMBEDDER_VISUAL_MODEL), when set

    @classmethod
    def open(
        cls,
        settings: Settings,
        shard: tuple[int, int] | None = None,
        encoder: Encoder | None = None,
        store: ImageStore | None = None,
        lock: FolderLock | None = None,
        visual: Encoder | None = None,
    ) -> Engine:
        """Load the model, then open the store for its dimension (either may raise an EmbedderError).

        `encoder` and `store` may be given (tests, benchmarks, a second collection): they are used as they are.
        `lock`: the embedded folder's lock, when the caller took it before loading the model.
        `visual`: the image-only model, else the one EMBEDDER_VISUAL_MODEL names (if set).
        """
        encoder = encoder or load_encoder(settings)
        visual = visual or load_visual(settings)
        looks = (visual.model_id, visual.dim) if visual else None
        store = store or open_store(settings, encoder.model_id, encoder.dim, lock, visual=looks)
        indexer = Indexer(
            encoder, store, settings.max_image_pixels, settings.workers, shard, settings.max_upload_mb * 2**20,
            exclude=Excludes(settings.exclude),
            visual=visual,
            thumbnails=shared_cache(settings),
            tagger=open_tagger(settings, encoder),
        )
        jobs = JobRunner(indexer, journal=settings.jobs_journal)
        return cls(settings, encoder, store, indexer, Searcher(encoder, store, visual), jobs, visual=visual)

    def watch(self, roots: Iterable[Path | str], catch_up: bool = True) -> list[Job]:
        """Watch folders for changes (starting the job runner and the watcher if needed); the
        catch-up jobs queued for folders not watched before."""
        from embedder.jobs.watch import FolderWatcher  # watchdog only for those who watch

        self.jobs.start()
        if self.watcher is None:
            self.watcher = FolderWatcher(
                self.jobs, poll_s=self.settings.watch_poll_s, exclude=Excludes(self.settings.exclude)
            )
            self.watcher.start()
        return [job for root in roots if (job := self.watcher.add(root, catch_up)) is not None]

    def forget(self, point_id: str) -> list[str]:
        """Drop one image from the index (its files, if any are left, are not touched); the paths it
        was known at, [] if it was not in the index."""
        payload = self.store.retrieve([point_id]).get(point_id)
        if payload is None:
            return []
        self.store.delete([point_id])
        log.info("forgot %s (%s)", point_id, ", ".join(payload.get("paths", [])))
        return list(payload.get("paths", []))

    def info(self) -> dict[str, Any]:
        """What a person wants to know about the index (and the query model, when one is paired)."""
        info = {
            "storage": self.store.mode,
            "location": self.store.location,
            "collection": self.store.collection,
            "model": self.encoder.model_id,
            "dimension": self.encoder.dim,
            "device": self.encoder.device,
            "images": self.store.count(),
            "settings": str(self.settings.env_file or "none: defaults and the environment"),
            "uploads": str(self.settings.upload_dir),
            "watching": ", ".join(self.watcher.roots) if self.watcher else "",
        }
        if self.encoder.text_model is not None:
            info["queries by"] = self.encoder.text_model.model_id
        if self.visual is not None:
            info["visual model"] = f"{self.visual.model_id} ({self.visual.dim}-d): Similar, image queries, duplicates"
        return info

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.jobs.close()
        self.store.close()
