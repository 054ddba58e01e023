"""Where model weights come from: the local copy first, the Hugging Face hub only where it answers.

One loader for transformers models (SigLIP, the visual model), one probe of the hub, one way of
turning a loader's exception into the first line a person reads.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from embedder.errors import ModelLoadError

log = logging.getLogger(__name__)

HUB_PROBE_SECONDS = 3.0


def hub_available() -> bool:
    """Whether a download may be tried: not told to stay offline, and the hub answers."""
    return os.environ.get("HF_HUB_OFFLINE", "") in ("", "0") and hub_reachable()


def hub_reachable() -> bool:
    """Whether the hub (HF_ENDPOINT, else huggingface.co) accepts a connection within a few seconds."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), HUB_PROBE_SECONDS):
            return True
    except OSError:
        return False


def first_line(exc: Exception) -> str:
    """An exception's first line of text (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def looks_like_path(name: str) -> bool:
    """Whether a model setting names a folder (absolute, `./…`, `~/…`) rather than a hub name."""
    return Path(name).expanduser().is_absolute() or name.startswith((".", "~"))


def load_pretrained(name: str, processor: str, missing: str, failed: str, hint: str) -> tuple[Any, Any]:
    """A transformers model and its `processor` (a transformers class name: "AutoProcessor",
    "AutoImageProcessor") from a Hugging Face name or a local folder: the local copy first, the hub
    only where it can be reached. Every failure is one ModelLoadError: `missing` (a folder that is not
    there) or `failed: why`, then `hint`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(name).expanduser()
    if looks_like_path(name) and not path.is_dir():
        raise ModelLoadError(f"{missing}. {hint}")
    source = str(path) if path.is_dir() else name
    try:
        try:
            return _from(source, processor, local_files_only=True)
        except OSError:
            if path.is_dir() or not hub_available():
                raise
            log.info("downloading %s", name)
            return _from(source, processor, local_files_only=False)
    except Exception as exc:  # noqa: BLE001 - hub and loader errors all mean the same to a user
        raise ModelLoadError(f"{failed}: {first_line(exc)}. {hint}") from None


def _from(source: str, processor: str, local_files_only: bool) -> tuple[Any, Any]:
    import transformers
    from transformers.utils import logging as hf_logging

    # Quiet while loading: e.g. "requires torchvision, falling back to the PIL processor" or "use_fast"
    # notes are not something a person searching can act on (the PIL processor is the one the parity
    # tests check).
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = transformers.AutoModel.from_pretrained(source, local_files_only=local_files_only)
        made = getattr(transformers, processor).from_pretrained(source, local_files_only=local_files_only)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, made
