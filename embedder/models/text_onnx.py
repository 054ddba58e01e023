"""CLIP's text tower exported to ONNX and run by ONNX Runtime: the library's fp32 vectors, sooner.

A query through the sentence-transformers CLIP is its tokenizer, `CLIPModel.get_text_features` and
a unit-length scaling. Exported once per model (torch's TorchScript exporter: the dynamo one needs
onnxscript), that tower runs in ONNX Runtime on one intra-op thread ~1.3× faster than
`text_fast.FastClipText` at one query on this CPU (BENCHMARKS.md §5), and needs neither torch nor
transformers: with the export on disk, a text query loads in well under a second (the CLI's search).

The export lives in MODEL_CACHE_DIR (`<data folder>/model-cache/text-towers/<key>/`: the graph, the
tokenizer as `tokenizer.json`, and `manifest.json`), keyed by the model setting. The
manifest records the model's files (path, size, modification time): a changed, added or removed
file makes it stale, and the next query exports again. It is adopted only if, on varied texts
(`CHECK_TEXTS`), the token ids equal the library's and every vector is within cosine `MIN_COSINE`
of the library's own pipeline; a rejected export keeps only its manifest (saying why), so the
same weights are not tried twice.

The exporter traces one probe text; what it fixes from it (transformers' `is_causal` needs more than
one token) holds for every text, since the tokenizer adds start and end markers to each.

This module imports no torch; `export` imports it (it runs where the model is loaded anyway), and
needs the `onnx` package besides ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedder.durable import write_json, written_whole
from embedder.models.hub import looks_like_path
from embedder.models.ort import import_onnxruntime
from embedder.models.vectors import SMALL_TEXT_BATCH, normalise

log = logging.getLogger(__name__)

FORMAT = 1  # of the folder; another format is stale
FOLDER = "text-towers"  # below MODEL_CACHE_DIR
MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE = "text.onnx", "tokenizer.json", "manifest.json"
MIN_COSINE = 0.9999
OPSET = 17
# Short and long, cased, spaced, punctuated, accented, non-Latin, emoji, empty, past the 77 tokens.
CHECK_TEXTS = (
    "a photo of a dog",
    "A RED   Car\tparked on the street!!",
    "",
    "sunset",
    "two children playing with a ball on the beach at sunset, in summer",
    "Größe café naïve façade — déjà vu",
    "日本の桜と富士山",
    "🐶🐱 party 🎉 2024-06-01 #birthday @home",
    "a photo of a small blue square on the left of a large green triangle",
    "mountain " * 90,
)


def runtime_available() -> bool:
    """Whether ONNX Runtime and the tokenizers library are installed (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "tokenizers"))


def exporter_available() -> bool:
    """Whether torch's exporter can write ONNX files here (it needs the `onnx` package)."""
    return importlib.util.find_spec("onnx") is not None


def model_folder(model: str) -> Path | None:
    """The folder holding a sentence-transformers model's files: the folder a setting names, or the
    local hub cache's snapshot of a hub name (sentence-transformers' `sentence-transformers/`
    prefix for names without an organisation); None when it is neither here nor cached."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if looks_like_path(model):
        return None
    from huggingface_hub import try_to_load_from_cache

    repo = model if "/" in model else f"sentence-transformers/{model}"
    try:
        found = try_to_load_from_cache(repo, "modules.json")
    except Exception:  # noqa: BLE001 - an invalid repo name is simply not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def fingerprint(folder: Path) -> list[list[Any]]:
    """Every file below `folder` (links followed, hidden names skipped) as [path, size, mtime_ns]."""
    rows = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            stat = path.stat()
            rows.append([path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns])
    return rows


def tower_folder(root: Path, model: str) -> Path:
    """Where the export of the model setting `model` lives below `root` (MODEL_CACHE_DIR): one
    folder per setting (a local folder by its full path), re-exported in place when its files change."""
    path = Path(model).expanduser()
    name = str(path.resolve()) if path.is_dir() else model
    return root / FOLDER / hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]


class OnnxClipText:
    """Texts → the CLIP text tower's projected vectors, by ONNX Runtime on one thread (no torch)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        ort = import_onnxruntime(folder.parent.parent)  # folder: MODEL_CACHE_DIR/text-towers/<model>

        self.folder = folder
        self.model_id: str = manifest["model_id"]
        self.dim = int(manifest["dim"])
        self.image_size = int(manifest["image_size"])
        self.max_text_tokens = int(manifest["max_tokens"])
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_text_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # as queries run on the CPU (SMALL_TEXT_BATCH)
        options.log_severity_level = 3  # errors only: nothing on a person's terminal
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def token_ids(self, text: str) -> list[int]:
        """The ids the model reads for `text` (start and end markers included, cut at the model's length)."""
        return self.tokenizer.encode(text).ids

    def features(self, text: str) -> np.ndarray:
        """One text's projected vector, not yet unit length."""
        ids = np.asarray([self.token_ids(text)], dtype=np.int64)
        with self._lock:
            return self.session.run(None, {"input_ids": ids})[0][0]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (each at its own length)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(np.stack([self.features(text) for text in texts]))


class TextQueryEncoder:
    """What a text query needs of an `Encoder` (identity, dimension, `encode_texts`) from an adopted
    export alone, without torch; anything else (pictures, many texts, the model itself) loads the
    full encoder first, through `load`, once."""

    device = "cpu"
    text_model = None  # queries by another text model never take this path

    def __init__(self, tower: OnnxClipText, load: Callable[[], Any]) -> None:
        self.tower = tower
        self.model_id = tower.model_id
        self.dim = tower.dim
        self.image_size = tower.image_size
        self.max_text_tokens = tower.max_text_tokens
        self._load = load
        self._full: Any = None
        self._full_lock = threading.Lock()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """As the full encoder gives them: a few texts by the exported tower, more by the library."""
        items = list(texts)
        if len(items) <= SMALL_TEXT_BATCH:
            return self.tower.encode_texts(items)
        return self.full().encode_texts(items)

    @property
    def loaded(self) -> bool:
        """Whether the full encoder has been loaded."""
        return self._full is not None

    def full(self) -> Any:
        """The full encoder, loaded on first use."""
        with self._full_lock:
            if self._full is None:
                log.info("loading the whole model for more than a text query")
                self._full = self._load()
            return self._full

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.full(), name)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        document = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def current(folder: Path, model: str) -> dict[str, Any] | None:
    """The manifest in `folder` if it was made from `model`'s files as they are now, else None."""
    manifest = read_manifest(folder)
    source = model_folder(model)
    if manifest is None or source is None or manifest.get("format") != FORMAT:
        return None
    try:
        if manifest.get("fingerprint") != fingerprint(source):
            return None
    except OSError:
        return None
    return manifest


def open_tower(root: Path, model: str) -> tuple[OnnxClipText | None, dict[str, Any] | None]:
    """The adopted export of `model` below `root` and its manifest; (None, manifest) when the
    current export was rejected, (None, None) when there is none for the model's files as they are."""
    folder = tower_folder(root, model)
    manifest = current(folder, model)
    if manifest is None or not manifest.get("adopted") or not runtime_available():
        return None, manifest
    try:
        if (folder / MODEL_FILE).stat().st_size != manifest.get("model_bytes"):
            return None, None
        return OnnxClipText(folder, manifest), manifest
    except Exception as exc:  # noqa: BLE001 - a damaged file or a runtime that refuses it: export again
        log.info("the exported text tower in %s cannot be used (%s): exporting it again", folder, exc)
        return None, None


def export(
    st_model: Any,
    clip: Any,
    root: Path,
    model: str,
    model_id: str,
    image_size: int,
    reference: Callable[[list[str]], np.ndarray],
) -> tuple[OnnxClipText | None, dict[str, Any]]:
    """Export `clip`'s text tower (the `CLIPModel` inside `st_model`) below `root`, check it against
    `reference` (the library's own pipeline: texts → unit vectors) and adopt it if it holds.

    Returns the tower (None if rejected) and the manifest written. Raises OSError when the folder
    cannot be written, RuntimeError/ValueError when the model cannot be exported.
    """
    import torch

    source = model_folder(model)
    if source is None:
        raise ValueError(f"the files of {model!r} are not on this machine")
    folder = tower_folder(root, model)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = getattr(st_model.tokenizer, "backend_tokenizer", None)
    if tokenizer is None:
        raise ValueError("the model's tokenizer has no tokenizers-library form to save")
    before = fingerprint(source)
    (folder / MANIFEST_FILE).unlink(missing_ok=True)  # stale from here on, until the new one is written
    with written_whole(folder / TOKENIZER_FILE, durable=False) as tmp:
        tokenizer.save(str(tmp))
    with written_whole(folder / MODEL_FILE, durable=False) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about tracing: nothing a user can act on
        probe = st_model.preprocess(["a photo of a dog"])["input_ids"]
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                text_features_module(clip), (probe,), str(tmp), input_names=["input_ids"], output_names=["text_embeds"],
                dynamic_axes={"input_ids": {0: "texts", 1: "tokens"}}, opset_version=OPSET, dynamo=False,
            )
    export_s = time.perf_counter() - started
    manifest: dict[str, Any] = {
        "format": FORMAT, "model": model, "model_id": model_id, "fingerprint": before,
        "dim": int(clip.text_projection.out_features), "image_size": image_size,
        "max_tokens": int(st_model.max_seq_length), "model_bytes": (folder / MODEL_FILE).stat().st_size,
        "export_s": round(export_s, 2), "torch": torch.__version__, "machine": platform.machine(),
    }
    manifest["onnxruntime"] = import_onnxruntime(folder.parent.parent).__version__
    tower = OnnxClipText(folder, manifest)
    same_ids = all(tower.token_ids(t) == st_model.preprocess([t])["input_ids"][0].tolist() for t in CHECK_TEXTS)
    cosines = np.sum(tower.encode_texts(CHECK_TEXTS) * reference(list(CHECK_TEXTS)), axis=1)
    manifest.update(same_token_ids=same_ids, min_cosine=round(float(cosines.min()), 7))
    manifest["adopted"] = bool(same_ids and cosines.min() >= MIN_COSINE)
    if not manifest["adopted"]:
        log.warning(
            "the exported text tower of %s differs from the library's (token ids %s, cosine %.6f < %s): not used",
            model_id, "equal" if same_ids else "differ", cosines.min(), MIN_COSINE,
        )
        tower = None
        (folder / MODEL_FILE).unlink(missing_ok=True)  # keep only the manifest: these weights are not tried again
    if fingerprint(source) != before:  # the weights changed while exporting: leave it stale
        return tower, manifest
    write_json(folder / MANIFEST_FILE, manifest, durable=False)
    log.info("exported %s's text tower to %s in %.1f s (%s)", model_id, folder, export_s,
             "adopted" if tower else "rejected")
    return tower, manifest


def text_features_module(clip: Any) -> Any:
    """`clip.get_text_features(input_ids)` as a module of its own (what the exporter traces)."""
    import torch

    class TextFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            out = self.clip.get_text_features(input_ids=input_ids)
            return getattr(out, "pooler_output", out)

    return TextFeatures().eval()
