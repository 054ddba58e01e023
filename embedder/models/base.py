"""The one interface the product uses for an image-text model, and what every backend shares.

A backend (`sentence_transformers`, `hf`, `open_clip`, `visual`) subclasses `Encoder`: it sets
`device`, `model_id` and its model, calls `_ready(dim, image_size, batch_size)`, and implements
`prepare_image`, `_image_features` and (with a text tower) `_text_features`. Batching, fp16 and pinned
copies on CUDA, the model lock and unit-length vectors are here, once. `embedder.models` chooses the
backend (its registry imports none of them until asked).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from embedder.errors import ModelLoadError
from embedder.models.vectors import SMALL_TEXT_BATCH, normalise

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"cuda": 256, "mps": 64, "cpu": 32}
MAX_ASPECT = 2.0
# Models that squash the whole image into their square (SigLIP, no centre crop): only slivers are cut.
MAX_ASPECT_UNCROPPED = 8.0


def pick_device(requested: str = "auto") -> str:
    """`auto` means cuda, then mps, then cpu; an explicit device that is missing is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"EMBEDDER_DEVICE={requested} but no CUDA GPU is available; use auto or cpu")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("EMBEDDER_DEVICE=mps but Apple MPS is not available; use auto or cpu")
    return requested


@dataclass(frozen=True)
class PreparedImage:
    """An image already turned into the model's input by the model's own processor (resize, centre
    crop, rescale, normalise), as a (3, H, W) CPU tensor in the dtype the model runs in.

    `Encoder.prepare_image` makes these in worker threads, so the thread that owns the model only
    stacks them and runs the forward pass.
    """

    pixels: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # other inputs (SigLIP 2: patch mask, shape)


class TextEncoder(Protocol):
    """A model that writes queries into an image model's space (EMBEDDER_TEXT_MODEL)."""

    model_id: str
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class Encoder:
    """One loaded image-text model. Thread-safe: calls into the model are serialised."""

    device: str
    model_id: str

    def _ready(self, dim: int, image_size: int, batch_size: int) -> None:
        """What every backend shares once its model is loaded (in fp16 on CUDA)."""
        self._input_dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.dim = dim
        self.image_size = image_size
        self.batch_size = batch_size or DEFAULT_BATCH.get(self.device.split(":")[0], 32)
        self.text_model: TextEncoder | None = None  # queries go to this model when paired (EMBEDDER_TEXT_MODEL)
        self._lock = threading.Lock()
        log.info("loaded %s (%d-d) on %s", self.model_id, self.dim, self.device)

    # --- what a backend implements ----------------------------------------------------------------

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """The model's own preprocessing of one image, without the model: safe to call from many threads."""
        raise NotImplementedError

    def _image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        """The forward pass on a batch already on the device (the lock is held)."""
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        """Tokenise and run the text tower on one batch of texts (the lock is held)."""
        raise NotImplementedError

    @property
    def max_text_tokens(self) -> int:
        """How many tokens of a text the model reads (77 for CLIP); the rest is cut off."""
        raise NotImplementedError

    def text_tokens(self, text: str) -> int:
        """How many tokens `text` is to the model (its start and end markers included)."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------

    def encode_images(self, images: Sequence[Image.Image | PreparedImage]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per image (PIL images or `PreparedImage`s).

        Prepared images skip the processor here (it already ran, in the caller's threads); the
        vectors are the same as for the PIL images they were made from, up to float rounding.
        """
        return self._encode_prepared([i if isinstance(i, PreparedImage) else self.prepare_image(i) for i in images])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (by the paired text model, if any)."""
        items = list(texts)
        if self.text_model is not None:
            return self.text_model.encode_texts(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode_texts(items, 1 if self.device == "cpu" and len(items) <= SMALL_TEXT_BATCH else 0)

    def _encode_texts(self, items: list[str], threads: int) -> np.ndarray:
        """Texts through `_text_features`, a batch at a time, on `threads` intra-op threads (0: as is)."""
        with self._lock, torch.inference_mode(), intra_op_threads(threads):
            batches = (items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size))
            out = [self._text_features(batch).float().cpu() for batch in batches]
        return normalise(torch.cat(out).numpy())

    def _encode_prepared(self, items: list[PreparedImage]) -> np.ndarray:
        """Stack, copy to the device (pinned + non-blocking on CUDA), forward: the model's whole job."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[torch.Tensor] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                pixels = self._to_device([p.pixels for p in chunk])
                extras = {key: torch.stack([p.extras[key] for p in chunk]).to(self.device) for key in chunk[0].extras}
                out.append(self._image_features(pixels, extras).float().cpu())
        return normalise(torch.cat(out).numpy())

    def _to_device(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if not self.device.startswith("cuda"):
            return torch.stack(tensors).to(self.device)
        # Page-locked staging buffer: the host→GPU copy runs asynchronously (DMA), queued on the
        # same stream as the forward pass that reads it, so no explicit synchronisation is needed.
        staging = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
        torch.stack(tensors, out=staging)
        return staging.to(self.device, non_blocking=True)


def default_workers(device: str) -> int:
    """Decode threads for an indexing run: every core feeds a GPU; on the CPU the model needs the
    cores itself, and decode threads competing with its intra-op threads slowed runs down (a
    decode thread per core was the slowest setting measured: bench/results/index_threads_sweep.json)."""
    cores = os.cpu_count() or 2
    return cores if not device.startswith("cpu") else max(1, cores // 2)


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run with `threads` intra-op threads (0: as is). Callers hold the model lock, the only user."""
    if not threads or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def crop_to_aspect(image: Image.Image, max_ratio: float = MAX_ASPECT) -> Image.Image:
    """The centre of a very long or tall image, at most `max_ratio`:1.

    CLIP scales the shorter side up to its input size and keeps only the centre square, so this
    loses nothing the model sees — but a 20000×1 sliver no longer grows into gigapixels on the way.
    """
    width, height = image.size
    if width > height * max_ratio:
        keep = max(1, round(height * max_ratio))
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > width * max_ratio:
        keep = max(1, round(width * max_ratio))
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image
