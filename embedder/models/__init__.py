"""Pictures and text to vectors: the model backends and the registry that chooses one.

`load_encoder(settings)` picks a backend by EMBEDDER_MODEL's prefix (none: sentence-transformers CLIP;
`hf:` SigLIP / SigLIP 2 through transformers; `open_clip:`) and pairs it with EMBEDDER_TEXT_MODEL;
`load_visual(settings)` loads EMBEDDER_VISUAL_MODEL. This module imports no backend (and no torch)
until one is asked for: a new backend is one module subclassing `embedder.models.base.Encoder` and
one row in `BACKENDS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
        encoder = backend(model, settings.device, settings.batch_size, settings.text_speedup)
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
