"""Switching the app and the commands between collections (a tuned model's and the old one), and back.

A tuned model makes vectors of its own, so it indexes into a collection of its own while the old
collection keeps answering; `switch_collection` then points the settings file at the chosen
collection and the model that made it (QDRANT_COLLECTION, EMBEDDER_MODEL). Switching back is the
same call with the old name. Nothing is deleted or re-indexed: only the settings file changes.

The store records a model by its id (a folder's name, not its path), so the settings each
collection was used with are remembered beside the settings file (`collections.json`): switching
back to a collection of a model in a folder finds that folder again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedder.config import Settings, setting_fields
from embedder.durable import write_json
from embedder.errors import ConfigError
from embedder.models.ids import HF_PREFIX, OPEN_CLIP_PREFIX, expected_model_id, model_id_of
from embedder.store.settings_file import settings_file, update_settings_file
from embedder.store.catalog import CollectionInfo, find_collection

log = logging.getLogger(__name__)

MEMORY_NAME = "collections.json"
MEMORY_KIND = "embedder-collections"
COLLECTION, MODEL, TEXT_MODEL, VISUAL_MODEL = (
    "QDRANT_COLLECTION", "EMBEDDER_MODEL", "EMBEDDER_TEXT_MODEL", "EMBEDDER_VISUAL_MODEL",
)
DEFAULT_MODEL = next(f.default for f in setting_fields() if f.metadata["var"] == MODEL)


@dataclass(frozen=True)
class Switched:
    """What a switch wrote, and what still stands in its way."""

    settings_file: Path
    collection: str
    model: str
    images: int  # 0 for a collection that does not exist yet (indexing fills it)
    previous: str  # the collection the settings pointed at before
    overridden: tuple[str, ...]  # variables the environment sets: they win over the file until unset

    @property
    def exists(self) -> bool:
        return self.images > 0


def memory_path(settings: Settings) -> Path:
    """Where the settings each collection was used with are remembered: beside the settings file."""
    return settings_file(settings).parent / MEMORY_NAME


def remembered(settings: Settings) -> dict[str, dict[str, str | None]]:
    """{collection: {EMBEDDER_MODEL: …, EMBEDDER_TEXT_MODEL: …, EMBEDDER_VISUAL_MODEL: …}} ({} if none)."""
    try:
        document = json.loads(memory_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    collections = document.get("collections") if isinstance(document, dict) else None
    if not isinstance(collections, dict):
        return {}
    return {
        name: {var: value for var, value in entry.items() if isinstance(value, str) or value is None}
        for name, entry in collections.items()
        if isinstance(name, str) and isinstance(entry, dict)
    }


def as_setting(model: str) -> str:
    """A model as it is written into the settings file: a folder as its absolute path (a relative
    one would mean another folder from elsewhere), `hf:` folders too; a hub name as it is."""
    prefix = next((p for p in (HF_PREFIX, OPEN_CLIP_PREFIX) if model.startswith(p)), "")
    rest = model[len(prefix):]
    path = Path(rest).expanduser()
    return prefix + str(path.resolve()) if rest and path.is_dir() else model


def _usable_id(model_id: str) -> bool:
    """A recorded model id that is also a setting that loads it: a hub name (`org/name`, open_clip's
    `ARCH/TAG`) or the default model. A folder's model is recorded by the folder's name only."""
    return "/" in model_id or model_id == DEFAULT_MODEL


def switch_collection(
    settings: Settings, collection: str, model: str | None = None, environ: Mapping[str, str] | None = None
) -> Switched:
    """Point the settings file at `collection` and its model (see the module docstring).

    `model` (a name or folder) must be the model that made the collection; without it, the one it was
    last used with here, else the one it records where that is a name that loads. A collection that
    does not exist yet needs `model` (indexing with it then fills it). ConfigError when the model does
    not fit or cannot be told."""
    environ = os.environ if environ is None else environ
    info = find_collection(settings, collection)
    memory = remembered(settings)
    chosen = _model_for(settings, collection, info, model, memory.get(collection, {}))
    values: dict[str, str | None] = {
        COLLECTION: collection,
        MODEL: chosen,
        TEXT_MODEL: _text_model(settings, chosen, memory.get(collection, {})),
        VISUAL_MODEL: _visual_model(settings, info, memory.get(collection, {})),
    }
    memory[settings.collection] = {
        MODEL: as_setting(settings.model), TEXT_MODEL: settings.text_model, VISUAL_MODEL: settings.visual_model,
    }
    memory[collection] = {var: values[var] for var in (MODEL, TEXT_MODEL, VISUAL_MODEL)}
    path = update_settings_file(settings_file(settings), values)
    _remember(settings, memory)
    overridden = tuple(var for var, value in values.items() if var in environ and environ[var] != (value or ""))
    log.info("settings %s now use collection %s with model %s", path, collection, chosen)
    return Switched(path, collection, chosen, info.images if info else 0, settings.collection, overridden)


def _model_for(
    settings: Settings, collection: str, info: CollectionInfo | None, model: str | None, memory: Mapping[str, Any]
) -> str:
    recorded = info.model if info else None
    if model is not None:
        chosen = as_setting(model)
        if recorded is not None and expected_model_id(chosen) != recorded:
            raise ConfigError(
                f"Collection {collection!r} holds vectors made by model {recorded!r}, not {expected_model_id(chosen)!r}: "
                f"leave out the model to use the one that made it, or choose another collection for {model!r}"
            )
        return chosen
    if recorded is None:
        raise ConfigError(
            f"There is no collection {collection!r} with images yet ({settings.storage_location}); `embedder "
            "collections` lists them. To start one, name the model that will fill it (--model)."
        )
    for candidate in (memory.get(MODEL), settings.model):
        if isinstance(candidate, str) and expected_model_id(candidate) == recorded:
            return as_setting(candidate)
    if _usable_id(recorded):
        return recorded
    raise ConfigError(
        f"Collection {collection!r} was made by model {recorded!r}, a model folder this machine has not used it "
        "with: name the folder (--model /path/to/" + recorded.removeprefix(HF_PREFIX) + ")"
    )


def _text_model(settings: Settings, chosen: str, memory: Mapping[str, Any]) -> str | None:
    """EMBEDDER_TEXT_MODEL pairs with one image model: kept for the same model, else as remembered, else unset."""
    if expected_model_id(chosen) == expected_model_id(settings.model):
        return settings.text_model
    remembered_text = memory.get(TEXT_MODEL)
    return remembered_text if memory.get(MODEL) == chosen and isinstance(remembered_text, str) else None


def _visual_model(settings: Settings, info: CollectionInfo | None, memory: Mapping[str, Any]) -> str | None:
    """EMBEDDER_VISUAL_MODEL as the collection needs it: a new collection gets the current one; one
    without visual vectors none (it would be refused); one with them the model that made them (as
    remembered, or as now set, else by its recorded name)."""
    if info is None or info.model is None:
        return settings.visual_model
    if info.visual_model is None:
        return None
    for candidate in (memory.get(VISUAL_MODEL), settings.visual_model):
        if isinstance(candidate, str) and model_id_of(candidate) == info.visual_model:
            return as_setting(candidate)
    return info.visual_model


def _remember(settings: Settings, memory: dict[str, dict[str, str | None]]) -> None:
    try:
        write_json(memory_path(settings), {"kind": MEMORY_KIND, "format": 1, "collections": memory})
    except OSError as exc:  # the switch is done; only switching back to a folder model may need --model
        log.warning("could not remember the models of the collections in %s: %s", memory_path(settings), exc)
