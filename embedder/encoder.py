"""The CLIP model: loaded once, on the best device, turning images and texts into unit vectors."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from embedder.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"cuda": 256, "mps": 64, "cpu": 32}
# A query is a handful of tokens: on the CPU one intra-op thread encodes it as fast as two, and
# stays fast when the other cores are busy (two threads then wait on each other: 5-10× slower).
SMALL_TEXT_BATCH = 8
HUB_PROBE_SECONDS = 3.0
MAX_ASPECT = 2.0


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


def model_id_of(model: str) -> str:
    """The name recorded with the vectors: a hub name as given, a local folder by its folder name."""
    path = Path(model).expanduser()
    return path.name if path.is_dir() else model


@dataclass(frozen=True)
class PreparedImage:
    """An image already turned into the model's input by the model's own processor (resize, centre
    crop, rescale, normalise), as a (3, H, W) CPU tensor in the dtype the model runs in.

    `Encoder.prepare_image` makes these in worker threads, so the thread that owns the model only
    stacks them and runs the forward pass.
    """

    pixels: torch.Tensor


class Encoder:
    """One loaded CLIP model. Thread-safe: calls into the model are serialised."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 0) -> None:
        self.device = pick_device(device)
        self.model_id = model_id_of(model)
        self._model = _load(model, self.device)
        missing = {"text", "image"} - set(getattr(self._model, "modalities", ()))
        if missing:
            raise ModelLoadError(
                f"{model!r} is not a CLIP model: it cannot embed {' or '.join(sorted(missing))}. "
                "Set EMBEDDER_MODEL to a CLIP model such as clip-ViT-B-32."
            )
        self._input_dtype = torch.float32
        if self.device.startswith("cuda"):
            self._model.half()
            self._input_dtype = torch.float16
        self.dim = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size or DEFAULT_BATCH.get(self.device.split(":")[0], 32)
        self.image_size = _image_input_size(self._model)
        self._model.max_seq_length = _text_max_tokens(self._model)  # longer queries are cut, not fatal
        self._lock = threading.Lock()
        log.info("loaded %s (%d-d) on %s", self.model_id, self.dim, self.device)

    def encode_images(self, images: Sequence[Image.Image | PreparedImage]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per image (PIL images or `PreparedImage`s).

        Prepared images skip the processor here (it already ran, in the caller's threads); the
        vectors are the same as for the PIL images they were made from, up to float rounding.
        """
        items = list(images)
        if any(isinstance(item, PreparedImage) for item in items):
            return self._encode_prepared([i if isinstance(i, PreparedImage) else self.prepare_image(i) for i in items])
        return self._encode([crop_to_aspect(image) for image in items])

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """The model's own preprocessing of one image, without the model: safe to call from many threads."""
        features = self._model.preprocess([crop_to_aspect(image)])
        pixels = features["pixel_values"][0].to(self._input_dtype)
        return PreparedImage(pixels.contiguous())

    def _encode_prepared(self, items: list[PreparedImage]) -> np.ndarray:
        """Stack, copy to the device (pinned + non-blocking on CUDA), forward: the model's whole job."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[torch.Tensor] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                pixels = self._to_device([p.pixels for p in items[start : start + self.batch_size]])
                features = self._model({"pixel_values": pixels, "modality": "image"})
                out.append(features["sentence_embedding"].float().cpu())
        return normalise(torch.cat(out).numpy())

    def _to_device(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if not self.device.startswith("cuda"):
            return torch.stack(tensors).to(self.device)
        # Page-locked staging buffer: the host→GPU copy runs asynchronously (DMA), queued on the
        # same stream as the forward pass that reads it, so no explicit synchronisation is needed.
        staging = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
        torch.stack(tensors, out=staging)
        return staging.to(self.device, non_blocking=True)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        items = list(texts)
        return self._encode(items, threads=1 if self.device == "cpu" and len(items) <= SMALL_TEXT_BATCH else 0)

    @property
    def max_text_tokens(self) -> int:
        """How many tokens of a text the model reads (77 for CLIP); the rest is cut off."""
        return int(self._model.max_seq_length)

    def text_tokens(self, text: str) -> int:
        """How many tokens `text` is to the model (its start and end markers included)."""
        return len(self._model.tokenizer(text, verbose=False)["input_ids"])

    def _encode(self, items: list, threads: int = 0) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode(), _intra_op_threads(threads):
            vectors = self._model.encode(
                items, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return normalise(np.asarray(vectors, dtype=np.float32))


def default_workers(device: str) -> int:
    """Decode threads for an indexing run: every core feeds a GPU; on the CPU the model needs the
    cores itself, and decode threads competing with its intra-op threads slowed runs down (a
    decode thread per core was the slowest setting measured: bench/results/index_threads_sweep.json)."""
    cores = os.cpu_count() or 2
    return cores if not device.startswith("cpu") else max(1, cores // 2)


@contextlib.contextmanager
def _intra_op_threads(threads: int):
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


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _load(model: str, device: str):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars on a user's terminal

    path = Path(model).expanduser()
    looks_like_path = path.is_absolute() or model.startswith((".", "~"))
    hint = (
        "Set EMBEDDER_MODEL to a local folder that holds a sentence-transformers CLIP model "
        "(e.g. EMBEDDER_MODEL=/models/clip-ViT-B-32, saved with SentenceTransformer.save), "
        "or connect to the internet once so the model can be downloaded."
    )
    if looks_like_path and not path.is_dir():
        raise ModelLoadError(f"Model folder {model!r} does not exist. {hint}")
    try:
        if path.is_dir():
            return SentenceTransformer(str(path), device=device, local_files_only=True)
        try:
            return SentenceTransformer(model, device=device, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached: fall through to a download
            log.debug("model %s is not in the local cache", model)
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or not _hub_reachable():
            raise ModelLoadError(
                f"Could not load the CLIP model {model!r}: it is not in the local cache and the model "
                f"hub cannot be reached (no internet). {hint}"
            )
        return SentenceTransformer(model, device=device)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub and loader errors all mean the same to a user
        raise ModelLoadError(f"Could not load the CLIP model {model!r}: {_first_line(exc)}. {hint}") from None


def _hub_reachable() -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), HUB_PROBE_SECONDS):
            return True
    except OSError:
        return False


def _image_input_size(model) -> int:
    """The side of the square the model sees (224 for ViT-B/32), read from its image processor."""
    processor = getattr(model[0], "processor", None)
    image_processor = getattr(processor, "image_processor", processor)
    for attr in ("crop_size", "size"):
        spec = getattr(image_processor, attr, None)
        if spec is None:
            continue
        get = spec.get if isinstance(spec, dict) else lambda key: getattr(spec, key, None)
        for key in ("height", "shortest_edge"):
            if get(key):
                return int(get(key))
    return 224


def _text_max_tokens(model) -> int:
    """CLIP's text tower has a fixed number of positions (77 for ViT-B/32)."""
    config = getattr(model[0], "config", None)
    text_config = getattr(config, "text_config", config)
    positions = getattr(text_config, "max_position_embeddings", None) or 77
    current = getattr(model, "max_seq_length", None)
    return min(current, positions) if current else positions


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
