"""The backup archive's layout: one tar file whose first member, `embedder-backup.json`, lists the
size and SHA-256 of every other member; written whole, read back only after every member is checked.
Shared by the embedded backup (`backup.py`) and the server's snapshots (`snapshots.py`)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

from embedder import __version__
from embedder.config import Settings
from embedder.errors import StoreError
from embedder.models.hub import looks_like_path
from embedder.models.ids import HF_PREFIX, expected_model_id

log = logging.getLogger(__name__)

MANIFEST_NAME = "embedder-backup.json"
BACKUP_KIND = "embedder-backup"
BACKUP_FORMAT = 1
COLLECTION_DIR = "collection"  # an embedded backup's files, whatever the collection was called
SNAPSHOT_DIR = "snapshot"  # a server backup's snapshot file
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
    model_setting: str = ""  # what EMBEDDER_MODEL must say to search it (see `model_to_set`)


# --- the model id, without loading the model ----------------------------------------------------


def loading_setting(settings: Settings, model: str) -> dict[str, str]:
    """For a manifest: the EMBEDDER_MODEL that loads the backup's `model` (a local folder by its
    path, where the id records only its name), when the settings name that model."""
    return {"model_setting": settings.model} if expected_model_id(settings.model) == model else {}


def model_to_set(manifest: dict[str, Any], settings: Settings) -> str:
    """What EMBEDDER_MODEL must say to search a backup's images: the current setting when it names
    the backup's model, else the one the backup was made with; a model folder that is not on this
    machine is described, not given as a value that cannot load."""
    model = str(manifest["model"])
    if expected_model_id(settings.model) == model:
        return settings.model
    made_with = manifest.get("model_setting")
    if not isinstance(made_with, str) or not made_with:
        return model  # an older backup: the id is all it says
    folder = made_with.removeprefix(HF_PREFIX)
    if looks_like_path(folder) and not Path(folder).expanduser().exists():
        return f"<the folder holding {model}, {made_with} where the backup was made>"
    return made_with


# --- the archive ---------------------------------------------------------------------------------


def destination(dest: str | Path, collection: str, now: datetime | None = None) -> Path:
    """The archive to write: DEST itself, or a dated file in it when DEST is a folder (or ends in /)."""
    text = os.fspath(dest)
    path = Path(os.path.expanduser(text))
    if path.is_dir() or text.endswith(("/", os.sep)):
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        return path / f"embedder-{collection}-{stamp}.tar.gz"
    return path


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class HashingReader:
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
                reader = HashingReader(fh)
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


def refuse_existing(target: Path, force: bool) -> None:
    if target.is_dir():
        raise StoreError(f"{target} is a folder; name a file for the backup (e.g. {target}/images.tar.gz).")
    if target.exists() and target.stat().st_size > 0 and not force:
        raise StoreError(
            f"{target} exists already. Choose another name, or add --force to replace it (it is replaced "
            "only once the new backup is complete)."
        )


@contextmanager
def archive_errors(source: Path) -> Iterator[None]:
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


def safe_member_name(name: str, top: str) -> bool:
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
        if not safe_member_name(name, top) or not (member.isfile() or member.isdir()):
            raise StoreError(f"The backup {source} holds {name!r}, which no backup holds: use another copy of it.")
        if member.isdir():
            if into is not None:
                (into / name).mkdir(parents=True, exist_ok=True)
            continue
        entry = files.get(name)
        if entry is None or name in seen:
            raise StoreError(f"The backup {source} is damaged ({name} is not in its manifest): use another copy of it.")
        seen.add(name)
        digest = copy_member(tar.extractfile(member), member.size, into / name if into is not None else None)
        if member.size != entry["size"] or digest != entry["sha256"]:
            raise StoreError(
                f"The backup {source} is damaged ({name} differs from its manifest): use another copy of it."
            )
    missing = sorted(set(files) - seen)
    if missing:
        raise StoreError(f"The backup {source} is incomplete ({missing[0]} is missing): use another copy of it.")


def copy_member(fh: IO[bytes] | None, size: int, target: Path | None) -> str:
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
