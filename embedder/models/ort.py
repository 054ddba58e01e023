"""ONNX Runtime, imported so that the files it keeps for itself stay in the product's model cache.

Importing onnxruntime writes a device id and a small database under `$XDG_CACHE_HOME/Microsoft/
DeveloperTools/.onnxruntime` (else `~/.cache/...`); nothing is sent, but nothing the product writes may
land outside the folders its settings name. So the one import goes through here, with
XDG_CACHE_HOME pointing into MODEL_CACHE_DIR for the moment of the import only.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from embedder.config import DEFAULT_MODEL_CACHE

RUNTIME_FOLDER = "onnxruntime"  # below MODEL_CACHE_DIR
_import_lock = threading.Lock()


def import_onnxruntime(cache_dir: Path | None = None) -> ModuleType:
    """`onnxruntime`, imported once with its own files kept in `cache_dir` (MODEL_CACHE_DIR)."""
    if "onnxruntime" in sys.modules:
        return sys.modules["onnxruntime"]
    with _import_lock:
        saved = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = str(Path(cache_dir or DEFAULT_MODEL_CACHE) / RUNTIME_FOLDER)
        try:
            import onnxruntime
        finally:
            if saved is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = saved
    return onnxruntime
