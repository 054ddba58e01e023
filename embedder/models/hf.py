"""Hugging Face image-text models (SigLIP, SigLIP 2) through transformers' own processor and model.

EMBEDDER_MODEL=hf:google/siglip2-base-patch16-224 (a hub name, cached or downloaded once) or
hf:/models/siglip (a folder saved with `save_pretrained`: model and processor).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from embedder.models.encoder import (
    HF_PREFIX, MAX_ASPECT_UNCROPPED, Encoder, PreparedImage,
    crop_to_aspect, first_line, hub_available, model_id_of, pick_device,
)
from embedder.errors import ModelLoadError

log = logging.getLogger(__name__)

TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")


class HfEncoder(Encoder):
    """A transformers model with `get_image_features` / `get_text_features` and its processor."""

    _encodes_itself = False

    def __init__(self, name: str, device: str = "auto", batch_size: int = 0) -> None:
        self.device = pick_device(device)
        self.model_id = HF_PREFIX + model_id_of(name)
        self._model, self._processor = _load(name)
        if not all(hasattr(self._model, m) for m in ("get_image_features", "get_text_features")):
            raise ModelLoadError(
                f"EMBEDDER_MODEL={HF_PREFIX}{name} is not an image-text model (no image and text features); "
                "name a SigLIP or SigLIP 2 model, e.g. hf:google/siglip2-base-patch16-224"
            )
        if self.device.startswith("cuda"):
            self._model.half()
        self._model.to(self.device).eval()
        config = self._model.config
        text_config = getattr(config, "text_config", config)
        self._max_tokens = int(getattr(text_config, "max_position_embeddings", 64))
        image_processor = self._processor.image_processor
        self._crops = bool(getattr(image_processor, "do_center_crop", False))
        dim = int(getattr(text_config, "projection_size", None) or text_config.hidden_size)
        self._ready(dim, _image_input_size(image_processor), batch_size)

    @property
    def processor(self) -> Any:
        """transformers' processor of the model (tokenizer and image processor), saved beside it."""
        return self._processor

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """transformers' processor on one image (resize, rescale, normalise; SigLIP 2: patches + mask)."""
        image = crop_to_aspect(image) if self._crops else crop_to_aspect(image, MAX_ASPECT_UNCROPPED)
        inputs = self._processor(images=[image.convert("RGB")], return_tensors="pt")
        pixels = inputs.pop("pixel_values")[0].to(self._input_dtype).contiguous()
        return PreparedImage(pixels, {key: value[0] for key, value in inputs.items()})

    def _image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        return pooled_output(self._model.get_image_features(pixel_values=pixels, **extras))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        # SigLIP was trained on texts padded to the full length: padding changes its vectors.
        inputs = self._processor(
            text=texts, padding="max_length", max_length=self._max_tokens, truncation=True, return_tensors="pt"
        )
        # What the tokenizer gives, as the model card does (SigLIP's own tokenizer gives no mask).
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in TEXT_INPUTS}
        return pooled_output(self._model.get_text_features(**inputs))


def pooled_output(output) -> torch.Tensor:
    """transformers 5 returns a model output whose pooled vector is the embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _load(name: str):
    hint = (
        f"Set EMBEDDER_MODEL to {HF_PREFIX}/path/to/folder holding a SigLIP model and processor "
        "(saved with save_pretrained), or connect to the internet once so it can be downloaded."
    )
    return load_pretrained(
        name, "AutoProcessor", missing=f"Model folder {name!r} does not exist",
        failed=f"Could not load the model {HF_PREFIX}{name}", hint=hint,
    )


def load_pretrained(name: str, processor: str, missing: str, failed: str, hint: str) -> tuple[Any, Any]:
    """A transformers model and its `processor` (a transformers class name: "AutoProcessor",
    "AutoImageProcessor") from a Hugging Face name or a local folder: the local copy first, the hub
    only where it can be reached. Every failure is one ModelLoadError: `missing` (a folder that is not
    there) or `failed: why`, then `hint`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(name).expanduser()
    if (path.is_absolute() or name.startswith((".", "~"))) and not path.is_dir():
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


def _image_input_size(image_processor) -> int:
    """The side the model sees: SigLIP's square, or SigLIP 2's patch grid at its patch budget."""
    patches = getattr(image_processor, "max_num_patches", None)
    if patches:
        return int(image_processor.patch_size * math.isqrt(int(patches)))
    size = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    size = size or getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return int(get("height") or get("shortest_edge") or 224)
