"""The default backend: a sentence-transformers CLIP (`clip-ViT-B-32`, or a folder saved with
`SentenceTransformer.save`), and the sentence-transformers text models that write queries into a
CLIP's space (EMBEDDER_TEXT_MODEL, e.g. clip-ViT-B-32-multilingual-v1)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from embedder.errors import ModelLoadError
from embedder.models.base import Encoder, PreparedImage, crop_to_aspect, intra_op_threads, pick_device
from embedder.models import text_onnx
from embedder.models.hub import first_line, hub_available, looks_like_path
from embedder.models.ids import model_id_of
from embedder.models.text_fast import FastClipText, clip_model_of
from embedder.models.text_onnx import OnnxClipText
from embedder.models.vectors import SMALL_TEXT_BATCH, normalise

log = logging.getLogger(__name__)

# Text models trained into an image model's space (the image model's id, as `model_id_of` gives it).
KNOWN_TEXT_PAIRS = {
    "clip-ViT-B-32-multilingual-v1": "clip-ViT-B-32",
    "sentence-transformers/clip-ViT-B-32-multilingual-v1": "clip-ViT-B-32",
}


class SentenceTransformersEncoder(Encoder):
    """A sentence-transformers CLIP: its own `encode` takes PIL images and texts. Short CPU queries
    (EMBEDDER_TEXT_SPEEDUP=auto) take the text tower exported to ONNX (`text_onnx`, kept below
    `text_cache`), else, or with `torch`, the leaner `FastClipText` path; `off`: the library's own."""

    def __init__(
        self, model: str, device: str = "auto", batch_size: int = 0, text_speedup: str = "auto",
        text_cache: Path | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model_setting = model
        self.model_id = model_id_of(model)
        self.model = load_sentence_transformer(model, self.device)
        missing = {"text", "image"} - set(getattr(self.model, "modalities", ()))
        if missing:
            raise ModelLoadError(
                f"{model!r} is not a CLIP model: it cannot embed {' or '.join(sorted(missing))}. "
                "Set EMBEDDER_MODEL to a CLIP model such as clip-ViT-B-32."
            )
        if self.device.startswith("cuda"):
            self.model.half()
        self.model.max_seq_length = _text_max_tokens(self.model)  # longer queries are cut, not fatal
        self._ready(int(self.model.get_embedding_dimension()), _image_input_size(self.model), batch_size)
        self._text_speedup = text_speedup in ("auto", "torch") and self.device == "cpu"
        self._fast_text: FastClipText | None | bool = None  # built on the first query; False: not possible
        use_onnx = self._text_speedup and text_speedup == "auto" and text_cache is not None
        self._tower_root = text_cache if use_onnx and text_onnx.runtime_available() else None
        self._onnx_text: OnnxClipText | None = None
        self._onnx_tried = self._tower_root is None

    def encode_images(self, images: Sequence[Image.Image | PreparedImage]) -> np.ndarray:
        items = list(images)
        if any(isinstance(item, PreparedImage) for item in items):
            return super().encode_images(items)
        return self._encode([crop_to_aspect(image) for image in items])

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        features = self.model.preprocess([crop_to_aspect(image)])
        pixels = features["pixel_values"][0].to(self._input_dtype)
        return PreparedImage(pixels.contiguous())

    def _image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model({"pixel_values": pixels, "modality": "image"})["sentence_embedding"]

    def _encode_texts(self, items: list[str], threads: int) -> np.ndarray:
        if self._text_speedup and len(items) <= SMALL_TEXT_BATCH:
            tower = self.text_tower()
            if tower is not None:
                return tower.encode_texts(items)
            vectors = self._encode_fast(items)
            if vectors is not None:
                return vectors
        return self._encode(items, threads)

    def text_tower(self) -> OnnxClipText | None:
        """The exported text tower that short queries take: opened, or exported and checked, on
        first use (once per process); None where it is off, impossible, rejected or not writable."""
        if not self._onnx_tried:
            with self._lock:
                if not self._onnx_tried:
                    self._onnx_text = self._open_or_export()
                    self._onnx_tried = True
        return self._onnx_text

    def _open_or_export(self) -> OnnxClipText | None:
        """(The model lock is held.) The current adopted export, else a new one if none was tried
        for these weights; a folder that cannot be written is one log line, and the torch path."""
        assert self._tower_root is not None
        clip = clip_model_of(self.model)
        if clip is None:
            return None
        tower, manifest = text_onnx.open_tower(self._tower_root, self.model_setting)
        if tower is not None or manifest is not None:
            return tower
        if not text_onnx.exporter_available():
            log.info("the onnx package is not installed: %s's queries take the torch path", self.model_id)
            return None
        log.info("exporting %s's text tower for faster queries (once per model)", self.model_id)

        def reference(texts: list[str]) -> np.ndarray:  # the library's own pipeline, a query at a time
            with torch.inference_mode(), intra_op_threads(1):
                rows = [self.model.encode([text], convert_to_numpy=True, show_progress_bar=False)[0] for text in texts]
            return normalise(np.stack(rows))

        try:
            tower, _ = text_onnx.export(
                self.model, clip, self._tower_root, self.model_setting, self.model_id, self.image_size, reference
            )
        except OSError as exc:
            log.warning(
                "could not keep the exported text tower in %s (%s): queries take the torch path; set "
                "MODEL_CACHE_DIR to a folder this user can write (or EMBEDDER_TEXT_SPEEDUP=torch)",
                self._tower_root, exc.strerror or first_line(exc),
            )
            return None
        except Exception as exc:  # noqa: BLE001 - any exporter or runtime failure: the torch path answers
            log.warning("could not export %s's text tower (%s): queries take the torch path", self.model_id, first_line(exc))
            return None
        return tower

    def _encode_fast(self, items: list[str]) -> np.ndarray | None:
        """A few queries through `FastClipText` (one intra-op thread), or None where it cannot run."""
        with self._lock, torch.inference_mode(), intra_op_threads(1):
            if self._fast_text is None:
                clip = clip_model_of(self.model)
                self._fast_text = FastClipText(clip) if clip is not None else False
                log.debug("text speed-up for %s: %s", self.model_id, "on" if clip is not None else "not possible")
            if not self._fast_text:
                return None
            ids = [self.model.preprocess([text])["input_ids"][0] for text in items]
            vectors = torch.stack([self._fast_text(row) for row in ids])
        return normalise(vectors.numpy())

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def text_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, verbose=False)["input_ids"])

    def _encode(self, items: list, threads: int = 0) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode(), intra_op_threads(threads):
            vectors = self.model.encode(items, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return normalise(np.asarray(vectors, dtype=np.float32))


class TextModel:
    """A sentence-transformers text model that writes queries into an image model's space
    (EMBEDDER_TEXT_MODEL, e.g. clip-ViT-B-32-multilingual-v1 for clip-ViT-B-32's images)."""

    def __init__(self, model: str, device: str) -> None:
        self.model_id = model_id_of(model)
        self.device = device
        self.model = load_sentence_transformer(model, device, what="text model", variable="EMBEDDER_TEXT_MODEL")
        if "text" not in set(getattr(self.model, "modalities", ("text",))):
            raise ModelLoadError(f"EMBEDDER_TEXT_MODEL {model!r} cannot embed text; unset it or name a text model")
        self.dim = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        threads = 1 if self.device == "cpu" and len(items) <= SMALL_TEXT_BATCH else 0
        with self._lock, torch.inference_mode(), intra_op_threads(threads):
            vectors = self.model.encode(items, convert_to_numpy=True, show_progress_bar=False)
        return normalise(np.asarray(vectors, dtype=np.float32))


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


def load_sentence_transformer(model: str, device: str, what: str = "CLIP model", variable: str = "EMBEDDER_MODEL"):
    """A sentence-transformers model from a folder or a hub name (the local cache first); one
    ModelLoadError with a way out for every failure."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars on a user's terminal

    path = Path(model).expanduser()
    if looks_like_path(model) and not path.is_dir():
        raise ModelLoadError(
            f"Model folder {model!r} does not exist. Set {variable} to the folder that holds the "
            f"sentence-transformers {what} (saved with SentenceTransformer.save), or to a model name such as "
            "clip-ViT-B-32 (downloaded once)."
        )
    hint = (  # a hub name: where a copy of it could live
        f"Set {variable} to a local folder that holds a sentence-transformers {what} "
        f"(e.g. {variable}=/models/{model_id_of(model).rsplit('/', 1)[-1]}, saved with SentenceTransformer.save), "
        "or connect to the internet once so the model can be downloaded."
    )
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
