"""The model: loaded once, on the best device, turning images and texts into unit vectors.

`Encoder` is the one interface the product uses, and the sentence-transformers CLIP backend
(the default). Other backends subclass it: `encoder_openclip` (open_clip:ARCH/PRETRAINED) and
`encoder_hf` (hf:NAME, SigLIP / SigLIP 2 through transformers). `load_encoder(settings)` picks one
by EMBEDDER_MODEL and pairs it with EMBEDDER_TEXT_MODEL, if set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from embedder.errors import ModelLoadError
from embedder.models.ids import HF_PREFIX, OPEN_CLIP_PREFIX, model_id_of  # noqa: F401 - used from here too
from embedder.models.text_fast import FastClipText, clip_model_of

if TYPE_CHECKING:
    from embedder.config import Settings

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"cuda": 256, "mps": 64, "cpu": 32}
# A query is a handful of tokens: on the CPU one intra-op thread encodes it as fast as two, and
# stays fast when the other cores are busy (two threads then wait on each other: 5-10× slower).
SMALL_TEXT_BATCH = 8
HUB_PROBE_SECONDS = 3.0
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


class Encoder:
    """One loaded image-text model; the sentence-transformers CLIP backend. Thread-safe: calls into
    the model are serialised.

    A backend subclass sets `device`, `model_id`, its model, then calls `_ready(dim, image_size, ...)`
    and implements `prepare_image`, `_image_features` and `_text_features`.
    """

    _encodes_itself = True  # sentence-transformers' own encode() takes PIL images and texts

    def __init__(self, model: str, device: str = "auto", batch_size: int = 0, text_speedup: str = "auto") -> None:
        self.device = pick_device(device)
        self.model_id = model_id_of(model)
        self._model = _load(model, self.device)
        missing = {"text", "image"} - set(getattr(self._model, "modalities", ()))
        if missing:
            raise ModelLoadError(
                f"{model!r} is not a CLIP model: it cannot embed {' or '.join(sorted(missing))}. "
                "Set EMBEDDER_MODEL to a CLIP model such as clip-ViT-B-32."
            )
        if self.device.startswith("cuda"):
            self._model.half()
        self._model.max_seq_length = _text_max_tokens(self._model)  # longer queries are cut, not fatal
        self._ready(int(self._model.get_embedding_dimension()), _image_input_size(self._model), batch_size)
        self._text_speedup = text_speedup == "auto" and self.device == "cpu"

    def _ready(self, dim: int, image_size: int, batch_size: int) -> None:
        """What every backend shares once its model is loaded (in fp16 on CUDA)."""
        self._input_dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.dim = dim
        self.image_size = image_size
        self.batch_size = batch_size or DEFAULT_BATCH.get(self.device.split(":")[0], 32)
        self.text_model: TextModel | None = None  # queries go to this model when paired (EMBEDDER_TEXT_MODEL)
        self._text_speedup = False  # EMBEDDER_TEXT_SPEEDUP: only the sentence-transformers CLIP backend has one
        self._fast_text: FastClipText | None | bool = None  # built on the first query; False: not possible
        self._lock = threading.Lock()
        log.info("loaded %s (%d-d) on %s", self.model_id, self.dim, self.device)

    def encode_images(self, images: Sequence[Image.Image | PreparedImage]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per image (PIL images or `PreparedImage`s).

        Prepared images skip the processor here (it already ran, in the caller's threads); the
        vectors are the same as for the PIL images they were made from, up to float rounding.
        """
        items = list(images)
        if not self._encodes_itself or any(isinstance(item, PreparedImage) for item in items):
            return self._encode_prepared([i if isinstance(i, PreparedImage) else self.prepare_image(i) for i in items])
        return self._encode([crop_to_aspect(image) for image in items])

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        """The model's own preprocessing of one image, without the model: safe to call from many threads."""
        features = self._model.preprocess([crop_to_aspect(image)])
        pixels = features["pixel_values"][0].to(self._input_dtype)
        return PreparedImage(pixels.contiguous())

    def _image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        """The forward pass on a batch already on the device (the lock is held)."""
        return self._model({"pixel_values": pixels, "modality": "image"})["sentence_embedding"]

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        """Tokenise and run the text tower on one batch of texts (the lock is held). Backends only:
        the sentence-transformers model encodes texts itself (`_encode`)."""
        raise NotImplementedError

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

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (by the paired text model, if any)."""
        items = list(texts)
        if self.text_model is not None:
            return self.text_model.encode_texts(items)
        threads = 1 if self.device == "cpu" and len(items) <= SMALL_TEXT_BATCH else 0
        if self._text_speedup and 0 < len(items) <= SMALL_TEXT_BATCH:
            vectors = self._encode_fast(items)
            if vectors is not None:
                return vectors
        if self._encodes_itself:
            return self._encode(items, threads)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode(), _intra_op_threads(threads):
            batches = (items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size))
            out = [self._text_features(batch).float().cpu() for batch in batches]
        return normalise(torch.cat(out).numpy())

    def _encode_fast(self, items: list[str]) -> np.ndarray | None:
        """A few queries through `FastClipText` (one intra-op thread), or None where it cannot run."""
        with self._lock, torch.inference_mode(), _intra_op_threads(1):
            if self._fast_text is None:
                clip = clip_model_of(self._model)
                self._fast_text = FastClipText(clip) if clip is not None else False
                log.debug("text speed-up for %s: %s", self.model_id, "on" if clip is not None else "not possible")
            if not self._fast_text:
                return None
            ids = [self._model.preprocess([text])["input_ids"][0] for text in items]
            vectors = torch.stack([self._fast_text(row) for row in ids])
        return normalise(vectors.numpy())

    @property
    def model(self) -> torch.nn.Module:
        """The library's model this backend runs (a SentenceTransformer, a transformers model): what
        tuning trains and saves in that library's own format."""
        return self._model

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


# Text models trained into an image model's space (the image model's id, as `model_id_of` gives it).
KNOWN_TEXT_PAIRS = {
    "clip-ViT-B-32-multilingual-v1": "clip-ViT-B-32",
    "sentence-transformers/clip-ViT-B-32-multilingual-v1": "clip-ViT-B-32",
}


class TextModel:
    """A sentence-transformers text model that writes queries into an image model's space
    (EMBEDDER_TEXT_MODEL, e.g. clip-ViT-B-32-multilingual-v1 for clip-ViT-B-32's images)."""

    def __init__(self, model: str, device: str) -> None:
        self.model_id = model_id_of(model)
        self.device = device
        self._model = _load(model, device, what="text model", variable="EMBEDDER_TEXT_MODEL")
        if "text" not in set(getattr(self._model, "modalities", ("text",))):
            raise ModelLoadError(f"EMBEDDER_TEXT_MODEL {model!r} cannot embed text; unset it or name a text model")
        self.dim = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        threads = 1 if self.device == "cpu" and len(items) <= SMALL_TEXT_BATCH else 0
        with self._lock, torch.inference_mode(), _intra_op_threads(threads):
            vectors = self._model.encode(items, convert_to_numpy=True, show_progress_bar=False)
        return normalise(np.asarray(vectors, dtype=np.float32))


def load_encoder(settings: Settings) -> Encoder:
    """The backend EMBEDDER_MODEL names, paired with EMBEDDER_TEXT_MODEL if set (ModelLoadError if
    it cannot be loaded or the pair does not match)."""
    model = settings.model
    if model.startswith(OPEN_CLIP_PREFIX):
        from embedder.models.open_clip import OpenClipEncoder

        encoder: Encoder = OpenClipEncoder(model[len(OPEN_CLIP_PREFIX) :], settings.device, settings.batch_size)
    elif model.startswith(HF_PREFIX):
        from embedder.models.hf import HfEncoder

        encoder = HfEncoder(model[len(HF_PREFIX) :], settings.device, settings.batch_size)
    else:
        encoder = Encoder(model, settings.device, settings.batch_size, settings.text_speedup)
    if settings.text_model:
        pair_text_model(encoder, TextModel(settings.text_model, encoder.device))
    return encoder


def pair_text_model(encoder: Encoder, text_model: TextModel) -> None:
    """Send `encoder`'s queries to `text_model`, if it writes into the same space; else ModelLoadError."""
    fix = "Unset EMBEDDER_TEXT_MODEL, or set it to a text model trained for EMBEDDER_MODEL's images."
    if text_model.dim != encoder.dim:
        raise ModelLoadError(
            f"EMBEDDER_TEXT_MODEL {text_model.model_id!r} makes {text_model.dim}-d vectors but EMBEDDER_MODEL "
            f"{encoder.model_id!r} makes {encoder.dim}-d ones: they cannot be compared. {fix}"
        )
    expected = KNOWN_TEXT_PAIRS.get(text_model.model_id)
    if expected is not None and expected != encoder.model_id:
        raise ModelLoadError(
            f"EMBEDDER_TEXT_MODEL {text_model.model_id!r} was trained for {expected!r}, but EMBEDDER_MODEL is "
            f"{encoder.model_id!r}: its queries would find nothing. Set EMBEDDER_MODEL={expected} (and another "
            f"QDRANT_COLLECTION), or: {fix}"
        )
    encoder.text_model = text_model
    log.info("queries by %s into %s's space", text_model.model_id, encoder.model_id)


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


def _load(model: str, device: str, what: str = "CLIP model", variable: str = "EMBEDDER_MODEL"):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars on a user's terminal

    path = Path(model).expanduser()
    looks_like_path = path.is_absolute() or model.startswith((".", "~"))
    hint = (
        f"Set {variable} to a local folder that holds a sentence-transformers {what} "
        f"(e.g. {variable}=/models/{model_id_of(model)}, saved with SentenceTransformer.save), "
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
        if not hub_available():
            raise ModelLoadError(
                f"Could not load the {what} {model!r}: it is not in the local cache and the model "
                f"hub cannot be reached (no internet). {hint}"
            )
        return SentenceTransformer(model, device=device)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub and loader errors all mean the same to a user
        raise ModelLoadError(f"Could not load the {what} {model!r}: {first_line(exc)}. {hint}") from None


def hub_available() -> bool:
    """Whether a download may be tried: not told to stay offline, and the hub answers."""
    return os.environ.get("HF_HUB_OFFLINE", "") in ("", "0") and _hub_reachable()


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


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
