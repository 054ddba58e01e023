"""`embedder backup` / `embedder restore`: the index in one archive file, checked before it is used.

A backup is one tar file (gzip level 1 unless its name ends in `.tar`: fast, and it squeezes the
zero pages Qdrant preallocates) whose first member, `embedder-backup.json`, says what it holds
(collection, model, dimension, image count, product version, creation time) and the size and
SHA-256 of every other member. Written under a temporary name and renamed when complete, so an
interrupted backup never looks like one.

- Embedded store (QDRANT_PATH): Qdrant Edge 0.9.0 cannot make snapshots (it only applies a server's),
  so under the folder lock the store is opened (every damage check of `edge.py` runs: a damaged
  store is not backed up), closed cleanly (its own file manifest is recorded in collection.json),
  and its folder archived as `collection/...`.
- Server (QDRANT_URL): a collection snapshot made and downloaded through Qdrant's API
  (`snapshots.py`), archived as `snapshot/<name>`.

Restoring checks the whole archive against its manifest, refuses another model's backup for the
configured collection, and never deletes: an embedded store that holds images is renamed aside
(`<collection>.before-restore-<time>`); a server collection is first saved as a snapshot on the
server. Nothing here loads torch or the model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from embedder.config import Settings
from embedder.durable import fsync_folder, written_whole
from embedder.errors import StoreError
from embedder.models.ids import expected_model_id
from embedder.store.archive import (
    COLLECTION_DIR, SNAPSHOT_DIR, BackupResult, RestoreResult, archive_errors, compressed, destination,
    loading_setting, model_to_set, new_manifest, read_manifest, refuse_existing, sha256_of, verify_members,
    write_archive,
)
from embedder.store.lock import FolderLock

log = logging.getLogger(__name__)

STAGING_NAME = ".restoring"  # inside QDRANT_PATH: a restore is unpacked and checked here first
ASIDE_SUFFIX = ".before-restore-"


def backup(settings: Settings, dest: str | Path, force: bool = False, lock: FolderLock | None = None) -> BackupResult:
    """Back up the configured collection into one archive file (see the module's docstring)."""
    target = destination(dest, settings.collection)
    refuse_existing(target, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if settings.qdrant_url:
            from embedder.store import snapshots

            return snapshots.backup_server(settings, target)
        return _backup_embedded(settings, target, lock)
    except OSError as exc:
        raise StoreError(f"Cannot write the backup {target}: {exc.strerror or exc} (nothing was changed).") from None


class _Kept:
    """The caller's lock, lent to a store that releases what it holds on close: kept here."""

    def __init__(self, lock: FolderLock) -> None:
        self._lock = lock

    def release(self) -> None:
        pass


def _open_and_close(settings: Settings, model: str, dim: int, lock: FolderLock | None) -> int:
    """Open the store (all its damage checks run), count it, close it cleanly; the lock stays held."""
    from embedder.store import edge

    if not edge.edge_available():
        raise StoreError("Backups of the embedded store need qdrant-edge-py (pip install -r requirements.txt).")
    store = edge.EdgeStore(settings, model, dim, lock=_Kept(lock) if lock else None)  # type: ignore[arg-type]
    try:
        return store.count()
    finally:
        store.close()


def _backup_embedded(settings: Settings, target: Path, lock: FolderLock | None) -> BackupResult:
    from embedder.store.edge import META_NAME

    folder = Path(settings.qdrant_path) / settings.collection
    meta = _collection_meta(folder / META_NAME)
    if meta is None:
        raise StoreError(
            f"Nothing to back up: {settings.qdrant_path} holds no collection {settings.collection!r} "
            "(QDRANT_PATH and QDRANT_COLLECTION say which index to back up)."
        )
    model, dim = meta.get("model"), meta.get("dim")
    if not isinstance(model, str) or not isinstance(dim, int):
        raise StoreError(f"Nothing to back up: collection {settings.collection!r} holds no images yet.")
    held = lock or FolderLock(Path(settings.qdrant_path))
    try:
        points = _open_and_close(settings, model, dim, held)
        found = sorted(folder.rglob("*"))
        files = {f"{COLLECTION_DIR}/{p.relative_to(folder).as_posix()}": p for p in found if p.is_file()}
        dirs = [COLLECTION_DIR] + [f"{COLLECTION_DIR}/{p.relative_to(folder).as_posix()}" for p in found if p.is_dir()]
        more = {k: meta[k] for k in ("visual_model", "visual_dim", "engine_version") if k in meta}
        manifest = new_manifest(
            "embedded", settings.collection, model, dim, points, engine="qdrant-edge", **more,
            **loading_setting(settings, model),
        )
        for name, path in files.items():
            manifest["files"][name] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
        with written_whole(target) as tmp:
            write_archive(tmp, manifest, files, dirs, compressed(target))
    finally:
        if lock is None:
            held.release()
    log.info("backed up %d images of %s to %s", points, settings.collection, target)
    return BackupResult(target, settings.collection, model, points, target.stat().st_size)


def _collection_meta(path: Path) -> dict[str, Any] | None:
    """collection.json, or None if there is none (an unreadable one is left to the store's checks)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


# --- restoring -----------------------------------------------------------------------------------


def check_model(manifest: dict[str, Any], settings: Settings, target: str) -> None:
    """Another model's backup only into another collection than the configured one."""
    expected = expected_model_id(settings.model)
    if manifest["model"] != expected and target == settings.collection:
        raise StoreError(
            f"This backup holds images indexed with model {manifest['model']!r} ({manifest['dim']}-d), but "
            f"EMBEDDER_MODEL is {expected!r}. Set EMBEDDER_MODEL={model_to_set(manifest, settings)} and run again, "
            f"or restore it into a collection of its own with --collection NAME (then search it with "
            f"QDRANT_COLLECTION=NAME and that EMBEDDER_MODEL)."
        )


def restore(
    settings: Settings,
    source: str | Path,
    force: bool = False,
    collection: str | None = None,
    lock: FolderLock | None = None,
) -> RestoreResult:
    """Check the backup `source` as a whole, then make it the collection (`collection` or QDRANT_COLLECTION)."""
    source = Path(os.path.expanduser(os.fspath(source)))
    target = collection or settings.collection
    with archive_errors(source), tarfile.open(source, "r:*") as tar:
        manifest = read_manifest(tar, source)
        if manifest["mode"] == "server" and not settings.qdrant_url:
            raise StoreError(
                f"{source} is a backup of a Qdrant server's collection; restore it with QDRANT_URL set to a server."
            )
        if manifest["mode"] == "embedded" and settings.qdrant_url:
            raise StoreError(
                f"{source} is a backup of the embedded store; restore it with QDRANT_URL unset (into QDRANT_PATH)."
            )
        check_model(manifest, settings, target)
        if settings.qdrant_url:
            from embedder.store import snapshots

            with tempfile.TemporaryDirectory(prefix="embedder-restore-") as scratch:
                try:
                    verify_members(tar, manifest, source, SNAPSHOT_DIR, Path(scratch))
                except OSError as exc:
                    if exc.errno is None:  # the archive's own (gzip) errors
                        raise
                    raise StoreError(
                        f"Cannot unpack the backup into {scratch} (TMPDIR): {exc.strerror or exc} "
                        "(nothing was changed)."
                    ) from None
                snapshot = Path(scratch) / next(iter(manifest["files"]))
                return snapshots.restore_server(settings, snapshot, manifest, target, force)
        held = lock or FolderLock(Path(settings.qdrant_path))
        try:
            return _restore_embedded(settings, tar, manifest, source, target, force)
        finally:
            if lock is None:
                held.release()


def _store_holds(folder: Path) -> str | None:
    """What the folder at the restore's target holds (None: nothing, it may go)."""
    if not folder.exists():
        return None
    if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
        return None
    meta = _collection_meta(folder / "collection.json") or {}
    points = (meta.get("state") or {}).get("points") if isinstance(meta.get("state"), dict) else None
    return f"{points} images" if isinstance(points, int) else "files"


def _aside_name(root: Path, target: str) -> Path:
    """`<collection>.before-restore-<time>`, not yet taken."""
    base = f"{target}{ASIDE_SUFFIX}{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    return path


def _restore_embedded(
    settings: Settings, tar: tarfile.TarFile, manifest: dict[str, Any], source: Path, target: str, force: bool
) -> RestoreResult:
    root = Path(settings.qdrant_path)
    folder = root / target
    holds = _store_holds(folder)
    if holds and not force:
        raise StoreError(
            f"Collection {target!r} in {root} holds {holds} already. Add --force to restore over it: it is "
            f"renamed aside to {target}{ASIDE_SUFFIX}<time> in that folder, not deleted."
        )
    staging = root / STAGING_NAME
    aside: str | None = None
    try:
        if staging.exists():  # a restore cut short (we hold the lock): only an unpacked copy of a backup
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        verify_members(tar, manifest, source, COLLECTION_DIR, staging)
        unpacked = replace(settings, qdrant_path=staging, collection=COLLECTION_DIR, qdrant_url=None)
        try:
            points = _open_and_close(unpacked, manifest["model"], manifest["dim"], None)  # the engine reads it all
        except StoreError as exc:
            raise StoreError(
                f"The store in the backup {source} cannot be opened ({exc}); nothing was changed."
            ) from None
        if folder.exists():
            if holds:
                moved = _aside_name(root, target)
                folder.rename(moved)
                aside = str(moved)
            else:
                shutil.rmtree(folder)  # folders only, no file: nothing to keep
        (staging / COLLECTION_DIR).rename(folder)
        fsync_folder(root)
    except OSError as exc:
        if exc.errno is None:  # the archive's own (gzip) errors
            raise
        where = f"the store that was there is at {aside}" if aside else "nothing was changed"
        raise StoreError(f"Cannot restore into {root}: {exc.strerror or exc} ({where}).") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("restored %d images into %s from %s", points, folder, source)
    return RestoreResult(target, manifest["model"], points, str(root), aside, model_to_set(manifest, settings))
