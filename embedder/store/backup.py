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

import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

from embedder import __version__
from embedder.config import Settings
from embedder.durable import fsync_folder, written_whole
from embedder.errors import StoreError
from embedder.models.ids import expected_model_id
from embedder.store.lock import FolderLock

log = logging.getLogger(__name__)

MANIFEST_NAME = "embedder-backup.json"
BACKUP_KIND = "embedder-backup"
BACKUP_FORMAT = 1
COLLECTION_DIR = "collection"  # an embedded backup's files, whatever the collection was called
SNAPSHOT_DIR = "snapshot"  # a server backup's snapshot file
STAGING_NAME = ".restoring"  # inside QDRANT_PATH: a restore is unpacked and checked here first
ASIDE_SUFFIX = ".before-restore-"
MAX_MANIFEST_BYTES = 64 * 2**20
BLOCK = 64 * 1024  # also the size of a run of zeros left as a hole when unpacking
ZEROS = bytes(BLOCK)
GZIP_LEVEL = 1  # ~5x faster than the default 9 on vectors, and the zero pages shrink just as well


@dataclass(frozen=True)
class BackupResult:
    path: Path
    collection: str
    model: str
    points: int
    size: int  # bytes of the archive


@dataclass(frozen=True)
class RestoreResult:
    collection: str
    model: str
    points: int
    location: str  # the folder or server restored into
    aside: str | None  # where the previous store was kept (a folder, or a snapshot on the server)


# --- the model id, without loading the model ----------------------------------------------------


# --- the archive ---------------------------------------------------------------------------------


def destination(dest: str | Path, collection: str, now: datetime | None = None) -> Path:
    """The archive to write: DEST itself, or a dated file in it when DEST is a folder (or ends in /)."""
    text = os.fspath(dest)
    path = Path(os.path.expanduser(text))
    if path.is_dir() or text.endswith(("/", os.sep)):
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        return path / f"embedder-{collection}-{stamp}.tar.gz"
    return path


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Hashing:
    """A file read through while its SHA-256 is taken (what tarfile copies from)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.sha.update(data)
        self.size += len(data)
        return data


def compressed(target: Path) -> bool:
    """Every backup is gzipped but one whose name ends in .tar."""
    return not target.name.endswith(".tar")


def write_archive(
    target: Path, manifest: dict[str, Any], files: dict[str, Path], dirs: list[str], compress: bool = True
) -> None:
    """Write the manifest, the folders and the files (archive name -> path) into `target`.

    The manifest's `files` must hold each file's size and SHA-256 already; a file that reads back
    differently while it is copied fails the backup.
    """
    mode = "w:gz" if compress else "w"
    options = {} if mode == "w" else {"compresslevel": GZIP_LEVEL}
    with open(target, "wb") as raw, tarfile.open(fileobj=raw, mode=mode, format=tarfile.PAX_FORMAT, **options) as tar:
        document = json.dumps(manifest, indent=2).encode("utf-8")
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mtime, info.mode = len(document), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(document))
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)
        for name, path in files.items():
            entry = manifest["files"][name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = entry["size"], 0o644, int(path.stat().st_mtime)
            with open(path, "rb") as fh:
                reader = _Hashing(fh)
                tar.addfile(info, reader)
            if reader.size != entry["size"] or reader.sha.hexdigest() != entry["sha256"]:
                raise StoreError(f"{path} changed while it was being backed up; run the backup again")


def new_manifest(mode: str, collection: str, model: str, dim: int, points: int, **more: Any) -> dict[str, Any]:
    return {
        "kind": BACKUP_KIND,
        "format": BACKUP_FORMAT,
        "mode": mode,
        "product_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "collection": collection,
        "model": model,
        "dim": dim,
        "points": points,
        **more,
        "files": {},
    }


def _refuse_existing(target: Path, force: bool) -> None:
    if target.is_dir():
        raise StoreError(f"{target} is a folder; name a file for the backup (e.g. {target}/images.tar.gz).")
    if target.exists() and target.stat().st_size > 0 and not force:
        raise StoreError(
            f"{target} exists already. Choose another name, or add --force to replace it (it is replaced "
            "only once the new backup is complete)."
        )


@contextmanager
def _archive_errors(source: Path) -> Iterator[None]:
    """An archive that cannot be read as a whole: one line."""
    try:
        yield
    except FileNotFoundError:
        raise StoreError(f"No backup at {source}: check the path.") from None
    except IsADirectoryError:
        raise StoreError(f"{source} is a folder; give the backup file (embedder-….tar.gz) in it.") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError) and exc.errno is not None:
            raise StoreError(f"Cannot read the backup {source}: {exc.strerror or exc}") from None
        raise StoreError(
            f"The backup {source} is damaged or incomplete ({exc or type(exc).__name__}): use another copy of it."
        ) from None


def read_manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    """The first member, checked for shape: what the archive says it holds."""
    member = tar.next()
    if member is None or member.name != MANIFEST_NAME or not member.isfile() or member.size > MAX_MANIFEST_BYTES:
        raise StoreError(f"{source} is not a backup made by `embedder backup` (it has no {MANIFEST_NAME} first).")
    try:
        manifest = json.loads(tar.extractfile(member).read().decode("utf-8"))  # type: ignore[union-attr]
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"The backup {source} is damaged ({MANIFEST_NAME} is unreadable: {exc}).") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (
        isinstance(manifest, dict)
        and manifest.get("kind") == BACKUP_KIND
        and manifest.get("mode") in ("embedded", "server")
        and isinstance(manifest.get("model"), str)
        and isinstance(manifest.get("dim"), int)
        and isinstance(manifest.get("points"), int)
        and isinstance(files, dict)
        and files
        and all(
            isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
            for v in files.values()
        )
    ):
        raise StoreError(f"The backup {source} is damaged ({MANIFEST_NAME} does not describe a backup).")
    if manifest["mode"] == "server" and len(files) != 1:
        raise StoreError(f"The backup {source} is damaged (a server backup holds one snapshot).")
    if manifest.get("format") != BACKUP_FORMAT:
        raise StoreError(
            f"The backup {source} is in format {manifest.get('format')!r}, made by embedder "
            f"{manifest.get('product_version', '?')}; this version ({__version__}) reads format {BACKUP_FORMAT}. "
            "Restore it with the version that made it."
        )
    return manifest


def _safe_name(name: str, top: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and parts[0] == top and not name.startswith("/") and ".." not in parts


def verify_members(
    tar: tarfile.TarFile, manifest: dict[str, Any], source: Path, top: str, into: Path | None
) -> None:
    """Read every member after the manifest, checking it against the manifest; with `into`,
    unpack it there (holes kept for runs of zeros). Anything unexpected, changed or missing is
    refused with one line."""
    files: dict[str, dict[str, Any]] = manifest["files"]
    seen: set[str] = set()
    while (member := tar.next()) is not None:  # not `for member in tar`: it starts again from the first
        name = member.name.rstrip("/")
        if not _safe_name(name, top) or not (member.isfile() or member.isdir()):
            raise StoreError(f"The backup {source} holds {name!r}, which no backup holds: use another copy of it.")
        if member.isdir():
            if into is not None:
                (into / name).mkdir(parents=True, exist_ok=True)
            continue
        entry = files.get(name)
        if entry is None or name in seen:
            raise StoreError(f"The backup {source} is damaged ({name} is not in its manifest): use another copy of it.")
        seen.add(name)
        digest = _copy_member(tar.extractfile(member), member.size, into / name if into is not None else None)
        if member.size != entry["size"] or digest != entry["sha256"]:
            raise StoreError(
                f"The backup {source} is damaged ({name} differs from its manifest): use another copy of it."
            )
    missing = sorted(set(files) - seen)
    if missing:
        raise StoreError(f"The backup {source} is incomplete ({missing[0]} is missing): use another copy of it.")


def _copy_member(fh: IO[bytes] | None, size: int, target: Path | None) -> str:
    """The member's SHA-256, written to `target` if given (blocks of zeros left as holes)."""
    sha = hashlib.sha256()
    out = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = open(target, "wb")
    try:
        while fh is not None:
            block = fh.read(BLOCK)
            if not block:
                break
            sha.update(block)
            if out is not None:
                if block == ZEROS[: len(block)]:
                    out.seek(len(block), os.SEEK_CUR)
                else:
                    out.write(block)
        if out is not None:
            out.truncate(size)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    return sha.hexdigest()


# --- backing up ----------------------------------------------------------------------------------


def backup(settings: Settings, dest: str | Path, force: bool = False, lock: FolderLock | None = None) -> BackupResult:
    """Back up the configured collection into one archive file (see the module's docstring)."""
    target = destination(dest, settings.collection)
    _refuse_existing(target, force)
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
        manifest = new_manifest("embedded", settings.collection, model, dim, points, engine="qdrant-edge", **more)
        for name, path in files.items():
            manifest["files"][name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
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
            f"EMBEDDER_MODEL is {expected!r}. Set EMBEDDER_MODEL={manifest['model']} and run again, or restore it "
            f"into a collection of its own with --collection NAME (then search it with QDRANT_COLLECTION=NAME "
            f"and EMBEDDER_MODEL={manifest['model']})."
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
    with _archive_errors(source), tarfile.open(source, "r:*") as tar:
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
    return RestoreResult(target, manifest["model"], points, str(root), aside)
