"""Hugging Face image-text models (SigLIP, SigLIP 2) through transformers' own processor and model.

EMBEDDER_MODEL=hf:google/siglip2-base-patch16-224 (a hub name, cached or downloaded once) or
hf:/models/siglip (a folder saved with `save_pretrained`: model and processor).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from PIL import Image

from embedder.errors import ModelLoadError
from embedder.models.base import MAX_ASPECT_UNCROPPED, Encoder, PreparedImage, crop_to_aspect, pick_device
from embedder.models.hub import load_pretrained
from embedder.models.ids import HF_PREFIX, model_id_of

log = logging.getLogger(__name__)

TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")


class HfEncoder(Encoder):
    """A transformers model with `get_image_features` / `get_text_features` and its processor."""

    def __init__(self, name: str, device: str = "auto", batch_size: int = 0) -> None:
        self.device = pick_device(device)
        self.model_id = HF_PREFIX + model_id_of(name)
        self.model, self._processor = _load(name)
        if not all(hasattr(self.model, m) for m in ("get_image_features", "get_text_features")):
            raise ModelLoadError(
                f"EMBEDDER_MODEL={HF_PREFIX}{name} is not an image-text model (no image and text features); "
                "name a SigLIP or SigLIP 2 model, e.g. hf:google/siglip2-base-patch16-224"
            )
        if self.device.startswith("cuda"):
            self.model.half()
        self.model.to(self.device).eval()
        config = self.model.config
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
        return pooled_output(self.model.get_image_features(pixel_values=pixels, **extras))

    @property
    def max_text_tokens(self) -> int:
        return self._max_tokens

    def text_tokens(self, text: str) -> int:
        return len(self._processor.tokenizer(text)["input_ids"])

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        # SigLIP was trained on texts padded to the full length: padding changes its vectors.
        inputs = self._processor(
            text=texts, padding="max_length", max_length=self._max_tokens, truncation=True, return_tensors="pt"
        )
        # What the tokenizer gives, as the model card does (SigLIP's own tokenizer gives no mask).
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in TEXT_INPUTS}
        return pooled_output(self.model.get_text_features(**inputs))


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


def _image_input_size(image_processor) -> int:
    """The side the model sees: SigLIP's square, or SigLIP 2's patch grid at its patch budget."""
    patches = getattr(image_processor, "max_num_patches", None)
    if patches:
        return int(image_processor.patch_size * math.isqrt(int(patches)))
    size = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    size = size or getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return int(get("height") or get("shortest_edge") or 224)
