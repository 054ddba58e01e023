"""The embedded store on Qdrant Edge: Qdrant's own engine, in this process, one shard per collection.

Why not qdrant-client's local mode: it keeps every point in Python memory, scans them all for every
query, ignores payload indexes and replays its whole SQLite file on open. At 100k images it answers
in ~0.4 s (filtered ~3 s) and takes 20 s and 2.8 GB to reopen; Qdrant Edge answers in milliseconds
and reopens in well under a second (BENCHMARKS.md, bench/search_latency.py).

Layout under QDRANT_PATH (the folder the `FolderLock` guards)::

    .embedder.lock             our lock, taken before anything is opened
    <collection>/collection.json   model id, dimension, distance, engine version (ours)
    <collection>/shard/        the Edge shard (edge_config.json, wal/, segments/)

The rest of the product cannot tell this store from `QdrantStore`: same `ImageStore` interface,
same model check and messages, same filters, same ids and scores.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedder.config import Settings
from embedder.errors import CollectionMismatchError, StoreError
from embedder.store.contract import (
    SCROLL_PAGE,
    Hit,
    ImageStore,
    Point,
    SearchFilter,
    damaged_message,
    mismatch_message,
)
from embedder.store.lock import FolderLock
from embedder.store.schema import KEYWORD_FIELDS, NUMBER_FIELDS

log = logging.getLogger(__name__)

EDGE_VERSION = "0.9.0"  # pinned in requirements.txt: the on-disk format is Edge's, and Edge is beta
META_NAME = "collection.json"
SHARD_DIR = "shard"
META_FORMAT = 1
# Exact search, not HNSW, up to ~200k images: Edge scans 100k 512-d vectors in ~11 ms on 2 cores
# (bench/search_latency.py), never misses, and needs no graph. On clustered photo embeddings (bursts
# of near-duplicates) HNSW (m 16, ef 256) found only 54% of the exact top 10 at 100k (69-82% with
# filters), and building its graph took 170-380 s here. A segment gets a graph only above this size (KB of vector
# data: 400,000 KB = 200k 512-d float32 vectors); queries use the graph only where one exists.
INDEXING_THRESHOLD_KB = 400_000
HNSW_M = 16
HNSW_EF_CONSTRUCT = 128
HNSW_EF_SEARCH = 256
# Points added since the last optimize() before the indexer's end-of-run optimize() does any work.
OPTIMIZE_MIN_NEW = 20_000
# Durability. Every update goes to Edge's write-ahead log before update() returns, and the WAL
# survives a killed or crashed process (tests/test_store_edge.py kills one right after an upsert).
# flush() also makes it safe from a power cut, but costs 3-170 ms here (fsyncs of every segment and
# payload-index file): done after every batch it capped bulk upserts at 850-1,600 points/s. So writes
# are flushed when at least FLUSH_INTERVAL_S has passed since the last flush (on CPU, where a batch
# of 32 images takes seconds, that is every batch), and always on delete, optimize and close: a
# crashed process loses nothing it was told was stored; a power cut, at most the last second.
FLUSH_INTERVAL_S = 1.0
# A full disk. Edge maps its files into memory, and a write through such a mapping into a full disk
# is a SIGBUS: the process dies without a word. So every write first checks the free space on
# QDRANT_PATH's disk and refuses, losing nothing, below FREE_SPACE_FACTOR times the write's size
# (the WAL, the segment and the payload indexes each keep a copy) or MIN_FREE_MB, whichever is more.
MIN_FREE_MB = 64
FREE_SPACE_FACTOR = 4
# How a person runs the migration (the CLI may wire `python -m embedder migrate` to migrate_local).
MIGRATE_COMMAND = "embedder migrate"
# Migration from qdrant-client local mode: the copies are built in STAGING_DIR; MIGRATION_JOURNAL,
# written once they are complete, means "finish the swap" to the next run (and "refuse" to opens).
STAGING_DIR = ".migrating"
MIGRATION_JOURNAL = ".migration.json"
LOCAL_MODE_FILES = ("meta.json", "collection", ".lock")


def edge_available() -> bool:
    try:
        import qdrant_edge  # noqa: F401
    except ImportError:
        return False
    return True


def is_local_mode_folder(folder: Path) -> bool:
    """A folder written by qdrant-client's local mode: `meta.json` beside `collection/`."""
    return (folder / "meta.json").is_file() and (folder / "collection").is_dir()


@contextmanager
def _edge_errors(location: str) -> Iterator[None]:
    """Turn Qdrant Edge failures into one `StoreError` line naming the folder."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - every engine failure means the same to a user
        text = (str(exc).splitlines() or [type(exc).__name__])[0]
        text = text.removeprefix("Service runtime error: ")
        lowered = text.lower()
        if any(w in lowered for w in ("deserialize", "parse", "utf-8", "corrupt", "unexpected end", "invalid")):
            raise StoreError(damaged_message(location, text)) from None
        raise StoreError(f"The embedded store at {location} failed: {text}") from None


class EdgeStore(ImageStore):
    """An `ImageStore` on a Qdrant Edge shard in `QDRANT_PATH/<collection>/shard`."""

    mode = "embedded"

    def __init__(self, settings: Settings, model_id: str, dim: int, lock: FolderLock | None = None) -> None:
        self.location = str(settings.qdrant_path)
        self.collection = settings.collection
        self.model_id = model_id
        self.dim = dim
        self.folder = Path(settings.qdrant_path) / settings.collection
        self._shard: Any = None
        self._guard = threading.RLock()
        self._last_flush = time.monotonic()
        self._dirty = False
        self._new_since_optimize = 0
        self._lock = lock or FolderLock(Path(settings.qdrant_path))  # before Edge touches the folder
        try:
            if migration_pending(Path(settings.qdrant_path)):
                raise StoreError(
                    f"Converting {self.location} to Qdrant Edge was interrupted. Run `{MIGRATE_COMMAND}` again "
                    "to finish it (nothing was lost)."
                )
            if is_local_mode_folder(Path(settings.qdrant_path)):
                raise StoreError(
                    f"The storage folder {self.location} holds an index made by an older version of this app "
                    f"(qdrant-client local mode). Convert it once with `{MIGRATE_COMMAND}` (the old files are "
                    "kept as a backup), or set QDRANT_PATH to a new folder and index again."
                )
            self._check_space(0)  # opening writes too: the WAL is replayed, payload indexes flushed
            self._open()
        except BaseException:
            self.close()
            raise

    # --- opening -------------------------------------------------------------------------------

    @property
    def meta_path(self) -> Path:
        return self.folder / META_NAME

    @property
    def shard_path(self) -> Path:
        return self.folder / SHARD_DIR

    def _open(self) -> None:
        from qdrant_edge import EdgeShard

        meta = self._read_meta()
        has_shard = (self.shard_path / "edge_config.json").exists()
        if meta is None and not has_shard:
            self._create()
            return
        if meta is None:
            meta = {}
        recorded, size = meta.get("model"), meta.get("dim")
        if has_shard:
            size = self._shard_size()
        if size is not None and size != self.dim or (recorded is not None and recorded != self.model_id):
            raise CollectionMismatchError(mismatch_message(self.collection, size, recorded, self.model_id, self.dim))
        with _edge_errors(self.location):
            self._shard = EdgeShard.load(str(self.shard_path)) if has_shard else None
        if self._shard is None:
            self._create()
            return
        if recorded is None:  # adopt an unlabelled collection only while it is empty
            if self.count() != 0:
                raise CollectionMismatchError(mismatch_message(self.collection, size, None, self.model_id, self.dim))
            self._write_meta()
        self._ensure_payload_indexes()

    def _create(self) -> None:
        from qdrant_edge import EdgeShard

        log.info("creating Edge collection %s (%d-d, cosine) for %s", self.collection, self.dim, self.model_id)
        if self.shard_path.exists():  # a creation that died before its first segment: start again
            shutil.rmtree(self.shard_path)
        self.folder.mkdir(parents=True, exist_ok=True)
        with _edge_errors(self.location):
            self._shard = EdgeShard.create(str(self.shard_path), edge_config(self.dim))
        self._ensure_payload_indexes()
        self._write_meta()

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            raw = self.meta_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"Cannot read the storage folder {self.location}: {exc.strerror or exc}") from None
        try:
            meta = json.loads(raw.decode("utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            return meta
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(damaged_message(self.location, f"{META_NAME} is unreadable: {exc}")) from None

    def _write_meta(self) -> None:
        write_json_durably(self.meta_path, meta_document(self.model_id, self.dim))

    def _shard_size(self) -> int | None:
        """The vector size the shard itself was created with (its edge_config.json)."""
        path = self.shard_path / "edge_config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            return int(config["vectors"][""]["size"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise StoreError(damaged_message(self.location, f"edge_config.json is unreadable: {exc}")) from None

    def _ensure_payload_indexes(self) -> None:
        from qdrant_edge import PayloadSchemaType, UpdateOperation

        with self._edge() as shard:
            present = set(shard.info().payload_schema)
            wanted = [(f, PayloadSchemaType.Keyword) for f in KEYWORD_FIELDS] + [
                (f, PayloadSchemaType.Float) for f in NUMBER_FIELDS
            ]
            for name, schema in wanted:
                if name not in present:
                    shard.update(UpdateOperation.create_field_index(name, schema))
            shard.flush()

    # --- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _edge(self) -> Iterator[Any]:
        with self._guard, _edge_errors(self.location):
            if self._shard is None:
                raise StoreError(f"The embedded store at {self.location} is closed.")
            yield self._shard

    def _flushed(self, shard: Any) -> None:
        shard.flush()
        self._last_flush = time.monotonic()
        self._dirty = False

    def _maybe_flush(self, shard: Any) -> None:
        self._dirty = True
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self._flushed(shard)

    def _check_space(self, write_bytes: int) -> None:
        """Refuse a write of about `write_bytes` that the disk may not have room for (see MIN_FREE_MB)."""
        need = max(MIN_FREE_MB * 2**20, FREE_SPACE_FACTOR * write_bytes)
        try:
            free = shutil.disk_usage(self.location).free
        except OSError:  # cannot tell: let the write try
            return
        if free < need:
            raise StoreError(
                f"Only {free // 2**20} MB free on the disk of {self.location} (writing here needs "
                f"{math.ceil(need / 2**20)} MB); free some space and run again (nothing was lost)."
            )

    def flush(self) -> None:
        """Make every write so far safe from a power cut now."""
        with self._edge() as shard:
            if self._dirty:
                self._flushed(shard)

    # --- ImageStore ----------------------------------------------------------------------------

    def count(self) -> int:
        from qdrant_edge import CountRequest

        with self._edge() as shard:
            return int(shard.count(CountRequest(exact=True)))

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        with self._edge() as shard:
            records = shard.retrieve(list(ids), True, False)
        return {str(r.id): r.payload or {} for r in records}

    def upsert(self, points: Sequence[Point]) -> None:
        """Write a batch: once this returns it survives a crashed process (WAL), and a power cut once
        flushed (at most FLUSH_INTERVAL_S later)."""
        if not points:
            return
        from qdrant_edge import Point as EdgePoint
        from qdrant_edge import UpdateOperation

        matrix = np.asarray([p.vector for p in points], dtype=np.float32)
        self._check_space(matrix.nbytes + sum(_payload_bytes(p.payload) for p in points))
        edge_points = [EdgePoint(p.id, v, p.payload) for p, v in zip(points, matrix.tolist())]
        with self._edge() as shard:
            shard.update(UpdateOperation.upsert_points(edge_points))
            self._new_since_optimize += len(points)
            self._maybe_flush(shard)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        from qdrant_edge import UpdateOperation

        self._check_space(_payload_bytes(payload))
        with self._edge() as shard:
            shard.update(UpdateOperation.overwrite_payload([point_id], payload))
            self._maybe_flush(shard)

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        from qdrant_edge import UpdateOperation

        self._check_space(0)
        with self._edge() as shard:
            shard.update(UpdateOperation.delete_points(list(ids)))
            self._flushed(shard)

    def query(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        exact: bool = False,
    ) -> list[Hit]:
        from qdrant_edge import Query, QueryRequest, SearchParams

        request = QueryRequest(
            limit=limit,
            offset=offset or None,
            query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            filter=to_edge_filter(where),
            score_threshold=score_threshold,
            with_payload=True,
            with_vector=with_vectors,
            params=SearchParams(hnsw_ef=HNSW_EF_SEARCH, exact=exact),
        )
        with self._edge() as shard:
            points = shard.query(request)
        return [
            Hit(str(p.id), float(p.score), p.payload or {}, np.asarray(p.vector, dtype=np.float32) if with_vectors else None)
            for p in points
        ]

    def vector(self, point_id: str) -> np.ndarray | None:
        with self._edge() as shard:
            records = shard.retrieve([point_id], False, True)
        return np.asarray(records[0].vector, dtype=np.float32) if records else None

    def scroll(
        self, with_vectors: bool = False, where: SearchFilter | None = None
    ) -> Iterator[tuple[str, dict[str, Any], np.ndarray | None]]:
        from qdrant_edge import ScrollRequest

        offset = None
        while True:
            request = ScrollRequest(
                offset=offset,
                limit=SCROLL_PAGE,
                filter=to_edge_filter(where),
                with_payload=True,
                with_vector=with_vectors,
            )
            with self._edge() as shard:
                records, offset = shard.scroll(request)
            for r in records:
                vector = np.asarray(r.vector, dtype=np.float32) if with_vectors else None
                yield str(r.id), r.payload or {}, vector
            if offset is None:
                return

    def newest(self, limit: int, where: SearchFilter | None = None) -> list[Hit]:
        from qdrant_edge import Direction, OrderBy, ScrollRequest

        order = OrderBy(key="date", direction=Direction.Desc)
        with self._edge() as shard:
            records, _ = shard.scroll(
                ScrollRequest(
                    limit=limit, filter=to_edge_filter(where), with_payload=True, with_vector=False, order_by=order
                )
            )
        return [Hit(str(r.id), 0.0, r.payload or {}) for r in records]

    def optimize(self, force: bool = False) -> bool:
        """Flush, merge segments and build the HNSW graph for large ones (blocking; holds the GIL).

        Without `force`, only when at least OPTIMIZE_MIN_NEW points came in since the last time:
        small libraries stay on exact search, which is fast for them and never misses.
        """
        if not force and self._new_since_optimize < OPTIMIZE_MIN_NEW:
            self.flush()  # the end of a bulk load: make it all power-safe now
            return False
        self._check_space(0)
        with self._edge() as shard:
            started = time.perf_counter()
            changed = bool(shard.optimize())
            self._flushed(shard)
            self._new_since_optimize = 0
        log.info("optimized %s in %.1f s (changed: %s)", self.collection, time.perf_counter() - started, changed)
        return changed

    def stats(self) -> dict[str, int]:
        """Segments, points and how many of them an HNSW graph covers."""
        with self._edge() as shard:
            info = shard.info()
        return {"segments": info.segments_count, "points": info.points_count, "indexed": info.indexed_vectors_count}

    def close(self) -> None:
        with self._guard:
            shard, self._shard = self._shard, None
            if shard is not None:
                try:
                    shard.flush()
                    shard.close()
                except Exception as exc:  # noqa: BLE001 - closing must never raise over the real error
                    log.warning("closing the Edge shard at %s failed: %s", self.shard_path, exc)
            lock, self._lock = getattr(self, "_lock", None), None
            if lock:
                lock.release()


def _payload_bytes(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8"))


def edge_config(dim: int):
    from qdrant_edge import Distance, EdgeConfig, EdgeOptimizersConfig, EdgeVectorParams, HnswIndexConfig

    return EdgeConfig(
        vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
        hnsw_config=HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000),
        optimizers=EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
    )


def to_edge_filter(where: SearchFilter | None):
    """The Qdrant Edge form of a `SearchFilter` (the same conditions as `to_qdrant_filter`)."""
    if where is None or where.is_empty():
        return None
    from qdrant_edge import FieldCondition, Filter, HasIdCondition, MatchAny, MatchValue, RangeFloat

    must: list[Any] = []
    if where.folder:
        must.append(FieldCondition(key="folders", match=MatchValue(value=where.folder.rstrip("/") or "/")))
    if where.formats:
        must.append(FieldCondition(key="format", match=MatchAny(any=list(where.formats))))
    if where.paths:
        must.append(FieldCondition(key="paths", match=MatchAny(any=list(where.paths))))
    if where.date_from is not None or where.date_to is not None:
        must.append(FieldCondition(key="date", range=RangeFloat(gte=where.date_from, lte=where.date_to)))
    if where.min_width:
        must.append(FieldCondition(key="width", range=RangeFloat(gte=float(where.min_width))))
    if where.min_height:
        must.append(FieldCondition(key="height", range=RangeFloat(gte=float(where.min_height))))
    must_not = [HasIdCondition(point_ids=set(where.exclude_ids))] if where.exclude_ids else []
    return Filter(must=must or None, must_not=must_not or None)


# --- shared with the migration (migrate.py) -------------------------------------------------------


def migration_pending(folder: Path) -> bool:
    """A migration stopped after its copies were complete, with files still to move."""
    return (folder / MIGRATION_JOURNAL).is_file()


def write_json_durably(path: Path, document: dict[str, Any]) -> None:
    """Write `document` so that a crash leaves the old file or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make renames in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def meta_document(model: str | None, dim: int) -> dict[str, Any]:
    """What `collection.json` records (no model: a collection the next opener may adopt while empty)."""
    labelled = {"model": model} if model is not None else {}
    return {
        **labelled,
        "dim": dim,
        "distance": "Cosine",
        "engine": "qdrant-edge",
        "engine_version": EDGE_VERSION,
        "format": META_FORMAT,
    }
