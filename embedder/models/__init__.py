"""Pictures and text to vectors: the model backends and the registry that chooses one.

`load_encoder(settings)` picks a backend by EMBEDDER_MODEL's prefix (none: sentence-transformers CLIP;
`hf:` SigLIP / SigLIP 2 through transformers; `open_clip:`) and pairs it with EMBEDDER_TEXT_MODEL;
`load_visual(settings)` loads EMBEDDER_VISUAL_MODEL; `load_query_encoder(settings)` answers text
queries from the exported text tower alone (`text_onnx`), without torch, where one is on disk. This
module imports no backend (and no torch) until one is asked for: a new backend is one module
subclassing `embedder.models.base.Encoder` and one row in `BACKENDS`.
"""

from __future__ import annotations

import importlib
import os
import platform
from typing import TYPE_CHECKING, Any

from embedder.models.ids import HF_PREFIX, OPEN_CLIP_PREFIX

if TYPE_CHECKING:
    from embedder.config import Settings
    from embedder.models.base import Encoder

# prefix → (module, class); the first prefix EMBEDDER_MODEL starts with wins, "" last.
BACKENDS: tuple[tuple[str, str, str], ...] = (
    (OPEN_CLIP_PREFIX, "embedder.models.open_clip", "OpenClipEncoder"),
    (HF_PREFIX, "embedder.models.hf", "HfEncoder"),
    ("", "embedder.models.sentence_transformers", "SentenceTransformersEncoder"),
)


def load_encoder(settings: Settings) -> Encoder:
    """The backend EMBEDDER_MODEL names, paired with EMBEDDER_TEXT_MODEL if set (ModelLoadError if
    it cannot be loaded or the pair does not match)."""
    model = settings.model
    prefix, module, name = next(row for row in BACKENDS if model.startswith(row[0]))
    backend = getattr(importlib.import_module(module), name)
    if prefix:
        encoder = backend(model[len(prefix) :], settings.device, settings.batch_size)
    else:
        encoder = backend(model, settings.device, settings.batch_size, settings.text_speedup, settings.model_cache_dir)
    if settings.text_model:
        from embedder.models.sentence_transformers import TextModel, pair_text_model

        pair_text_model(encoder, TextModel(settings.text_model, encoder.device))
    return encoder


def load_visual(settings: Settings) -> Encoder | None:
    """The image-only model EMBEDDER_VISUAL_MODEL names, on EMBEDDER_DEVICE; None when it is unset."""
    if not settings.visual_model:
        return None
    from embedder.models.visual import VisualEncoder

    return VisualEncoder(settings.visual_model, settings.device, settings.batch_size)


def load_query_encoder(settings: Settings) -> Any | None:
    """For text queries only: the exported text tower of EMBEDDER_MODEL (`text_onnx.TextQueryEncoder`:
    no torch; anything else loads the full encoder), where an adopted export matches the model's
    files as they are now and the full encoder would run queries on the CPU through it; else None."""
    from embedder.models.text_onnx import TextQueryEncoder, open_tower, runtime_available

    model = settings.model
    if any(model.startswith(row[0]) for row in BACKENDS if row[0]) or settings.text_model:
        return None
    if settings.text_speedup != "auto" or not runtime_available() or not runs_on_cpu(settings.device):
        return None
    tower, _ = open_tower(settings.model_cache_dir, model)
    if tower is None:
        return None
    return TextQueryEncoder(tower, lambda: load_encoder(settings))


def runs_on_cpu(device: str) -> bool:
    """Whether EMBEDDER_DEVICE means the CPU here, told without torch: `cpu`, or `auto` where no
    NVIDIA/AMD GPU device and no Apple GPU is present (torch picks the same then)."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    gpu_devices = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/proc/driver/nvidia")
    apple_gpu = platform.system() == "Darwin" and platform.machine() == "arm64"
    return not apple_gpu and not any(os.path.exists(path) for path in gpu_devices)
