"""The optional image-only model (EMBEDDER_VISUAL_MODEL): a second vector per image for "Similar",
image queries and near-duplicates, where what matters is how pictures look, not what words fit them.

A plain ViT (`google/vit-base-patch16-224-in21k`) or DINOv2 (`facebook/dinov2-small`) through
transformers' own image processor and model, or a folder saved with `save_pretrained`. The vector is
the model's pooled output (DINOv2: its normalised CLS token; ViT: its pooler), else the CLS token.
It reuses `Encoder`'s batching, fp16 on CUDA and pinned copies; it reads no text.
"""

from __future__ import annotations

import torch
from PIL import Image

from embedder.errors import ModelLoadError
from embedder.models.base import MAX_ASPECT_UNCROPPED, Encoder, PreparedImage, crop_to_aspect, pick_device
from embedder.models.hub import load_pretrained
from embedder.models.ids import model_id_of

VARIABLE = "EMBEDDER_VISUAL_MODEL"


class VisualEncoder(Encoder):
    """An image-only transformers model and its image processor; `encode_images` as `Encoder`'s."""

    def __init__(self, name: str, device: str = "auto", batch_size: int = 0) -> None:
        self.device = pick_device(device)
        self.model_id = model_id_of(name)
        self.model, self._processor = _load(name)
        if self.device.startswith("cuda"):
            self.model.half()
        self.model.to(self.device).eval()
        self._crops = bool(getattr(self._processor, "do_center_crop", False))
        self._ready(int(self.model.config.hidden_size), _input_size(self._processor), batch_size)

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """transformers' image processor on one image (resize, crop if it crops, rescale, normalise)."""
        image = crop_to_aspect(image) if self._crops else crop_to_aspect(image, MAX_ASPECT_UNCROPPED)
        pixels = self._processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"][0]
        return PreparedImage(pixels.to(self._input_dtype).contiguous())

    def _image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        return pooled(self.model(pixel_values=pixels))

    def encode_texts(self, texts):  # noqa: ANN001, ANN201 - an image-only model has no text tower
        raise ModelLoadError(f"{VARIABLE} {self.model_id!r} embeds images only; texts go to EMBEDDER_MODEL")


def pooled(output) -> torch.Tensor:
    """The image's vector from a transformers vision model's output: its pooled output, else the CLS token."""
    pooler = getattr(output, "pooler_output", None)
    return pooler if pooler is not None else output.last_hidden_state[:, 0]


def _load(name: str):
    hint = (
        f"Set {VARIABLE} to a folder holding an image model and its image processor (saved with "
        "save_pretrained), or connect to the internet once so it can be downloaded, or unset it."
    )
    model, processor = load_pretrained(
        name, "AutoImageProcessor", missing=f"Model folder {name!r} ({VARIABLE}) does not exist",
        failed=f"Could not load the image model {name!r} ({VARIABLE})", hint=hint,
    )
    if getattr(model, "main_input_name", None) != "pixel_values" or not hasattr(model.config, "hidden_size"):
        raise ModelLoadError(
            f"{VARIABLE} {name!r} is not an image model; name one such as facebook/dinov2-small. {hint}"
        )
    return model, processor


def _input_size(processor) -> int:
    """The side images are decoded at, at least: the larger of the processor's resize and crop."""
    sides = [224]
    for spec in (getattr(processor, "size", None), getattr(processor, "crop_size", None)):
        get = spec.get if isinstance(spec, dict) else lambda key, spec=spec: getattr(spec, key, None)
        sides += [int(get(key)) for key in ("height", "shortest_edge") if spec is not None and get(key)]
    return max(sides) if len(sides) > 1 else 224
