"""Which collections a store holds, with the model that made each one and how many images it has,
read without loading a model (and, for the embedded store, without taking its folder's lock: only
each collection's own record is read, so this works while the app has the store open).

Each collection records its model and refuses another (`contract.mismatch_message`), so a tuned
model indexes into a collection of its own and the old one stays as it was: this is the list the
Index page and `embedder collections` choose from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedder.errors import StoreError

if TYPE_CHECKING:
    from embedder.config import Settings
    from embedder.store.contract import ImageStore
    from embedder.store.lock import FolderLock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionInfo:
    """One collection: its name, the model id its vectors were made by (None: none yet), their size,
    how many images it holds, its visual model, and whether the settings point at it."""

    name: str
    model: str | None
    dim: int | None
    images: int
    visual_model: str | None = None
    current: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "dim": self.dim, "images": self.images,
            "visual_model": self.visual_model, "current": self.current,
        }


def list_collections(settings: Settings, open_store: ImageStore | None = None) -> list[CollectionInfo]:
    """Every collection of the configured storage, by name. An embedded collection's count is the one
    recorded when it was last opened or closed (exact after a clean close); `open_store`, when given,
    gives the live count of its own collection."""
    if settings.qdrant_url:
        from embedder.store.server import server_collections

        rows = server_collections(settings)
    else:
        from embedder.store.edge import META_NAME

        rows = _embedded_collections(Path(settings.qdrant_path), META_NAME)
    found = []
    for row in rows:
        images = row["images"]
        if open_store is not None and row["name"] == open_store.collection:
            images = open_store.count()
        found.append(CollectionInfo(
            row["name"], row["model"], row["dim"], int(images or 0), row["visual_model"],
            current=row["name"] == settings.collection,
        ))
    return found


def _embedded_collections(root: Path, record: str) -> list[dict[str, Any]]:
    """The collections under QDRANT_PATH: each folder holding a collection record (hidden ones are
    work in progress: a migration, a restore)."""
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"Cannot read the storage folder {root}: {exc.strerror or exc}") from None
    rows = []
    for folder in folders:
        meta = _record(folder / record)
        if meta is None:
            continue
        state = meta.get("state") if isinstance(meta.get("state"), dict) else {}
        rows.append({
            "name": folder.name,
            "model": meta.get("model") if isinstance(meta.get("model"), str) else None,
            "dim": meta.get("dim") if isinstance(meta.get("dim"), int) else None,
            "images": state.get("points") if isinstance(state.get("points"), int) else 0,
            "visual_model": meta.get("visual_model") if isinstance(meta.get("visual_model"), str) else None,
        })
    return rows


def _record(path: Path) -> dict[str, Any] | None:
    """A collection record, None if there is none or it cannot be read (opening it says why)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return meta if isinstance(meta, dict) else None


def find_collection(settings: Settings, name: str) -> CollectionInfo | None:
    """The collection called `name`, None if the storage has none by that name."""
    return next((c for c in list_collections(settings) if c.name == name), None)


def open_as_recorded(settings: Settings, lock: FolderLock | None = None) -> ImageStore | None:
    """The configured collection opened for the model it records, without loading that model (to
    read what it knows about pictures); None when there is no such collection or it holds no model."""
    from embedder.store import open_store

    info = find_collection(settings, settings.collection)
    if info is None or info.model is None or info.dim is None:
        if lock is not None:
            lock.release()
        return None
    return open_store(settings, info.model, info.dim, lock)
