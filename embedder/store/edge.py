"""The embedded store on Qdrant Edge: Qdrant's own engine, in this process, one shard per collection.

Why not qdrant-client's local mode: it keeps every point in Python memory, scans them all for every
query, ignores payload indexes and replays its whole SQLite file on open. At 100k images it answers
in ~0.4 s (filtered ~3 s) and takes 20 s and 2.8 GB to reopen; Qdrant Edge answers in milliseconds
and reopens in well under a second (BENCHMARKS.md, bench/search_latency.py).

Layout under QDRANT_PATH (the folder the `FolderLock` guards)::

    .embedder.lock             our lock, taken before anything is opened
    <collection>/collection.json   model id, dimension, distance, engine version (ours; written
                               once the shard is created and flushed: creation completed), and
                               the state the store was left in (what the next open checks)
    <collection>/shard/        the Edge shard (edge_config.json, wal/, segments/)
    <collection>/shard-aside/  while a search graph is built aside (aside.py): the copy being
                               built, then, once swapped in, the live shard (collection.json's
                               "shard" says so) until the store closes and moves it back

Opening never repairs by deleting: a store that is not what it should be, or whose files are not
what it recorded, is refused with the way out (restore a backup, or move the folder away and index
again). See `embedder.store_check`.

The rest of the product cannot tell this store from `QdrantStore`: same `ImageStore` interface,
same model check and messages, same filters, same ids and scores.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedder.store import aside
from embedder.store import check as store_check
from embedder.config import Settings
from embedder.durable import fsync_folder, write_json
from embedder.errors import CollectionMismatchError, StoreError
from embedder.store.contract import (
    FACET_LIMIT,
    SCROLL_PAGE,
    VISUAL,
    WORDS,
    Hit,
    ImageStore,
    Point,
    Recorded,
    SearchFilter,
    SparseWords,
    damaged_message,
    facet_counts,
    mismatch_message,
    pick_vector,
    visual_mismatch_message,
)
from embedder.store.conditions import AnyOf, Condition, Either, Equals, Every, HasWord, Not, OnDays, combined
from embedder.store.fusion import Boost, Dbsf, Fusion, Nearest, Rrf
from embedder.store.lock import FolderLock
from embedder.store.policy import POLICY, SearchPolicy
from embedder.store.schema import (
    DAY_FIELD, INTEGER_FIELDS, KEYWORD_FIELDS, NUMBER_FIELDS, PRINCIPAL_FIELDS, TEXT_FIELDS, day_of, with_day,
)

log = logging.getLogger(__name__)

EDGE_VERSION = "0.9.0"  # pinned in requirements.txt: the on-disk format is Edge's, and Edge is beta
META_NAME = "collection.json"
SHARD_DIR = "shard"
# The other name a shard takes while its graph is built aside (aside.py): the copy is built there and,
# once it has caught up, becomes the live shard (collection.json says which); closing, or the next
# open, moves it back under SHARD_DIR.
ASIDE_DIR = "shard-aside"
SHARD_NAMES = (SHARD_DIR, ASIDE_DIR)
META_FORMAT = 1
# When a segment switches from exact search to HNSW + int8 quantisation, and the graph's settings:
# embedder/store/policy.py (shared with the server backend; measurements in BENCHMARKS.md).
# INDEXING_THRESHOLD_KB overrides the policy's exact_below when set (tests, benches).
INDEXING_THRESHOLD_KB: int | None = None
# Points added since the last optimize() before the indexer's end-of-run optimize() does any work.
OPTIMIZE_MIN_NEW = 20_000
# Graph builds of a store big enough to have a graph run aside, in a child process on a copy
# (aside.py), so searches never wait for them; False builds in this process, as before (benches).
BUILD_ASIDE = True
# Free space a build aside needs: this many times what the live shard takes (the copy, and the
# segments the child writes while it builds); with less, the graph is built in this process.
ASIDE_SPACE_FACTOR = 2
# The swap replays the writes kept since the copy onto it while other writers go on, in up to
# CATCH_UP_ROUNDS rounds or until CATCH_UP_LEFT are left; those, with writes held.
CATCH_UP_ROUNDS = 4
CATCH_UP_LEFT = 16
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
# Damage checks on open (embedder/store_check.py). At a clean close the store records its point
# count, a sample of ids and a manifest of its segment files: every size, and SHA-256 digests of the
# smallest files first (versions, configs, flags, id trackers...) until DIGEST_BUDGET_BYTES of data
# are read (holes of sparse files are not read): all the files of a store of a few thousand images,
# the small ones of a large store, ~60 ms at most on a slow CPU. The next open checks exactly these
# before Edge reads anything. After Edge has loaded, the count and the sampled ids must be there and
# the first VECTOR_SAMPLE stored vectors (all of a small store) must be unit vectors, as Cosine
# stores them.
DIGEST_BUDGET_BYTES = 32 * 2**20
VECTOR_SAMPLE = 256
SAMPLE_IDS = 32
NORM_TOLERANCE = 1e-3
MANIFEST_ENTRY = re.compile(r"\d+( [0-9a-f]{64})?")  # "size" or "size sha256"
# How a person runs the migration (the CLI may wire `python -m embedder migrate` to migrate_local).
MIGRATE_COMMAND = "embedder migrate"
# Migration from qdrant-client local mode: the copies are built in STAGING_DIR; MIGRATION_JOURNAL,
# written once they are complete, means "finish the swap" to the next run (and "refuse" to opens).
STAGING_DIR = ".migrating"
MIGRATION_JOURNAL = ".migration.json"
# Adding the VISUAL vector to a collection made without one (Edge cannot add a vector in place):
# `embedder backfill-visual` copies it aside, then swaps (see migrate.add_visual_vector).
VISUAL_COMMAND = "embedder backfill-visual"
VISUAL_JOURNAL = ".visual-migration.json"  # in <collection>/: the copy is complete, finish the swap
LOCAL_MODE_FILES = ("meta.json", "collection", ".lock")
# Giving old points their `day` (fill_days): points per scroll page, each page one write.
FILL_PAGE = 4_096


def edge_available() -> bool:
    try:
        import qdrant_edge  # noqa: F401
    except ImportError:
        return False
    return True


def is_local_mode_folder(folder: Path) -> bool:
    """A folder written by qdrant-client's local mode: `meta.json` beside `collection/`."""
    return (folder / "meta.json").is_file() and (folder / "collection").is_dir()


# Words in the engine's errors that mean its files cannot be read back.
DAMAGE_WORDS = (
    "deserialize", "parse", "utf-8", "corrupt", "unexpected end", "invalid", "failed to load segment",
    "inconsistent storage", "failed to decode", "not readable", "decompress", "out of bounds",
)


@contextmanager
def _edge_errors(location: str) -> Iterator[None]:
    """Turn Qdrant Edge failures into one `StoreError` line naming the folder."""
    try:
        yield
    except (StoreError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the engine's PanicException is a BaseException (pyo3)
        text = (str(exc).splitlines() or [type(exc).__name__])[0]
        text = text.removeprefix("Service runtime error: ")
        lowered = text.lower()
        if not isinstance(exc, Exception) or any(w in lowered for w in DAMAGE_WORDS):
            raise StoreError(damaged_message(location, text)) from None
        raise StoreError(f"The embedded store at {location} failed: {text}") from None


class EdgeStore(ImageStore):
    """An `ImageStore` on a Qdrant Edge shard in `QDRANT_PATH/<collection>/shard`."""

    mode = "embedded"

    def __init__(
        self,
        settings: Settings,
        model_id: str,
        dim: int,
        lock: FolderLock | None = None,
        visual: tuple[str, int] | None = None,
    ) -> None:
        self.location = str(settings.qdrant_path)
        self.collection = settings.collection
        self.model_id = model_id
        self.dim = dim
        self.visual_model, self.visual_dim = visual or (None, None)
        self._recorded_visual: tuple[str, int] | None = visual  # what collection.json says the VISUAL vector is
        self.folder = Path(settings.qdrant_path) / settings.collection
        self._shard: Any = None
        self._live = SHARD_DIR  # which of SHARD_NAMES holds the live shard (collection.json records it)
        self._guard = threading.RLock()  # around every call into the shard
        self._writes = threading.RLock()  # around every write, the copy a build starts from, and its swap
        self._build_lock = threading.Lock()  # one graph build at a time
        self._journal: list[Any] | None = None  # while a build runs aside: every write since its copy
        self._child: aside.Child | None = None
        self._closing = False
        self._last_flush = time.monotonic()
        self._dirty = False
        self._new_since_optimize = 0
        self._days_complete = False  # every point with a date has its `day`: the date filter asks for days
        self._recorded: dict[str, Any] | None = None  # the state last written to collection.json
        self._opened = False  # the open passed its checks: a close may record a clean close
        self._lock = lock or FolderLock(Path(settings.qdrant_path))  # before Edge touches the folder
        try:
            if migration_pending(Path(settings.qdrant_path)):
                raise StoreError(
                    f"Converting {self.location} to Qdrant Edge was interrupted. Run `{MIGRATE_COMMAND}` again "
                    "to finish it (nothing was lost)."
                )
            if (self.folder / VISUAL_JOURNAL).is_file():
                raise StoreError(
                    f"Adding visual vectors to collection {self.collection!r} was interrupted. Run "
                    f"`{VISUAL_COMMAND}` again to finish it (nothing was lost)."
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
        return self.folder / self._live

    def _open(self) -> None:
        """Check the files against the last record, load the shard, then check what it loaded."""
        from qdrant_edge import EdgeShard

        settle_shard_folders(self.folder)
        meta = self._read_meta()
        config = self.shard_path / "edge_config.json"
        if not config.exists():
            if meta is None and self._read_files(store_check.holds_no_data, self.shard_path):
                self._create()  # a new store, or a creation that died before it wrote a point
                return
            raise self._damaged(f"{self._rel(config if self.shard_path.exists() else self.shard_path)} is missing")
        meta = meta or {}
        recorded, size = meta.get("model"), self._shard_size()
        if size != self.dim or (recorded is not None and recorded != self.model_id):
            raise CollectionMismatchError(mismatch_message(self.collection, size, recorded, self.model_id, self.dim))
        self._check_visual(meta)
        state = self._recorded_state(meta)
        self._check_files(state)
        if recorded is not None:  # from here on the files may change: a kill must not look like damage
            self._write_meta(self._state(state.get("points", 0), state.get("sample", [])))
        read_ahead(self.shard_path)
        with _edge_errors(self.location):
            # The policy's config on every open: a library made before it (or under another
            # policy) switches to it as it grows; what the segments hold is checked by Edge.
            words = self._shard_has_words()
            self._shard = EdgeShard.load(
                str(self.shard_path), edge_config(self.dim, self._shard_visual_size(), words=words)
            )
        if recorded is None:  # adopt an unlabelled collection only while it is empty
            if self.count() != 0:  # collection.json is written when a creation completes: it was lost
                raise self._damaged(f"{self._rel(self.meta_path)} is missing")
            self._write_meta(self._state(0, []))
        self._check_loaded(state)
        self._ensure_words(words)
        self._ensure_payload_indexes()
        self._days_complete = self._count(lacking_days()) == 0
        self._opened = True

    def _check_visual(self, meta: dict[str, Any]) -> None:
        """The VISUAL vector: kept as recorded whether or not it is asked for; a store without one
        gets it by `embedder backfill-visual`; another visual model is refused."""
        size, recorded = self._shard_visual_size(), meta.get("visual_model")
        self._recorded_visual = (str(recorded), int(size)) if size is not None and recorded else None
        if self.visual_model is None:
            return
        if size is None:
            raise CollectionMismatchError(
                f"Collection {self.collection!r} has no visual vectors yet, and EMBEDDER_VISUAL_MODEL is "
                f"{self.visual_model!r}. Run `{VISUAL_COMMAND}` once to add them (your CLIP vectors are kept), "
                "or unset EMBEDDER_VISUAL_MODEL."
            )
        if size != self.visual_dim or recorded != self.visual_model:
            raise CollectionMismatchError(
                visual_mismatch_message(self.collection, recorded, size, self.visual_model, self.visual_dim or 0)
            )

    def _create(self) -> None:
        """A new shard; collection.json is written last, so its presence means creation completed."""
        from qdrant_edge import EdgeShard

        log.info("creating Edge collection %s (%d-d, cosine) for %s", self.collection, self.dim, self.model_id)
        if self.shard_path.exists():  # store_check.holds_no_data proved there is nothing to lose
            shutil.rmtree(self.shard_path)
        self.folder.mkdir(parents=True, exist_ok=True)
        with _edge_errors(self.location):
            self._shard = EdgeShard.create(str(self.shard_path), edge_config(self.dim, self.visual_dim, words=True))
        self.has_words = True
        self._ensure_payload_indexes()
        self._days_complete = True
        self._write_meta(self._state(0, []))
        self._opened = True

    # --- damage checks -------------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.location).as_posix()

    def _damaged(self, what: str) -> StoreError:
        return StoreError(damaged_message(self.location, what))

    def _read_files(self, check: Callable[..., Any], *args: Any) -> Any:
        """A store_check function, its OSError as one line."""
        try:
            return check(*args)
        except OSError as exc:
            raise StoreError(f"Cannot read the storage folder {self.location}: {exc.strerror or exc}") from None

    def _recorded_state(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The state collection.json recorded ({} for stores made before it did), checked for shape."""
        state = meta.get("state") or {}
        files = state.get("files", {}) if isinstance(state, dict) else None
        if not (
            isinstance(state, dict)
            and isinstance(state.get("clean_close", False), bool)
            and isinstance(state.get("points", 0), int)
            and isinstance(state.get("sample", []), list)
            and all(isinstance(i, str) for i in state.get("sample", []))
            and isinstance(files, dict)
            and all(isinstance(v, str) and MANIFEST_ENTRY.fullmatch(v) for v in files.values())
        ):
            raise self._damaged(f"{self._rel(self.meta_path)} holds an unreadable state")
        return state

    def _check_files(self, state: dict[str, Any]) -> None:
        """Before the engine reads anything: the manifest of a clean close, else the structure."""
        files = state.get("files") if state.get("clean_close") else None
        problem = self._read_files(store_check.check_manifest, self.shard_path, files) if files else None
        problem = problem or self._read_files(store_check.check_segments, self.shard_path)
        if problem:
            raise self._damaged(f"{self._rel(self.shard_path)}/{problem}")

    def _check_loaded(self, state: dict[str, Any]) -> None:
        """What the engine loaded against the record: the count, the sampled ids, unit vectors."""
        from qdrant_edge import ScrollRequest

        count, expected = self.count(), int(state.get("points", 0))
        if count < expected or (state.get("clean_close") and count != expected):
            raise self._damaged(f"{expected} images were recorded at the last close, but {count} can be read")
        sample = [str(i) for i in state.get("sample", [])]
        missing = sorted(set(sample) - set(self.retrieve(sample)))
        if missing:
            raise self._damaged(f"{len(missing)} recorded images cannot be read, e.g. {missing[0]}")
        with self._edge() as shard:
            records, _ = shard.scroll(ScrollRequest(limit=VECTOR_SAMPLE, with_payload=True, with_vector=True))
        for record in records:
            if not self._is_unit(record.vector):
                raise self._damaged(f"the stored vector of image {record.id} is damaged")
        if count > expected or len(sample) < min(SAMPLE_IDS, count):
            self._write_meta(self._state(count, [str(r.id) for r in records[:SAMPLE_IDS]]))

    def _is_unit(self, raw: Any) -> bool:
        """Cosine stores unit vectors: anything else (missing, zeroed, flipped bytes) is damage."""
        if isinstance(raw, dict):  # how Edge returns a point without its vector
            raw = raw.get("")
        try:
            vector = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            return False
        return vector.shape == (self.dim,) and abs(float(np.linalg.norm(vector)) - 1.0) <= NORM_TOLERANCE

    def _state(self, points: int, sample: Sequence[str], files: dict[str, str] | None = None) -> dict[str, Any]:
        """What the next open checks: at least `points` images, these ids, and at a clean close the files."""
        state: dict[str, Any] = {"clean_close": files is not None, "points": points, "sample": list(sample)}
        if files is not None:
            state["files"] = files
        return state

    def _record_clean_close(self, shard: Any) -> None:
        """After the shard is closed: its count, a sample of ids and the manifest of its files."""
        from qdrant_edge import CountRequest, ScrollRequest

        points = int(shard.count(CountRequest(exact=True)))
        records, _ = shard.scroll(ScrollRequest(limit=SAMPLE_IDS, with_payload=False, with_vector=False))
        shard.close()
        self._back_to_shard_dir()
        try:
            files = store_check.manifest(self.shard_path, DIGEST_BUDGET_BYTES)
            self._write_meta(self._state(points, [str(r.id) for r in records], files))
        except OSError as exc:  # the next open checks less, nothing is lost
            log.warning("could not record the state of %s: %s", self.shard_path, exc)

    def _back_to_shard_dir(self) -> None:
        """After the shard closed: a shard a build left under ASIDE_DIR moves back under SHARD_DIR."""
        if self._live == SHARD_DIR:
            return
        try:
            os.replace(self.shard_path, self.folder / SHARD_DIR)
            self._live = SHARD_DIR
            fsync_folder(self.folder)
        except OSError as exc:  # the next open moves it (settle_shard_folders)
            log.warning("could not move %s back to %s: %s", self.shard_path, SHARD_DIR, exc)

    def _forget(self, ids: Sequence[str]) -> None:
        """Before a delete: the record must not expect these points after a crash."""
        if self._recorded is not None:
            gone = set(ids)
            sample = [i for i in self._recorded["sample"] if i not in gone]
            self._write_meta(self._state(max(0, self._recorded["points"] - len(gone)), sample))

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

    def _write_meta(self, state: dict[str, Any]) -> None:
        document = meta_document(self.model_id, self.dim, self._recorded_visual)
        live = {"shard": self._live} if self._live != SHARD_DIR else {}
        write_json(self.meta_path, {**document, **live, "state": state})
        self._recorded = state

    def _shard_size(self, name: str = "") -> int | None:
        """The vector size the shard itself was created with (its edge_config.json)."""
        path = self.shard_path / "edge_config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            return int(config["vectors"][name]["size"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise StoreError(damaged_message(self.location, f"edge_config.json is unreadable: {exc}")) from None

    def _shard_visual_size(self) -> int | None:
        """The size of the shard's VISUAL vector; None if it has none."""
        try:
            vectors = json.loads((self.shard_path / "edge_config.json").read_text(encoding="utf-8"))["vectors"]
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise StoreError(damaged_message(self.location, f"edge_config.json is unreadable: {exc}")) from None
        return self._shard_size(VISUAL) if isinstance(vectors, dict) and VISUAL in vectors else None

    def _shard_has_words(self) -> bool:
        """Whether the shard has the WORDS sparse vector (its edge_config.json says so)."""
        try:
            config = json.loads((self.shard_path / "edge_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise StoreError(damaged_message(self.location, f"edge_config.json is unreadable: {exc}")) from None
        sparse = config.get("sparse_vectors") if isinstance(config, dict) else None
        return isinstance(sparse, dict) and WORDS in sparse

    def _ensure_words(self, present: bool) -> None:
        """A store made before points had words gets the WORDS sparse vector now, in place (Edge adds a
        sparse vector to an existing shard; no point changes). The next index run fills it in."""
        if not present:
            from qdrant_edge import Modifier, UpdateOperation

            log.info("adding the words vector to collection %s (in place; no point changes)", self.collection)
            self._check_space(0)
            with self._writing() as shard:
                self._apply(shard, UpdateOperation.create_sparse_vector(WORDS, modifier=Modifier.Idf))
                self._flushed(shard)
        self.has_words = True

    def _ensure_payload_indexes(self) -> None:
        with self._edge() as shard:
            info = shard.info()
            if create_payload_indexes(shard, present=info.payload_schema, points=info.points_count):
                shard.flush()

    def _filter(self, where: SearchFilter | None) -> Any:
        return to_edge_filter(where, days_complete=self._days_complete)

    # --- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _edge(self) -> Iterator[Any]:
        with self._guard, _edge_errors(self.location):
            if self._shard is None:
                raise StoreError(f"The embedded store at {self.location} is closed.")
            yield self._shard

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """Around every write: one at a time with a build's copy and swap; use `_apply` inside."""
        with self._writes, self._edge() as shard:
            yield shard

    def _apply(self, shard: Any, operation: Any) -> None:
        """Write one operation; while a graph is built aside, also keep it for the copy (replayed at the swap)."""
        shard.update(operation)
        if self._journal is not None:
            self._journal.append(operation)

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
        return self._count()

    def _count(self, where: Any = None) -> int:
        """Points in the shard (matching an Edge filter, when given)."""
        from qdrant_edge import CountRequest

        with self._edge() as shard:
            return int(shard.count(CountRequest(exact=True, filter=where)))

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        with self._edge() as shard:
            records = shard.retrieve(list(ids), shown_payload(), False)
        return {str(r.id): r.payload or {} for r in records}

    def upsert(self, points: Sequence[Point]) -> None:
        """Write a batch: once this returns it survives a crashed process (WAL), and a power cut once
        flushed (at most FLUSH_INTERVAL_S later)."""
        if not points:
            return
        from qdrant_edge import Point as EdgePoint
        from qdrant_edge import UpdateOperation

        matrix = np.asarray([p.vector for p in points], dtype=np.float32)
        visual = sum(p.visual.nbytes for p in points if p.visual is not None)
        self._check_space(matrix.nbytes + visual + sum(_payload_bytes(p.payload) for p in points))
        edge_points = [EdgePoint(p.id, self._vectors(p, v), with_day(p.payload)) for p, v in zip(points, matrix.tolist())]
        with self._writing() as shard:
            self._apply(shard, UpdateOperation.upsert_points(edge_points))
            self._new_since_optimize += len(points)
            self._maybe_flush(shard)
        if self._new_since_optimize >= POLICY.build_step_points:  # build the graph in bounded steps
            self._optimize(POLICY.build_step_points)

    def _vectors(self, point: Point, clip: list[float]) -> Any:
        """What Edge stores for a point: the CLIP vector alone, or by name with its VISUAL and WORDS ones."""
        if point.visual is None and not point.words:
            return clip
        named: dict[str, Any] = {"": clip}
        if point.visual is not None:
            if self._recorded_visual is None:
                raise StoreError(f"Collection {self.collection!r} has no visual vectors; run `{VISUAL_COMMAND}` first.")
            named[VISUAL] = np.asarray(point.visual, dtype=np.float32).tolist()
        if point.words:
            named[WORDS] = edge_sparse(point.words)
        return named

    def set_words(self, vectors: Mapping[str, SparseWords | None]) -> None:
        if not vectors:
            return
        from qdrant_edge import PointVectors, UpdateOperation

        given = {i: w for i, w in vectors.items() if w}
        cleared = [i for i, w in vectors.items() if not w]
        self._check_space(sum(12 * len(w.indices) for w in given.values()))
        with self._writing() as shard:
            if given:
                self._apply(shard, UpdateOperation.update_vectors(
                    [PointVectors(i, {WORDS: edge_sparse(w)}) for i, w in given.items()]
                ))
            if cleared:
                self._apply(shard, UpdateOperation.delete_vectors(cleared, [WORDS]))
            self._maybe_flush(shard)

    def words_of(self, ids: Sequence[str]) -> dict[str, SparseWords]:
        """The WORDS vectors of the points among `ids` that have one (copying a collection keeps them)."""
        if not ids or not self.has_words:
            return {}
        with self._edge() as shard:
            records = shard.retrieve(list(ids), False, [WORDS])
        found = {}
        for r in records:
            raw = r.vector.get(WORDS) if isinstance(r.vector, dict) else None
            if raw is not None and len(raw.indices):
                found[str(r.id)] = SparseWords(tuple(int(i) for i in raw.indices), tuple(float(v) for v in raw.values))
        return found

    def set_visual(self, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        from qdrant_edge import PointVectors, UpdateOperation

        if self._recorded_visual is None:
            raise StoreError(f"Collection {self.collection!r} has no visual vectors; run `{VISUAL_COMMAND}` first.")
        rows = {i: np.asarray(v, dtype=np.float32) for i, v in vectors.items()}
        self._check_space(sum(v.nbytes for v in rows.values()))
        update = [PointVectors(i, {VISUAL: v.tolist()}) for i, v in rows.items()]
        with self._writing() as shard:
            self._apply(shard, UpdateOperation.update_vectors(update))
            self._maybe_flush(shard)

    def without_visual(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Inside Edge: the points lacking the VISUAL vector (every point, if the shard has none)."""
        from qdrant_edge import Filter, HasVectorCondition, ScrollRequest

        if self._recorded_visual is None:
            yield from ((i, payload) for i, payload, _ in self.scroll())
            return
        lacking = Filter(must_not=[HasVectorCondition(VISUAL)])
        offset = None
        while True:
            request = ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, filter=lacking, with_payload=shown_payload(), with_vector=False
            )
            with self._edge() as shard:
                records, offset = shard.scroll(request)
            yield from ((str(r.id), r.payload or {}) for r in records)
            if offset is None:
                return

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        from qdrant_edge import UpdateOperation

        self._check_space(_payload_bytes(payload))
        with self._writing() as shard:
            self._apply(shard, UpdateOperation.overwrite_payload([point_id], with_day(payload)))
            self._maybe_flush(shard)

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        from qdrant_edge import UpdateOperation

        self._check_space(0)
        with self._writing() as shard:
            self._forget(ids)
            self._apply(shard, UpdateOperation.delete_points(list(ids)))
            self._flushed(shard)

    def query(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        using: str | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        from qdrant_edge import Query, QueryRequest

        if using and self._recorded_visual is None:
            return []  # no point has a visual vector
        request = QueryRequest(
            limit=limit,
            offset=offset or None,
            query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=using or None),
            filter=self._filter(where),
            score_threshold=score_threshold,
            with_payload=shown_payload(),
            with_vector=[using or ""] if with_vectors else False,
            params=search_params(POLICY, exact),
        )
        with self._edge() as shard:
            points = shard.query(request)
        return [
            Hit(str(p.id), float(p.score), p.payload or {}, pick_vector(p.vector, using) if with_vectors else None)
            for p in points
        ]

    def fused(
        self,
        parts: Sequence[Nearest],
        fusion: Fusion,
        limit: int,
        offset: int = 0,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        from qdrant_edge import Prefetch, Query, QueryRequest

        def prefetch(part: Nearest) -> Any:
            if part.sparse:
                query = Query.Nearest(edge_sparse(part.vector), using=WORDS)  # type: ignore[arg-type]
            else:
                query = Query.Nearest(np.asarray(part.vector, dtype=np.float32).tolist(), using=part.using or None)
            params = None if part.sparse else search_params(POLICY, False)
            return Prefetch(
                limit=part.limit, query=query, params=params,
                filter=to_edge_filter(part.within(where), part.must, days_complete=self._days_complete),
                score_threshold=part.score_threshold,
            )

        request = QueryRequest(
            limit=limit,
            offset=offset or None,
            prefetches=[prefetch(p) for p in parts],
            query=edge_fusion(fusion),
            score_threshold=score_threshold,
            with_payload=shown_payload(),
            with_vector=[""] if with_vectors else False,
        )
        with self._edge() as shard:
            points = shard.query(request)
        return [
            Hit(str(p.id), float(p.score), p.payload or {}, pick_vector(p.vector, None) if with_vectors else None)
            for p in points
        ]

    def vector(self, point_id: str, using: str | None = None) -> np.ndarray | None:
        with self._edge() as shard:
            records = shard.retrieve([point_id], False, True)
        return pick_vector(records[0].vector, using) if records else None

    def scroll(
        self, with_vectors: bool = False, where: SearchFilter | None = None, using: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any], np.ndarray | None]]:
        from qdrant_edge import ScrollRequest

        offset = None
        while True:
            request = ScrollRequest(
                offset=offset,
                limit=SCROLL_PAGE,
                filter=self._filter(where),
                with_payload=shown_payload(),
                with_vector=[using or ""] if with_vectors else False,
            )
            with self._edge() as shard:
                records, offset = shard.scroll(request)
            for r in records:
                vector = pick_vector(r.vector, using) if with_vectors else None
                yield str(r.id), r.payload or {}, vector
            if offset is None:
                return

    def newest(self, limit: int, where: SearchFilter | None = None, oldest: bool = False) -> list[Hit]:
        from qdrant_edge import Direction, OrderBy, ScrollRequest

        order = OrderBy(key="date", direction=Direction.Asc if oldest else Direction.Desc)
        with self._edge() as shard:
            records, _ = shard.scroll(
                ScrollRequest(
                    limit=limit, filter=self._filter(where), with_payload=shown_payload(), with_vector=False,
                    order_by=order,
                )
            )
        return [Hit(str(r.id), 0.0, r.payload or {}) for r in records]

    def facet(self, key: str, where: SearchFilter | None = None) -> dict[str, int]:
        from qdrant_edge import FacetRequest

        with self._edge() as shard:
            response = shard.facet(FacetRequest(key=key, limit=FACET_LIMIT, exact=True, filter=self._filter(where)))
        return facet_counts((hit.value, hit.count) for hit in response.hits)

    def fill_days(self) -> int:
        """Give every point stored without `day` (a store made before the field) its day, from its
        stored `date`; nothing is re-encoded. Until then the date filter asks for `date` ranges.

        Each changed point moves out of its optimized segment (Edge rewrites such points), so their
        graph is built again, in the store's usual steps: at 1M images this is one rebuild of the
        graph. Returns how many points were given their day.
        """
        if self._days_complete:
            return 0
        from qdrant_edge import PayloadSelector, ScrollRequest, UpdateOperation

        lacking = lacking_days()
        total = self._count(lacking)
        if total:
            log.warning("Giving %d stored images the day number the date filter searches by, once: nothing is "
                        "re-encoded, but their search graph is built again (1M images: about as long as indexing "
                        "them took to build).", total)
        filled, offset = 0, None
        while total:
            request = ScrollRequest(offset=offset, limit=FILL_PAGE, filter=lacking,
                                    with_payload=PayloadSelector.Include(["date"]), with_vector=False)
            with self._edge() as shard:
                records, offset = shard.scroll(request)
            by_day: dict[int, list[Any]] = {}
            for record in records:
                day = day_of((record.payload or {}).get("date"))
                if day is not None:
                    by_day.setdefault(day, []).append(record.id)
            self._check_space(len(records) * (4 * self.dim + 1024))  # each point moves with its vector
            with self._writing() as shard:
                for day, ids in by_day.items():
                    self._apply(shard, UpdateOperation.set_payload(ids, {DAY_FIELD: day}))
                self._new_since_optimize += sum(map(len, by_day.values()))
                self._maybe_flush(shard)
            filled += sum(map(len, by_day.values()))
            if self._new_since_optimize >= POLICY.build_step_points:
                self._optimize(POLICY.build_step_points)
            if offset is None:
                break
        self._days_complete = self._count(lacking) == 0
        return filled

    def optimize(self, force: bool = False) -> bool:
        """Flush, merge segments and build the HNSW graph and quantised vectors for segments above
        the policy's `exact_below`; True if anything changed. The caller waits; searches do not.

        Edge's optimize() holds the interpreter lock of its process for the whole build, so a store
        big enough to have a graph builds it aside (`_build_aside`: a copy, built in a child process,
        then swapped in); a smaller one, whose optimize() has no graph to build, here.
        Without `force`, only when at least OPTIMIZE_MIN_NEW points came in since the last time.
        `upsert` also calls it by itself every `build_step_points` new points, so one call builds at
        most about that much graph (embedder/store/policy.py).
        """
        if not force and self._new_since_optimize < OPTIMIZE_MIN_NEW:
            self.flush()  # the end of a bulk load: make it all power-safe now
            return False
        return self._optimize(0 if force else OPTIMIZE_MIN_NEW)

    def _optimize(self, min_new: int) -> bool:
        """One build, once at least `min_new` points came in since the last (checked again once it is
        this caller's turn: another thread may have built them meanwhile)."""
        with self._build_lock:
            if self._closing or self._new_since_optimize < min_new:
                return False
            self._check_space(0)
            started = time.perf_counter()
            changed = self._build_aside() if self._builds_aside() else None
            where = "aside"
            if changed is None:
                where = "in this process"
                with self._writing() as shard:
                    changed = bool(shard.optimize())
                    self._flushed(shard)
                    self._new_since_optimize = 0
        log.info("optimized %s %s in %.1f s (changed: %s)", self.collection, where, time.perf_counter() - started, changed)
        return changed

    def _builds_aside(self) -> bool:
        """Whether a build may make a graph, so that it must not run in this process."""
        if not (BUILD_ASIDE and aside.available()):
            return False
        kb = INDEXING_THRESHOLD_KB if INDEXING_THRESHOLD_KB is not None else POLICY.indexing_threshold_kb(self.dim)
        return self.count() >= max(1, kb * 1024 // (4 * self.dim))

    def _build_aside(self) -> bool | None:
        """Build the graph on a copy in a child process and swap the copy in; searches go on meanwhile.

        The live shard is flushed and copied into the other folder name while writes wait (reads go
        on); from then on every write is also kept (`_journal`). The child builds the copy; this
        process loads it, replays the kept writes, checks it holds every point, and records it as
        the live shard in collection.json (the commit: a crash before leaves the old shard live and
        the copy to be removed, after, the copy live and the old shard to be removed). None when
        there is no room for a copy: the caller builds here instead.
        """
        staging_name = ASIDE_DIR if self._live == SHARD_DIR else SHARD_DIR
        staging = self.folder / staging_name
        aside.remove_tree(staging)  # an earlier build's leftover: never the live shard
        need = ASIDE_SPACE_FACTOR * aside.allocated_bytes(self.shard_path) + MIN_FREE_MB * 2**20
        free = shutil.disk_usage(self.location).free
        if free < need:
            log.warning("Only %d MB free on the disk of %s, and building the search graph aside needs %d MB: "
                        "building it in this process, where searches wait until it is done.",
                        free // 2**20, self.location, need // 2**20)
            return None
        with self._writes:
            with self._edge() as shard:
                self._flushed(shard)
            aside.copy_tree(self.shard_path, staging)
            self._journal = []
            self._new_since_optimize = 0
        child = self._child = aside.Child(staging)
        try:
            if self._closing:
                child.cancel()
            outcome = child.run()
            if not outcome["changed"]:
                raise _NothingBuilt
            old, previous = self._swap_in(self._load_built(staging), staging_name)
        except _NothingBuilt:
            self._journal = None
            aside.remove_tree(staging)
            return False
        except Exception as exc:  # noqa: BLE001 - the live shard is untouched: say so and go on
            self._journal = None
            aside.remove_tree(staging)
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            if self._closing:
                log.info("stopped building the search graph aside: the store is closing")
            else:
                log.warning("Building the search graph aside failed (%s); the store is as it was and builds it "
                            "at its next step.", why)
            return False
        except BaseException:
            self._journal = None
            aside.remove_tree(staging)
            raise
        finally:
            self._child = None
        self._retire(old, previous)
        return True

    def _retire(self, old: Any, name: str) -> None:
        """Close the shard a build replaced and remove its folder (the next open does, if this cannot)."""
        try:
            with _edge_errors(self.location):
                old.close()
            aside.remove_tree(self.folder / name)
        except (OSError, StoreError) as exc:
            log.warning("could not remove the replaced shard %s: %s", self.folder / name, exc)

    def _load_built(self, staging: Path) -> Any:
        """The copy the child built, loaded here (its files read ahead first: the child's close evicted them)."""
        from qdrant_edge import EdgeShard

        read_ahead(staging)
        with _edge_errors(self.location):
            return EdgeShard.load(str(staging), edge_config(self.dim, self._shard_visual_size(), words=self.has_words))

    def _swap_in(self, built: Any, staging_name: str) -> tuple[Any, str]:
        """Replay the writes kept since the copy onto `built`, check it, record it as live and use it.
        Returns the replaced shard and its folder name; raises (with `built` closed) before the commit."""
        from qdrant_edge import CountRequest

        try:
            done = 0
            for _ in range(CATCH_UP_ROUNDS):  # writers go on meanwhile; what is left is replayed with them held
                pending = list((self._journal or [])[done:])
                if len(pending) <= CATCH_UP_LEFT:
                    break
                with _edge_errors(self.location):
                    for operation in pending:
                        built.update(operation)
                done += len(pending)
            with self._writes:
                with _edge_errors(self.location):
                    for operation in (self._journal or [])[done:]:
                        built.update(operation)
                    built.flush()
                    held, expected = int(built.count(CountRequest(exact=True))), self.count()
                    sample = list((self._recorded or {}).get("sample", []))
                    found = {str(r.id) for r in built.retrieve(sample, False, False)} if sample else set()
                if held != expected or len(found) != len(sample):
                    raise StoreError(f"the built copy holds {held} of {expected} images")
                previous = self._live
                self._live = staging_name
                try:
                    self._write_meta(self._recorded or self._state(expected, []))  # the commit
                except BaseException:
                    if (self._read_meta() or {}).get("shard", SHARD_DIR) != staging_name:
                        self._live = previous
                        raise
                with self._guard:
                    old, self._shard = self._shard, built
                    self._journal = None
                    self._last_flush, self._dirty = time.monotonic(), False
                return old, previous
        except BaseException:
            with _edge_errors(self.location):
                built.close()
            raise

    def stats(self) -> dict[str, int]:
        """Segments, points and how many of them an HNSW graph covers."""
        with self._edge() as shard:
            info = shard.info()
        return {"segments": info.segments_count, "points": info.points_count, "indexed": info.indexed_vectors_count}

    def close(self) -> None:
        """Flush and close the shard; after an open that passed its checks, record the clean close.
        A graph build running aside is stopped first (its copy removed; the live shard is whole)."""
        self._closing = True
        child = self._child
        if child is not None:
            child.cancel()
        with self._build_lock, self._guard:
            shard, self._shard = self._shard, None
            try:
                if shard is not None:
                    try:
                        with _edge_errors(self.location):
                            shard.flush()
                            if self._opened:
                                self._record_clean_close(shard)
                            else:
                                shard.close()
                    except StoreError as exc:  # closing must never raise over the real error
                        log.warning("closing the Edge shard at %s failed: %s", self.shard_path, exc)
            finally:
                lock, self._lock = getattr(self, "_lock", None), None
                if lock:
                    lock.release()


class _NothingBuilt(Exception):
    """The child found nothing to optimize: the copy is dropped, the live shard kept."""


def _payload_bytes(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8"))


def read_ahead(shard: Path, chunk: int = 4 * 2**20) -> int:
    """Read the files Edge loads into memory once, in order, before it loads them; returns the bytes read.

    Edge drops a shard's files from the page cache when it closes (posix_fadvise DONTNEED) and on
    load faults the quantized vectors, graph links, id trackers and payload indexes back in page
    by page, about 25 MB/s on this machine's disk: a 1M-image store took 24 s to open. Read in
    order first, the same bytes come at the disk's sequential speed (600+ MB/s here) and the load
    copies them from the page cache: a 100k store opened in 0.16 s instead of 1.44 s
    (BENCHMARKS.md, section 4). Skipped: what Edge leaves on disk (the float32 originals of graph
    segments, payload storage). A file that cannot be read is left to the load to report.
    """
    read, buffer = 0, bytearray(chunk)
    for path in sorted((shard / "segments").glob("*/**/*")):
        parts = path.relative_to(shard).parts
        if "payload_storage" in parts or (path.name == "matrix.dat" and POLICY.originals_on_disk):
            continue
        try:
            if not path.is_file():
                continue
            with path.open("rb", buffering=0) as handle:
                while got := handle.readinto(buffer):
                    read += got
        except OSError:
            continue
    return read


def create_payload_indexes(
    shard: Any, present: dict[str, Any] | None = None, policy: SearchPolicy | None = None, points: int = 0
) -> int:
    """Give `shard` the indexer's payload indexes (embedder/store/schema.py), placed as the policy says.

    `present` is the shard's `info().payload_schema`, `points` how many points it holds. An index
    placed otherwise (a store made before payload indexes were memory-mapped, or before `day` ordered
    the segments) is made again: only the index is rebuilt, no data changes, and a crash in between
    leaves a missing index that the next open creates. Returns how many were made.
    """
    from qdrant_edge import (
        FloatIndexParams, IntegerIndexParams, KeywordIndexParams, Memory, TextIndexParams, TokenizerType, UpdateOperation,
    )

    memory = Memory.Cached if (policy or POLICY).payload_indexes_on_disk else Memory.Pinned
    wanted = (
        [(f, KeywordIndexParams(memory=memory)) for f in KEYWORD_FIELDS]
        + [(f, FloatIndexParams(memory=memory)) for f in NUMBER_FIELDS]
        + [(f, IntegerIndexParams(lookup=False, range=True, is_principal=f in PRINCIPAL_FIELDS or None, memory=memory))
           for f in INTEGER_FIELDS]
        # words are normalised by embedder.words already: the index only splits them at spaces
        + [(f, TextIndexParams(tokenizer=TokenizerType.Whitespace, lowercase=True, memory=memory)) for f in TEXT_FIELDS]
    )
    present = present or {}
    made = 0
    for name, params in wanted:
        info = present.get(name)
        if info is not None and _placed_as(info.params, params):
            continue
        if made == 0 and info is not None:
            log.warning("Re-making the store's search-filter indexes as %s, once: a large library takes "
                        "a few minutes (1M images: 2-3 min); no data changes.",
                        "memory-mapped files" if memory == Memory.Cached else "in-memory indexes")
        elif made == 0 and points:
            log.warning("Adding to the store's search-filter indexes, once: a large library takes a while "
                        "(1M images: up to a minute an index); no data changes.")
        if info is not None:
            shard.update(UpdateOperation.delete_field_index(name))
        shard.update(UpdateOperation.create_field_index(name, params))
        made += 1
    return made


def _placed_as(present: Any, wanted: Any) -> bool:
    """An index's params as the policy wants them: its memory placement, and whether it orders segments."""
    from qdrant_edge import Memory

    return (
        type(present) is type(wanted)
        and getattr(present, "memory", Memory.Pinned) == wanted.memory
        and bool(getattr(present, "is_principal", None)) == bool(getattr(wanted, "is_principal", None))
    )


def edge_config(dim: int, visual_dim: int | None = None, policy: SearchPolicy | None = None, words: bool = False):
    """The shard's config from the search policy: exact below `exact_below` points per segment, above
    it an HNSW graph on int8 vectors in RAM, originals memory-mapped from disk. The CLIP vector is
    unnamed (""); the VISUAL one, if asked for, sits beside it under the same policy; with `words`,
    the WORDS sparse vector, its terms weighed by IDF inside the engine."""
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeOptimizersConfig,
        EdgeSparseVectorParams,
        EdgeVectorParams,
        HnswIndexConfig,
        Memory,
        Modifier,
        ScalarQuantizationConfig,
        ScalarType,
    )

    policy = policy or POLICY
    threshold = INDEXING_THRESHOLD_KB if INDEXING_THRESHOLD_KB is not None else policy.indexing_threshold_kb(dim)
    quantization = (
        ScalarQuantizationConfig(type=ScalarType.Int8, quantile=policy.quantile, memory=Memory.Pinned)
        if policy.quantize
        else None
    )
    memory = Memory.Cold if policy.originals_on_disk else Memory.Cached
    clip = EdgeVectorParams(size=dim, distance=Distance.Cosine, memory=memory)
    visual = {VISUAL: EdgeVectorParams(size=visual_dim, distance=Distance.Cosine, memory=memory)} if visual_dim else {}
    return EdgeConfig(
        vectors={"": clip, **visual} if visual else clip,
        sparse_vectors={WORDS: EdgeSparseVectorParams(modifier=Modifier.Idf)} if words else None,
        hnsw_config=HnswIndexConfig(
            m=policy.m,
            ef_construct=policy.ef_construct,
            full_scan_threshold=policy.full_scan_threshold_kb(dim),
            payload_m=policy.payload_m,
            memory=Memory.Cached if policy.graph_on_disk else None,
        ),
        quantization_config=quantization,
        optimizers=EdgeOptimizersConfig(
            indexing_threshold=threshold, max_segment_size=max(threshold, policy.max_segment_size_kb(dim))
        ),
    )


def search_params(policy: SearchPolicy, exact: bool):
    """Per-query parameters: the policy's ef and rescoring; `exact` scores the originals only."""
    from qdrant_edge import AcornSearchParams, QuantizationSearchParams, SearchParams

    if exact:
        return SearchParams(exact=True, quantization=QuantizationSearchParams(ignore=True))
    return SearchParams(
        hnsw_ef=policy.hnsw_ef,
        quantization=QuantizationSearchParams(rescore=True, oversampling=policy.oversampling) if policy.quantize else None,
        acorn=AcornSearchParams(enable=True, max_selectivity=policy.acorn_max_selectivity)
        if policy.acorn_max_selectivity > 0
        else None,
    )


def to_edge_filter(where: SearchFilter | None, extra: tuple[Condition, ...] = (), days_complete: bool = False):
    """The Qdrant Edge form of a `SearchFilter`'s neutral conditions (embedder/store/conditions.py),
    with `extra` conditions on top (a prefetch's own).

    `days_complete`: every point with a date has its `day`, so a range of days is asked of `day`
    (one integer range, segments in day order); otherwise of `date`, which every point has.
    """
    found = combined(where, extra)
    if found is None:
        return None
    from qdrant_edge import (
        FieldCondition, Filter, HasIdCondition, MatchAny, MatchText, MatchTextAny, MatchValue, RangeFloat,
    )

    def field(condition: Condition) -> Any:
        if isinstance(condition, (Either, Every)) and len(condition.parts) == 1:
            return field(condition.parts[0])
        if isinstance(condition, Either) and len({part.key for part in condition.parts if isinstance(part, HasWord)}) == 1 \
                and all(isinstance(part, HasWord) for part in condition.parts):
            # one of several words in one field: one text-index lookup. Edge ran the same as a `should`
            # of MatchText conditions by reading every point (15 ms instead of 0.2 at 100k points).
            words = " ".join(part.word for part in condition.parts)  # type: ignore[union-attr]
            return FieldCondition(key=condition.parts[0].key, match=MatchTextAny(text_any=words))  # type: ignore[union-attr]
        if isinstance(condition, Either):
            return Filter(should=[field(c) for c in condition.parts])
        if isinstance(condition, Every):
            return Filter(must=[field(c) for c in condition.parts])
        if isinstance(condition, Not):
            return Filter(must_not=[field(condition.part)])
        if isinstance(condition, HasWord):
            return FieldCondition(key=condition.key, match=MatchText(text=condition.word))
        if isinstance(condition, Equals):
            return FieldCondition(key=condition.key, match=MatchValue(value=condition.value))
        if isinstance(condition, AnyOf):
            return FieldCondition(key=condition.key, match=MatchAny(any=list(condition.values)))
        if isinstance(condition, OnDays):
            if days_complete:
                return FieldCondition(key=DAY_FIELD, range=RangeFloat(gte=condition.first, lte=condition.last))
            gte, lt = condition.date_bounds()
            return FieldCondition(key="date", range=RangeFloat(gte=gte, lt=lt))
        return FieldCondition(key=condition.key, range=RangeFloat(gte=condition.gte, lte=condition.lte))

    must = [field(c) for c in found.must]
    must_not = [HasIdCondition(point_ids=set(found.exclude_ids))] if found.exclude_ids else []
    return Filter(must=must or None, must_not=must_not or None)


def edge_sparse(words: SparseWords) -> Any:
    """A `SparseWords` as Edge's SparseVector."""
    from qdrant_edge import SparseVector

    return SparseVector(indices=list(words.indices), values=list(words.values))


def edge_fusion(fusion: Fusion) -> Any:
    """The Edge form of a neutral fusion (embedder/store/fusion.py)."""
    from qdrant_edge import Expression, Formula
    from qdrant_edge import Fusion as EdgeFusion

    if isinstance(fusion, Rrf):
        return EdgeFusion.Rrf(k=fusion.k, weights=list(fusion.weights) if fusion.weights else None)
    if isinstance(fusion, Dbsf):
        return EdgeFusion.Dbsf()
    assert isinstance(fusion, Boost)
    words = Expression.Variable("$score[1]")

    def share(of: float) -> Any:  # min(1, words / of)
        return Expression.Min([Expression.Constant(1.0), Expression.Div(words, Expression.Constant(of), 0.0)])

    parts = [Expression.Variable("$score[0]"), Expression.Mult([Expression.Constant(fusion.bonus), share(fusion.floor)])]
    if fusion.lift:
        parts.append(Expression.Mult([Expression.Constant(fusion.lift), share(fusion.full)]))
    return Formula(Expression.Sum(parts), defaults={"$score[0]": 0.0, "$score[1]": 0.0})


def shown_payload():
    """What reads return of a payload: all of it but the derived `day`, which is the store's own."""
    from qdrant_edge import PayloadSelector

    return PayloadSelector.Exclude([DAY_FIELD])


def lacking_days():
    """Edge's filter for points that have a date but no `day`: stored before the field existed."""
    from qdrant_edge import Filter, IsEmptyCondition

    return Filter(must=[IsEmptyCondition(key=DAY_FIELD)], must_not=[IsEmptyCondition(key="date")])


# --- shared with the migration (migrate.py) -------------------------------------------------------


def settle_shard_folders(folder: Path) -> None:
    """Before anything reads `<collection>/`: the live shard back under SHARD_DIR, a build's leftovers gone.

    collection.json names the live one of SHARD_NAMES: SHARD_DIR, unless a graph build swapped its
    copy in and the store was not closed since (closing moves it back). The other folder then holds
    only a copy: of a build that did not finish, or the shard a finished build replaced. Each step is
    atomic and may be repeated; nothing is removed unless the live shard is there.
    """
    meta_path = folder / META_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return  # no collection yet, or a record the open reports as damaged
    if not isinstance(meta, dict):
        return
    (folder / aside.RESULT_NAME).unlink(missing_ok=True)
    recorded = meta.get("shard", SHARD_DIR)
    if recorded not in SHARD_NAMES:
        raise StoreError(damaged_message(str(folder.parent), f"{META_NAME} names an unknown shard folder {recorded!r}"))
    live = recorded if (folder / recorded).is_dir() else SHARD_DIR  # closing moved it back, then stopped
    if not (folder / live).is_dir():
        return  # the open says what is missing
    for name in SHARD_NAMES:
        if name != live and (folder / name).exists():
            log.info("removing %s: a copy left by a search-graph build (the live shard is %s)", folder / name, live)
            aside.remove_tree(folder / name)
    if live != SHARD_DIR:
        os.replace(folder / live, folder / SHARD_DIR)
        fsync_folder(folder)
    if recorded != SHARD_DIR:
        meta.pop("shard", None)
        write_json(meta_path, meta)


def migration_pending(folder: Path) -> bool:
    """A migration stopped after its copies were complete, with files still to move."""
    return (folder / MIGRATION_JOURNAL).is_file()


def recorded_in_folder(settings: Settings) -> Recorded:
    """What QDRANT_PATH's collection records in its collection.json (model and vector size); a
    folder without a readable one is left to the store's own checks (model and size unknown)."""
    root = Path(settings.qdrant_path)
    folder = root / settings.collection
    if not os.path.lexists(root) or (root.is_dir() and not os.path.lexists(folder)):
        return Recorded(exists=False)
    try:
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return Recorded(exists=True)
    model, dim = (meta.get("model"), meta.get("dim")) if isinstance(meta, dict) else (None, None)
    if not isinstance(model, str) or not isinstance(dim, int):
        return Recorded(exists=True)
    return Recorded(exists=True, model=model, dim=dim)


def meta_document(model: str | None, dim: int, visual: tuple[str, int] | None = None) -> dict[str, Any]:
    """What `collection.json` records (no model: a collection the next opener may adopt while empty);
    `visual`: the model and size of its VISUAL vectors, when it has them."""
    labelled = {"model": model} if model is not None else {}
    visual_record = {"visual_model": visual[0], "visual_dim": visual[1]} if visual else {}
    return {
        **labelled,
        **visual_record,
        "dim": dim,
        "distance": "Cosine",
        "engine": "qdrant-edge",
        "engine_version": EDGE_VERSION,
        "format": META_FORMAT,
    }
