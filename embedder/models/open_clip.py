"""open_clip models (OpenCLIP, LAION, SigLIP in open_clip, multilingual XLM-R CLIPs) with
open_clip's own preprocess and tokenizer.

EMBEDDER_MODEL=open_clip:ARCH/PRETRAINED: a pretrained tag (open_clip:ViT-B-32/laion2b_s34b_b79k,
cached or downloaded once), a local checkpoint file (open_clip:ViT-B-32//models/vit-b-32.pt), or
open_clip:hf-hub:ORG/NAME. Needs the optional package open_clip_torch and a torchvision built
for the installed torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from embedder.errors import ModelLoadError
from embedder.models.base import MAX_ASPECT_UNCROPPED, Encoder, PreparedImage, crop_to_aspect, pick_device
from embedder.models.hub import first_line
from embedder.models.ids import OPEN_CLIP_PREFIX, model_id_of_spec, parse_spec

log = logging.getLogger(__name__)

INSTALL = "pip install open_clip_torch==3.3.0 torchvision==0.28.0 (the torchvision built for torch 2.13.0)"


class OpenClipEncoder(Encoder):
    """An open_clip model: `encode_image` / `encode_text`, open_clip's preprocess and tokenizer."""

    def __init__(self, spec: str, device: str = "auto", batch_size: int = 0) -> None:
        self.device = pick_device(device)
        self.model_id = model_id_of_spec(spec)
        arch, pretrained = parse_spec(spec)
        open_clip = _import_open_clip(spec)
        self.model, self._preprocess, self._tokenizer = _load(open_clip, arch, pretrained, self.device, spec)
        if self.device.startswith("cuda"):
            self.model.half()
        self.model.eval()
        config = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        self._crops = config.get("resize_mode", "shortest") == "shortest"  # resize + centre crop
        side = getattr(self.model.visual, "image_size", 224)
        with torch.inference_mode():
            dim = int(self.model.encode_text(self._tokenizer([""]).to(self.device)).shape[-1])
        self._ready(dim, int(side[0] if isinstance(side, (tuple, list)) else side), batch_size)

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """open_clip's own preprocess (its torchvision transforms) on one image."""
        image = crop_to_aspect(image) if self._crops else crop_to_aspect(image, MAX_ASPECT_UNCROPPED)
        return PreparedImage(self._preprocess(image).to(self._input_dtype).contiguous())

    def _image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self._tokenizer(texts).to(self.device))


def _import_open_clip(spec: str):
    try:
        import open_clip
    except ImportError:
        raise ModelLoadError(
            f"EMBEDDER_MODEL={OPEN_CLIP_PREFIX}{spec} needs the open_clip_torch package, not installed: {INSTALL}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - e.g. torchvision built for another torch
        raise ModelLoadError(
            f"EMBEDDER_MODEL={OPEN_CLIP_PREFIX}{spec}: open_clip cannot be imported ({first_line(exc)}); "
            f"its torchvision must match torch: {INSTALL}"
        ) from None
    return open_clip


def _load(open_clip, arch: str, pretrained: str | None, device: str, spec: str):
    hint = (
        f"Set EMBEDDER_MODEL to {OPEN_CLIP_PREFIX}ARCH//path/to/checkpoint.pt (a local file), "
        "or connect to the internet once so the weights can be downloaded."
    )
    checkpoint = Path(pretrained).expanduser() if pretrained else None
    if checkpoint is not None and (checkpoint.is_absolute() or pretrained.startswith((".", "~"))):
        if not checkpoint.is_file():
            raise ModelLoadError(f"Checkpoint {pretrained!r} does not exist. {hint}")
        pretrained = str(checkpoint)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:  # noqa: BLE001 - unknown names, missing weights and hub errors alike
        raise ModelLoadError(
            f"Could not load EMBEDDER_MODEL={OPEN_CLIP_PREFIX}{spec}: {first_line(exc)}. {hint}"
        ) from None
    return model, preprocess, tokenizer
