"""The id a model's vectors are recorded under, worked out from EMBEDDER_MODEL's text alone.

Each encoder records it with its vectors and the store refuses a collection made under another one;
backup and restore compare it without loading a model (or importing torch), so the rules live here,
once, for every backend.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedder.errors import ModelLoadError

OPEN_CLIP_PREFIX = "open_clip:"
HF_PREFIX = "hf:"


def model_id_of(model: str) -> str:
    """The name recorded with the vectors: a hub name as given, a local folder by its folder name."""
    path = Path(model).expanduser()
    return path.name if path.is_dir() else model


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`ARCH/PRETRAINED` → (arch, tag or checkpoint path); `hf-hub:ORG/NAME` → (itself, None)."""
    if spec.startswith("hf-hub:"):
        return spec, None
    arch, _, pretrained = spec.partition("/")
    if not arch:
        raise ModelLoadError(
            f"EMBEDDER_MODEL={OPEN_CLIP_PREFIX}{spec} names no architecture; "
            "write open_clip:ARCH/PRETRAINED, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k"
        )
    return arch, pretrained or None


def model_id_of_spec(spec: str) -> str:
    """An open_clip model's id: the spec, a checkpoint file by its file name."""
    arch, pretrained = parse_spec(spec)
    if pretrained and (os.sep in pretrained or Path(pretrained).expanduser().is_file()):
        return f"{OPEN_CLIP_PREFIX}{arch}/{Path(pretrained).name}"
    return OPEN_CLIP_PREFIX + spec


def expected_model_id(model: str) -> str:
    """The id the encoder EMBEDDER_MODEL names records (as its `model_id` would be)."""
    if model.startswith(OPEN_CLIP_PREFIX):
        return model_id_of_spec(model[len(OPEN_CLIP_PREFIX) :])
    if model.startswith(HF_PREFIX):
        return HF_PREFIX + model_id_of(model[len(HF_PREFIX) :])
    return model_id_of(model)
