"""Converting a folder made by qdrant-client's local mode (older versions) into Qdrant Edge collections,
and giving an Edge collection the VISUAL vector (`add_visual_vector`, for `embedder backfill-visual`).

Recoverable from any point: copies are built aside, a journal commits to them, every move is atomic
and skipped once done, and the store refuses to open while a conversion is half done. The command is
`embedder migrate` (cli.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedder.config import Settings
from embedder.durable import fsync_folder, write_json
from embedder.errors import StoreError
from embedder.store.contract import VISUAL, damaged_message
from embedder.store.edge import (
    LOCAL_MODE_FILES,
    MIGRATE_COMMAND,
    META_NAME,
    MIGRATION_JOURNAL,
    OPTIMIZE_MIN_NEW,
    SHARD_DIR,
    STAGING_DIR,
    VISUAL_COMMAND,
    create_payload_indexes,
    edge_config,
    is_local_mode_folder,
    meta_document,
    migration_pending,
    settle_shard_folders,
)
from embedder.store.lock import FolderLock
from embedder.store.schema import with_day

log = logging.getLogger(__name__)


def migrate_local(settings: Settings, on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Convert a qdrant-client local-mode folder (QDRANT_PATH) into Edge collections, in place.

    Every collection is copied (ids, vectors, payloads, model label) into `.migrating/<collection>`
    while the old index stays untouched (a crash here only means the copy is made again). Then a
    journal, `.migration.json`, records the backup folder and the finished copies, and only then
    do files move: the old ones into `local-mode-backup-<time>/`, the copies into place. While the
    journal exists the store refuses to open, and the next run finishes the moves from wherever
    they stopped. Returns points per collection. Refuses while another process holds the folder.
    """
    folder = Path(settings.qdrant_path)
    nothing = StoreError(f"{folder} does not hold a qdrant-client local-mode index: nothing to migrate.")
    if not migration_pending(folder) and not is_local_mode_folder(folder):
        raise nothing
    lock = FolderLock(folder)
    try:
        journal = _read_journal(folder)
        if journal is None:
            if not is_local_mode_folder(folder):  # another process converted it meanwhile
                raise nothing
            journal = _copy_local_mode(folder, on_progress)
        counts = _finish_migration(folder, journal)
        log.info("migrated %s to Qdrant Edge; the old files are in %s", counts, folder / journal["backup"])
        return counts
    finally:
        lock.release()


def _copy_local_mode(folder: Path, on_progress) -> dict[str, Any]:
    """Copy every collection into the staging folder, then write the journal that commits to them."""
    from qdrant_client import QdrantClient

    staging = folder / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)  # a copy an earlier run left unfinished
    counts: dict[str, int] = {}
    try:
        client = QdrantClient(path=str(folder))
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"Cannot open the old index at {folder}: {(str(exc).splitlines() or [exc])[0]}") from None
    try:
        for description in client.get_collections().collections:
            name = description.name
            config = client.get_collection(name).config
            size = int(getattr(config.params.vectors, "size"))
            model = (config.metadata or {}).get("model")
            counts[name] = _copy_collection(client, name, staging / name, size, model, on_progress)
    finally:
        client.close()
    journal = {"backup": f"local-mode-backup-{time.strftime('%Y%m%d-%H%M%S')}", "collections": counts}
    write_json(folder / MIGRATION_JOURNAL, journal)
    return journal


def _finish_migration(folder: Path, journal: dict[str, Any]) -> dict[str, int]:
    """Move the old files into the backup and the copies into place; each move is atomic and
    skipped once done, so this can stop anywhere and run again."""
    backup, staging = folder / journal["backup"], folder / STAGING_DIR
    backup.mkdir(exist_ok=True)
    for name in LOCAL_MODE_FILES:
        if (folder / name).exists() and not (backup / name).exists():
            os.replace(folder / name, backup / name)
    for name in journal["collections"]:
        if (staging / name).exists():
            os.replace(staging / name, folder / name)
        elif not (folder / name / META_NAME).is_file():
            raise StoreError(
                f"The converted copy of collection {name!r} is missing from {folder}. The old index is in "
                f"{backup}: move its files back into {folder}, delete {MIGRATION_JOURNAL} and run "
                f"`{MIGRATE_COMMAND}` again."
            )
    fsync_folder(folder)
    shutil.rmtree(staging, ignore_errors=True)
    (folder / MIGRATION_JOURNAL).unlink()
    fsync_folder(folder)
    return {name: int(n) for name, n in journal["collections"].items()}


def _read_journal(folder: Path) -> dict[str, Any] | None:
    try:
        journal = json.loads((folder / MIGRATION_JOURNAL).read_text(encoding="utf-8"))
        return {"backup": str(journal["backup"]), "collections": dict(journal["collections"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(damaged_message(folder, f"{MIGRATION_JOURNAL} is unreadable: {exc}")) from None


def _copy_collection(client, name: str, target: Path, size: int, model: str | None, on_progress) -> int:
    from qdrant_edge import EdgeShard
    from qdrant_edge import Point as EdgePoint
    from qdrant_edge import UpdateOperation

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shard = EdgeShard.create(str(target / SHARD_DIR), edge_config(size))
    total = client.count(name, exact=True).count
    copied = 0
    offset = None
    try:
        while True:
            records, offset = client.scroll(name, limit=1024, offset=offset, with_payload=True, with_vectors=True)
            if records:
                shard.update(
                    UpdateOperation.upsert_points([EdgePoint(str(r.id), list(r.vector), with_day(r.payload or {})) for r in records])
                )
                copied += len(records)
                if on_progress:
                    on_progress(name, copied, total)
            if offset is None:
                break
        _finish_copy(shard, copied)
    finally:
        shard.close()
    write_json(target / META_NAME, meta_document(model, size))
    return copied


# --- adding the VISUAL vector to an Edge collection made without one ------------------------------

VISUAL_STAGING = ".visual-shard"  # in <collection>/: the copy with both vectors, while it is built


class _HeldLock:
    """The folder lock the caller holds: the store opened for copying must not release it."""

    def release(self) -> None:
        pass


def add_visual_vector(
    settings: Settings, visual: tuple[str, int], on_progress: Callable[[int, int], None] | None = None
) -> dict[str, Any] | None:
    """Give the embedded collection (QDRANT_PATH/QDRANT_COLLECTION) a VISUAL vector beside its CLIP one.

    Edge cannot add a vector to an existing shard, so every point is copied (id, CLIP vector bit for
    bit, payload) into `<collection>/.visual-shard` with both vectors, while the old shard stays
    untouched (a crash here only means the copy is made again). A journal, `.visual-migration.json`,
    then commits to the copy, and only then do folders move: the old shard into
    `<collection>/shard-clip-only-<time>/` (a backup: delete it once you are happy), the copy into
    place. While the journal exists the store refuses to open, and the next run finishes the moves.
    The caller holds the folder lock. Returns {"points", "backup"}, or None when there was nothing
    to do (no collection yet, or it has the vector already).
    """
    from embedder.store.edge import VISUAL_JOURNAL

    folder = Path(settings.qdrant_path) / settings.collection
    journal = _read_visual_journal(folder / VISUAL_JOURNAL)
    if journal is None:
        settle_shard_folders(folder)  # the live shard under SHARD_DIR, even after a crash mid-build
        config = folder / SHARD_DIR / "edge_config.json"
        if not config.is_file() or VISUAL in _shard_vectors(config, settings):
            return None
        journal = _copy_with_visual(settings, folder, visual, on_progress)
    return _finish_visual(folder, journal)


def _shard_vectors(config: Path, settings: Settings) -> dict[str, Any]:
    try:
        vectors = json.loads(config.read_text(encoding="utf-8"))["vectors"]
        return vectors if isinstance(vectors, dict) else {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(damaged_message(settings.qdrant_path, f"edge_config.json is unreadable: {exc}")) from None


def _copy_with_visual(
    settings: Settings, folder: Path, visual: tuple[str, int], on_progress: Callable[[int, int], None] | None
) -> dict[str, Any]:
    """Copy the collection, checked on open as always, into the staging shard; then write the journal."""
    from qdrant_edge import EdgeShard, UpdateOperation
    from qdrant_edge import Point as EdgePoint

    from embedder.store.edge import VISUAL_JOURNAL, EdgeStore

    meta = json.loads((folder / META_NAME).read_text(encoding="utf-8")) if (folder / META_NAME).is_file() else {}
    model, dim = meta.get("model"), int(_shard_vectors(folder / SHARD_DIR / "edge_config.json", settings)[""]["size"])
    staging = folder / VISUAL_STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a copy an earlier run left unfinished
    with EdgeStore(settings, model or "", dim, lock=_HeldLock()) as old:  # type: ignore[arg-type]
        model = old.model_id
        total, copied, sample = old.count(), 0, []
        shard = EdgeShard.create(str(staging), edge_config(dim, visual[1]))
        try:
            page: list[Any] = []
            for pid, payload, vector in old.scroll(with_vectors=True):
                page.append(EdgePoint(pid, vector.tolist(), with_day(payload)))  # the stored unit vector, as it is
                if len(sample) < 32:
                    sample.append(pid)
                if len(page) >= 1024:
                    shard.update(UpdateOperation.upsert_points(page))
                    copied, page = copied + len(page), []
                    if on_progress:
                        on_progress(copied, total)
            if page:
                shard.update(UpdateOperation.upsert_points(page))
                copied += len(page)
            _finish_copy(shard, copied)
        finally:
            shard.close()
    if copied != total:
        raise StoreError(
            f"Copying collection {settings.collection!r} gave {copied} of {total} images; nothing was changed. "
            "Run the command again."
        )
    journal = {
        "backup": f"shard-clip-only-{time.strftime('%Y%m%d-%H%M%S')}",
        "model": model,
        "dim": dim,
        "visual_model": visual[0],
        "visual_dim": visual[1],
        "points": copied,
        "sample": sample,
    }
    write_json(folder / VISUAL_JOURNAL, journal)
    return journal


def _finish_visual(folder: Path, journal: dict[str, Any]) -> dict[str, Any]:
    """Old shard into the backup, the copy into place, the record rewritten; each step atomic and
    skipped once done, so this can stop anywhere and run again."""
    from embedder.store.edge import VISUAL_JOURNAL

    shard, staging, backup = folder / SHARD_DIR, folder / VISUAL_STAGING, folder / journal["backup"]
    if staging.exists():
        if shard.exists() and not backup.exists():
            os.replace(shard, backup)
        os.replace(staging, shard)
        fsync_folder(folder)
    elif not (shard / "edge_config.json").is_file():
        raise StoreError(
            f"The copy of collection {folder.name!r} with visual vectors is missing from {folder}. The old shard "
            f"is in {backup}: move it back to {shard}, delete {VISUAL_JOURNAL} and run `{VISUAL_COMMAND}` again."
        )
    visual = (journal["visual_model"], int(journal["visual_dim"]))
    document = meta_document(journal["model"], int(journal["dim"]), visual)
    state = {"clean_close": False, "points": int(journal["points"]), "sample": list(journal["sample"])}
    write_json(folder / META_NAME, {**document, "state": state})
    (folder / VISUAL_JOURNAL).unlink()
    fsync_folder(folder)
    return {"points": int(journal["points"]), "backup": str(backup)}


def _read_visual_journal(path: Path) -> dict[str, Any] | None:
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        keys = ("backup", "model", "dim", "visual_model", "visual_dim", "points", "sample")
        return {key: journal[key] for key in keys}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(damaged_message(path.parent, f"{path.name} is unreadable: {exc}")) from None


def _finish_copy(shard: Any, copied: int) -> None:
    """A copied shard's payload indexes, its graph when it is large enough, and its data on disk."""
    create_payload_indexes(shard)
    if copied >= OPTIMIZE_MIN_NEW:
        shard.optimize()
    shard.flush()
