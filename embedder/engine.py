"""The product's working parts, opened once and wired together: model, store, indexer, searcher, jobs.

The model and the store open first; the indexer (with its tagger and thumbnails), the text pass and
the job runner are built on first use, and the text reader only when there is text to read, so a
command that only searches or reads imports and loads nothing more. `describe` is what `info` and
the pages' sidebar say, read from the settings and the store alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedder.config import Settings
from embedder.models.hub import looks_like_path
from embedder.models.ids import HF_PREFIX, expected_model_id
from embedder.models import load_encoder, load_visual
from embedder.query.searcher import Searcher
from embedder.store import FolderLock, ImageStore, open_store

if TYPE_CHECKING:
    from embedder.indexing.indexer import Indexer
    from embedder.indexing.text_pass import TextPass
    from embedder.jobs.runner import Job, JobRunner
    from embedder.models.base import Encoder
    from embedder.models.ocr import TextReader

log = logging.getLogger(__name__)


@dataclass
class Engine:
    settings: Settings
    encoder: Encoder
    store: ImageStore
    searcher: Searcher
    watcher: Any = field(default=None)  # a FolderWatcher once `watch` is called
    visual: Encoder | None = None  # the image-only model (EMBEDDER_VISUAL_MODEL), when set
    shard: tuple[int, int] | None = None  # (index, count): this worker indexes only its share
    reader: TextReader | None = None  # the text reader, made when text is first read (or handed in: tests)
    _indexer: Indexer | None = field(default=None, repr=False)
    _jobs: JobRunner | None = field(default=None, repr=False)
    _parts: threading.Lock = field(default_factory=threading.Lock, repr=False)

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

        `encoder` and `store` may be given (tests, benchmarks, a second collection, the CLI's text-only
        `embedder.models.load_query_encoder`): they are used as they are.
        `lock`: the embedded folder's lock, when the caller took it before loading the model.
        `visual`: the image-only model, else the one EMBEDDER_VISUAL_MODEL names (if set).
        """
        encoder = encoder or load_encoder(settings)
        visual = visual or load_visual(settings)
        looks = (visual.model_id, visual.dim) if visual else None
        store = store or open_store(settings, encoder.model_id, encoder.dim, lock, visual=looks)
        return cls(settings, encoder, store, Searcher(encoder, store, visual), visual=visual, shard=shard)

    @property
    def indexer(self) -> Indexer:
        """The indexer for this store (with the tagger TAGS asks for), built on first use."""
        with self._parts:
            if self._indexer is None:
                from embedder.indexing.indexer import Indexer
                from embedder.indexing.tags import open_tagger
                from embedder.media.excludes import Excludes
                from embedder.media.thumbnails import shared_cache

                settings = self.settings
                self._indexer = Indexer(
                    self.encoder, self.store, settings.max_image_pixels, settings.workers, self.shard,
                    settings.max_upload_mb * 2**20,
                    exclude=Excludes(settings.exclude),
                    visual=self.visual,
                    thumbnails=shared_cache(settings),
                    tagger=open_tagger(settings, self.encoder),
                )
            return self._indexer

    @property
    def text_pass(self) -> TextPass | None:
        """Reading the text in stored pictures (None with TEXT_IN_IMAGES=false); the reader loads on
        the first picture to read."""
        if not self.settings.text_in_images:
            return None
        from embedder.indexing.text_pass import TextPass

        indexer = self.indexer
        return TextPass(self.store, self.text_reader, self.settings.max_image_pixels, indexer.payload_lock, indexer.owns)

    def text_reader(self) -> TextReader:
        """The text reader (RapidOCR's PP-OCRv6 on ONNX Runtime), loaded once: on the GPU when
        EMBEDDER_DEVICE allows one and onnxruntime has CUDA, else on every CPU core."""
        with self._parts:
            if self.reader is None:
                from embedder.models.ocr import TextReader

                device = "cpu" if self.settings.device == "cpu" else "auto"
                self.reader = TextReader(device)
            return self.reader

    @property
    def jobs(self) -> JobRunner:
        """Background indexing for this store, built on first use; started by whoever wants it (the
        app, `watch`)."""
        indexer = self.indexer
        text_pass = self.text_pass
        with self._parts:
            if self._jobs is None:
                from embedder.jobs.runner import JobRunner

                self._jobs = JobRunner(indexer, journal=self.settings.jobs_journal, text_pass=text_pass)
            return self._jobs

    def watch(self, roots: Iterable[Path | str], catch_up: bool = True) -> list[Job]:
        """Watch folders for changes (starting the job runner and the watcher if needed); the
        catch-up jobs queued for folders not watched before."""
        from embedder.jobs.watch import FolderWatcher  # watchdog only for those who watch
        from embedder.media.excludes import Excludes

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
        info = describe(
            self.settings, self.store, self.encoder.model_id, self.encoder.dim, self.encoder.device,
            watching=self.watcher.roots if self.watcher else (),
        )
        if self.encoder.text_model is not None:
            info["queries by"] = self.encoder.text_model.model_id
        if self.visual is not None:
            info["visual model"] = f"{self.visual.model_id} ({self.visual.dim}-d): Similar, image queries, duplicates"
        return info

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self._jobs is not None:
            self._jobs.close()
        self.store.close()


# --- what `info` and the pages say about the library --------------------------------------------


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
