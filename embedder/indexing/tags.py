"""Tags from images: the labels of a vocabulary that the CLIP model sees in each picture.

A tag vocabulary is a list of everyday labels (the built-in `embedder/data/tags.txt`, or the
user's TAGS_FILE). Each label is embedded once per model with the text encoder, as
`a photo of {label}`, and cached on disk beside the store. An image's tags come from the image
vector the indexer already has (or the one stored): one matrix product, no second pass over the
pictures. They are stored in the payload (`tags`, a list of strings, with a keyword index) with
`tags_by`, the key of the model + vocabulary + rule that made them, so tags made another way can be
found and recomputed (`embedder tags --refresh`).

Calibration. The raw cosine between an image and a label's text sits in a narrow band (about
0.2-0.35 for OpenAI's CLIP) whose place and width differ from model to model, so no fixed cosine
threshold means the same thing twice. Instead each image's labels are scored the way CLIP was
trained to score texts: a softmax over the whole vocabulary of `scale × cosine`, where `scale` is
the model's own learned logit scale (exp(logit_scale): 100 for OpenAI CLIP, ~21 for the tiny test
model; 100 when a model does not say). The result is the model's zero-shot probability that the
label is the one among the vocabulary that describes the picture: a shift of all of an image's
cosines changes nothing, and differences are weighed by the temperature the model learned them at.
An image keeps the labels with probability at least MIN_PROBABILITY, at most MAX_TAGS, most
probable first. Labels share the probability, so a picture gets the few labels that stand out from
the rest of the vocabulary; one that fits nothing in particular spreads it thin and gets no tag,
and near-synonyms in a vocabulary (dog, puppy) split it, so a vocabulary works best with distinct
labels, and with more than 1 / MIN_PROBABILITY of them (below that even an even spread passes).
Cost: N labels × d floats per image, microseconds for a few hundred labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from embedder.durable import written_whole
from embedder.errors import ConfigError
from embedder.indexing.lexicon import rewrite
from embedder.models.text_onnx import fingerprint
from embedder.store import ImageStore, SearchFilter

log = logging.getLogger(__name__)

TEMPLATE = "a photo of {}"
MIN_PROBABILITY = 0.1
MAX_TAGS = 5
DEFAULT_SCALE = 100.0  # OpenAI CLIP's logit scale (its training clamps it there)
MAX_LABEL_CHARS = 100
CACHE_DIR = "tag-vectors"  # in MODEL_CACHE_DIR: label vectors per model (its files) and vocabulary
BATCH = 256  # points re-tagged per read-merge-write
FIELDS = frozenset({"tags", "tags_by"})  # what tagging adds to a point's payload


def default_vocabulary_text() -> str:
    """The built-in vocabulary file's text (shipped inside the package)."""
    return resources.files("embedder").joinpath("data", "tags.txt").read_text(encoding="utf-8")


def parse_vocabulary(text: str) -> list[str]:
    """Labels from a vocabulary file's text: one a line, `#` comments and blank lines skipped, spaces
    collapsed, the first of labels that differ only in case kept, over-long lines left out."""
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        label = " ".join(line.split("#", 1)[0].split())
        if not label:
            continue
        if len(label) > MAX_LABEL_CHARS:
            log.warning("tag vocabulary line %d is longer than %d characters: left out", number, MAX_LABEL_CHARS)
            continue
        labels.setdefault(label.casefold(), label)
    return list(labels.values())


def load_vocabulary(tags_file: Path | None) -> list[str]:
    """The labels of `tags_file`, or of the built-in list when it is None."""
    if tags_file is None:
        return parse_vocabulary(default_vocabulary_text())
    try:
        text = Path(tags_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"TAGS_FILE {tags_file} cannot be read ({why}): fix the path, unset TAGS_FILE for the built-in "
            "labels, or set TAGS=false"
        ) from None
    return parse_vocabulary(text)


def logit_scale(encoder: Any) -> float:
    """The model's learned logit scale (exp of its `logit_scale` parameter), else DEFAULT_SCALE."""
    model = getattr(encoder, "model", None)
    try:
        for name, parameter in model.named_parameters():
            if name.rsplit(".", 1)[-1] == "logit_scale":
                scale = float(parameter.detach().float().exp().item())
                if np.isfinite(scale) and scale > 0:
                    return min(scale, DEFAULT_SCALE)
    except (AttributeError, TypeError, RuntimeError, ValueError):
        pass
    return DEFAULT_SCALE


@dataclass(frozen=True)
class Tagged:
    """What tagging writes into a point's payload."""

    tags: list[str]
    by: str

    def payload(self) -> dict[str, Any]:
        return {"tags": self.tags, "tags_by": self.by}


class Tagger:
    """Tags image vectors with the labels of one vocabulary, for one model (thread-safe)."""

    def __init__(
        self,
        encoder: Any,
        labels: Sequence[str],
        cache_dir: Path | None = None,
        min_probability: float = MIN_PROBABILITY,
        max_tags: int = MAX_TAGS,
        sources: Sequence[Any] = (),
    ) -> None:
        self.encoder = encoder
        self.labels = list(labels)
        self.cache_dir = cache_dir
        self.min_probability = min_probability
        self.max_tags = max_tags
        self.scale = logit_scale(encoder)
        text_model = getattr(getattr(encoder, "text_model", None), "model_id", None)
        recipe = [encoder.model_id, text_model, TEMPLATE, self.labels]
        cached_as = [*recipe, list(sources)]  # + the models' files: the cache is shared by every store
        self._vocabulary_key = hashlib.sha256(json.dumps(recipe).encode("utf-8")).hexdigest()
        self._cache_key = hashlib.sha256(json.dumps(cached_as).encode("utf-8", "surrogateescape")).hexdigest()
        # The scale belongs to the model (already in the key): left out, so fp16 rounding on a GPU
        # does not make the same model's tags look like another's.
        rule = [self._vocabulary_key, min_probability, max_tags]
        self.key = hashlib.sha256(json.dumps(rule).encode("utf-8")).hexdigest()[:16]
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    def label_vectors(self) -> np.ndarray:
        """The labels' text vectors (labels × dim), encoded once, then from memory or the disk cache."""
        with self._lock:
            if self._vectors is None:
                self._vectors = self._cached() if self.cache_dir else None
                if self._vectors is None:
                    prompts = [TEMPLATE.format(label) for label in self.labels]
                    self._vectors = np.asarray(self.encoder.encode_texts(prompts), dtype=np.float32)
                    self._save()
                self._vectors.setflags(write=False)
            return self._vectors

    def _cache_file(self) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{self._cache_key[:32]}.npy"

    def _cached(self) -> np.ndarray | None:
        try:
            vectors = np.load(self._cache_file(), allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("tag label cache %s is unreadable (%s): encoding the labels again", self._cache_file(), exc)
            return None
        if vectors.shape != (len(self.labels), self.encoder.dim) or not np.all(np.isfinite(vectors)):
            return None
        return vectors.astype(np.float32)

    def _save(self) -> None:
        """Keep the label vectors for the next process; a cache that cannot be written costs only time."""
        if self.cache_dir is None or self._vectors is None:
            return
        path = self._cache_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with written_whole(path, durable=False) as tmp, open(tmp, "wb") as fh:
                np.save(fh, self._vectors, allow_pickle=False)
        except OSError as exc:
            log.warning("could not cache the tag labels' vectors in %s: %s", path.parent, exc)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Each image's softmax over the vocabulary at the model's logit scale (images × labels)."""
        images = np.asarray(vectors, dtype=np.float32).reshape(-1, self.encoder.dim)
        if not self.labels or not len(images):
            return np.zeros((len(images), len(self.labels)), dtype=np.float32)
        logits = self.scale * (images @ self.label_vectors().T)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def tag(self, vectors: np.ndarray) -> list[Tagged]:
        """The tags of each image vector (rows of `vectors`), most probable first."""
        tagged: list[Tagged] = []
        for row in self.probabilities(vectors):
            best = np.argsort(-row, kind="stable")[: self.max_tags]
            tagged.append(Tagged([self.labels[i] for i in best if row[i] >= self.min_probability], self.key))
        return tagged


def open_tagger(settings: Any, encoder: Any) -> Tagger | None:
    """The tagger the settings ask for: None with TAGS=false or a vocabulary without labels."""
    if not settings.tags:
        return None
    labels = load_vocabulary(settings.tags_file)
    if not labels:
        log.info("the tag vocabulary %s has no labels: images are not tagged", settings.tags_file)
        return None
    sources = [model_source(m) for m in (settings.model, settings.text_model) if m]
    return Tagger(encoder, labels, cache_dir=settings.model_cache_dir / CACHE_DIR, sources=sources)


def model_source(model: str) -> Any:
    """What identifies a model's weights for the shared label cache: a hub name as given; a local
    folder by its full path and its files (size, mtime), since its weights can change under one name."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return model
    try:
        return [str(folder.resolve()), fingerprint(folder)]
    except OSError:
        return [str(folder.resolve()), None]


def needs_tags(payload: Mapping[str, Any], tagger: Tagger, refresh: bool = False) -> bool:
    """Whether a stored point lacks tags (or, with `refresh`, has tags another vocabulary or model made)."""
    return "tags" not in payload or (refresh and payload.get("tags_by") != tagger.key)


def stored_vectors(store: ImageStore, payloads: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The stored vectors of these points, found by their paths (one request for many points)."""
    paths = tuple(p["paths"][0] for p in payloads.values() if p.get("paths"))
    found: dict[str, np.ndarray] = {}
    if paths:
        for pid, _, vector in store.scroll(with_vectors=True, where=SearchFilter(paths=paths)):
            if pid in payloads and vector is not None:
                found[pid] = vector
    for pid in payloads.keys() - found.keys():  # no path to find it by: ask for it alone
        vector = store.vector(pid)
        if vector is not None:
            found[pid] = vector
    return found


def write_tags(
    store: ImageStore, tagger: Tagger, vectors: Mapping[str, np.ndarray], lock: threading.Lock | None = None
) -> int:
    """Tag these stored points from their vectors: each payload is read again and written back with
    its tags, under `lock` (the indexer's payload lock), so nothing another writer did is lost."""
    ids = list(vectors)
    if not ids:
        return 0
    tagged = dict(zip(ids, tagger.tag(np.stack([vectors[i] for i in ids]))))
    with lock or threading.Lock():
        current = store.retrieve(ids)
        for pid, payload in current.items():
            rewrite(store, pid, {**payload, **tagged[pid].payload()})  # its tags are some of its words
    return len(current)


def retag(
    store: ImageStore,
    tagger: Tagger,
    refresh: bool = False,
    where: SearchFilter | None = None,
    lock: threading.Lock | None = None,
) -> int:
    """Tag the stored points that have no tags (with `refresh`, also those tagged another way), from
    their stored vectors: no image is read or encoded again. How many points were tagged."""
    done = 0
    batch: dict[str, np.ndarray] = {}
    for pid, payload, vector in store.scroll(with_vectors=True, where=where):
        if vector is not None and needs_tags(payload, tagger, refresh):
            batch[pid] = vector
            if len(batch) >= BATCH:
                done += write_tags(store, tagger, batch, lock)
                batch = {}
    return done + write_tags(store, tagger, batch, lock)


def tag_counts(store: ImageStore, where: SearchFilter | None = None) -> dict[str, int]:
    """Every tag in the library with how many images carry it, most first (the store's facet counts)."""
    return store.facet("tags", where)


def tag_list(payload: Mapping[str, Any]) -> list[str]:
    """A payload's tags as a list of strings (nothing for a point without them)."""
    tags = payload.get("tags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
