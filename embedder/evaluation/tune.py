"""`embedder tune`: fine-tune the configured model on a labelled dataset's train split, keep what it
knew, choose on the validation split, and write a model folder the product loads as EMBEDDER_MODEL.

1. The dataset's split (`splits.py`, shared with `eval --split`): train to learn from, validation to
   choose with, test only for the model card.
2. Each step is a batch of train pictures with one of each one's captions: the model's contrastive
   loss (`trainable.py`: InfoNCE with every caption of a picture a positive, or SigLIP's sigmoid
   loss), plus `keep_weight` × distillation: the cosine distance of the student's vectors to the
   base model's, for a batch of unlabelled pictures (`--keep FOLDER`, default a sample of the
   indexed library, never the dataset's own pictures) and of the tag vocabulary ("a photo of dog",
   TAGS_FILE or the built-in list).
3. After each epoch the validation mAP is measured and a checkpoint written (`.<out>.tuning/` beside
   the output): Ctrl-C or a kill loses at most the epoch in progress, `--resume` continues from the
   last one, and a resumed run ends with the weights an uninterrupted one would have.
4. The best epoch is kept, then WiSE-FT: the weights base + α·(tuned − base) for α in ALPHAS, the
   smallest α within ALPHA_TOLERANCE of the best validation mAP chosen (closer to the base model
   keeps more of what it knew, at no cost on validation).
5. The model is saved in its backend's format into a temporary folder, loaded back through the
   product's own loader, measured against the base on the test split and on held-out kept pictures
   (with the base's tags as their labels), given its model card (README.md, tuning.json) and only
   then renamed to the output. A full disk while saving leaves nothing under the output's name.

On the CPU few parameters are trained (`last`, see `DEFAULT_TRAINABLE`; bench/tune_cost.py measured
the choices); on CUDA all of them, under autocast. Runs are deterministic for a seed (on one
machine and library version): batch order, captions and LoRA's start come from it.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedder import __version__
from embedder.durable import folder_written_whole, written_whole
from embedder.errors import ImageError, TuneError
from embedder.evaluation.datasets import Dataset, normalised
from embedder.evaluation.evaluate import evaluate_model
from embedder.evaluation.metrics import IMAGE_TO_IMAGE, TEXT_TO_IMAGE, mean_average_precision
from embedder.evaluation.splits import TEST, TRAIN, VALIDATION, Split
from embedder.evaluation.trainable import Trainable
from embedder.indexing.tags import TEMPLATE, Tagger, load_vocabulary
from embedder.media.images import decode, discover
from embedder.models import load_encoder
from embedder.models.base import PreparedImage
from embedder.paths import text_to_path

log = logging.getLogger(__name__)

DEFAULT_TRAINABLE = {"cpu": "last", "cuda": "all", "mps": "last"}
DEFAULT_LR = {"last": 1e-4, "lora": 5e-4, "all": 1e-5}
WEIGHT_DECAY = 0.01
WARMUP = 0.1  # of all steps
CLIP_GRAD = 1.0
KEEP_SAMPLE = 256  # unlabelled pictures kept: the library's sample, or at most this many of --keep
KEEP_HELD_OUT = 0.2  # of them measured in the card, never distilled on
VOCABULARY_BATCH = 64
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
ALPHA_TOLERANCE = 0.01
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
CARD_NAME = "README.md"
RESULT_NAME = "tuning.json"


@dataclass(frozen=True)
class TuneOptions:
    epochs: int = 5
    batch_size: int = 32
    lr: float | None = None  # None: DEFAULT_LR of what is trained
    trainable: str = "auto"  # auto, last, lora, all
    keep: Path | None = None  # unlabelled pictures; None: a sample of the indexed library
    keep_weight: float = 3.0
    seed: int = 0
    resume: bool = False
    ks: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class TuneProgress:
    phase: str  # "preparing", "training", "epoch", "choosing", "measuring", "saving"
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    seconds_left: float | None = None
    validation_map: float | None = None

    def words(self) -> str:
        if self.phase == "training":
            left = f", {_duration(self.seconds_left)} left" if self.seconds_left is not None else ""
            loss = f", loss {self.loss:.3f}" if self.loss is not None else ""
            return f"epoch {self.epoch}/{self.epochs}: step {self.step}/{self.steps}{loss}{left}"
        if self.phase == "epoch":
            return f"epoch {self.epoch}/{self.epochs} done: validation mAP {self.validation_map:.3f}; checkpoint saved"
        return {"preparing": "reading the pictures", "choosing": "choosing the weights on the validation split",
                "measuring": "measuring base and tuned models on the test split", "saving": "saving"}.get(
            self.phase, self.phase)


def _duration(seconds: float | None) -> str:
    seconds = max(0, int(seconds or 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass
class TuneResult:
    folder: Path
    card: dict[str, Any]  # what tuning.json holds

    def summary(self) -> str:
        test = self.card["test"]
        kept = self.card.get("kept") or {}
        line = (
            f"test split mAP {test['base']['text→image']['mAP']:.3f} → {test['tuned']['text→image']['mAP']:.3f} "
            f"(α {self.card['alpha']:.2f}, epoch {self.card['best_epoch']})"
        )
        if kept.get("pictures"):
            line += f"; kept pictures: tags unchanged {kept['tags_unchanged']:.2f}, vocabulary mAP " \
                    f"{kept['base_vocabulary_map']:.3f} → {kept['tuned_vocabulary_map']:.3f}"
        return line


ProgressCallback = Callable[[TuneProgress], None]


@dataclass
class _Pictures:
    """Pictures read and prepared once: their paths, model inputs and (for labelled ones) captions."""

    paths: list[str] = field(default_factory=list)
    inputs: list[PreparedImage] = field(default_factory=list)
    captions: list[list[str]] = field(default_factory=list)


def work_folder(out: Path) -> Path:
    """Where an unfinished run keeps its checkpoint: hidden, beside the output folder."""
    return out.parent / f".{out.name}.tuning"


def check_output(out: Path, resume: bool) -> None:
    """The output must not exist; an unfinished run's checkpoint is continued only with `resume`."""
    if out.exists():
        raise TuneError(f"{out} exists already: choose another --out (a tuned model is never written over anything)")
    work = work_folder(out)
    if resume and not (work / CHECKPOINT).is_file():
        raise TuneError(f"nothing to resume: no interrupted run for {out} (its checkpoint would be in {work})")
    if not resume and work.exists():
        raise TuneError(
            f"an interrupted run for {out} is kept in {work}: add --resume to continue it, or delete that "
            "folder to start over"
        )


def tune(
    engine: Any,
    dataset: Dataset,
    split: Split,
    out: Path,
    options: TuneOptions = TuneOptions(),
    on_progress: ProgressCallback | None = None,
) -> TuneResult:
    """Tune `engine`'s model (EMBEDDER_MODEL) on `split`'s train part of `dataset` into the folder `out`
    (see the module docstring). `engine` is the configured one: its model is the base, its store the
    library the kept pictures are sampled from; nothing in it is changed."""
    progress = on_progress or (lambda p: None)
    out = out.expanduser().absolute()
    check_output(out, options.resume)
    device = engine.encoder.device
    choice = DEFAULT_TRAINABLE.get(device.split(":")[0], "last") if options.trainable == "auto" else options.trainable
    lr = options.lr if options.lr is not None else DEFAULT_LR[choice]
    if not dataset.subset(split.of(TRAIN)).queries:
        raise TuneError(f"{dataset.source}: no picture of the train split has a caption: nothing to learn from")

    student = Trainable(load_encoder(replace(engine.settings, text_model=None)))
    data = _prepare_data(engine, dataset, split, options, student, progress)
    trained_count = student.select(choice, options.seed)
    base_weights = student.weights()  # the base's values of what training changes: WiSE-FT mixes from them
    work = work_folder(out)
    fingerprint = _fingerprint(engine.encoder.model_id, dataset, split, options, choice, lr, data.kept.paths)
    state = _train(student, data, options, lr, work, fingerprint, progress)

    progress(TuneProgress("choosing"))
    improved = state["best"]["state"] is not None
    if improved:
        student.load_trained(state["best"]["state"])
    student.merge()
    tuned_weights = student.weights()
    alphas = _choose_alpha(student, base_weights, tuned_weights, data, options, improved)
    student.load_weights(_mix(base_weights, tuned_weights, alphas["chosen"]))
    card = {
        "kind": "embedder-tuned-model",
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "product_version": __version__,
        "base_model": engine.encoder.model_id,
        "base_setting": engine.settings.model,
        "loss": "sigmoid (SigLIP)" if student.kind == "siglip" else "InfoNCE, same-caption pictures positive (CLIP)",
        "dataset": str(dataset.source),
        "split": {"file": str(split.path), "seed": split.seed, **split.counts()},
        "settings": {
            **{k: v for k, v in asdict(options).items() if k not in ("resume", "keep")},
            "keep": str(options.keep) if options.keep else "a sample of the indexed library",
            "trainable": choice, "trained_parameters": trained_count, "lr": lr, "device": device,
            "kept_pictures": len(data.kept.paths), "kept_held_out": len(data.held_out),
            "vocabulary": len(data.vocabulary),
        },
        "history": [{"epoch": 0, "validation_mAP": state["base_validation_mAP"], "loss": None}, *state["history"]],
        "best_epoch": state["best"]["epoch"],
        "alphas": alphas["table"],
        "alpha": alphas["chosen"],
    }
    try:
        with folder_written_whole(out) as tmp:
            progress(TuneProgress("saving"))
            student.save(tmp)
            held_out = data.held_out
            del student, data, base_weights, tuned_weights  # measuring loads the saved model: free this one
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            progress(TuneProgress("measuring"))
            card |= _before_after(engine, tmp, dataset.subset(split.of(TEST)), held_out, options)
            (tmp / RESULT_NAME).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            (tmp / CARD_NAME).write_text(model_card(card, out.name), encoding="utf-8")
    except OSError as exc:
        raise _disk_error(exc, f"writing the tuned model to {out}", f"nothing was written to {out}; the "
                          f"training is kept in {work}: run the same command with --resume") from None
    shutil.rmtree(work, ignore_errors=True)
    log.info("tuned model written to %s", out)
    return TuneResult(out, card)


@dataclass
class _Data:
    """Everything a run learns and chooses from, read once."""

    train: _Pictures
    validation: _Pictures
    kept: _Pictures  # every kept picture: the first `held_out` are measured, never distilled on
    held_out: list[str]
    distilled: _Pictures
    vocabulary: list[str]  # prompts, "a photo of {label}"
    teacher_images: torch.Tensor  # the base model's vectors of `distilled` and of `vocabulary`
    teacher_texts: torch.Tensor
    base_validation_map: float


def _prepare_data(engine: Any, dataset: Dataset, split: Split, options: TuneOptions, student: Trainable,
                  progress: ProgressCallback) -> _Data:
    """The pictures decoded and prepared, the captions checked, the base model's vectors to keep."""
    settings = engine.settings
    train, validation = dataset.subset(split.of(TRAIN)), dataset.subset(split.of(VALIDATION))
    _check_captions(student, sorted(set(train.queries) | set(validation.queries)), dataset)
    progress(TuneProgress("preparing"))
    train_pictures = _read(student, train, settings)
    validation_pictures = _read(student, validation, settings)
    if len(train_pictures.paths) < 2:
        raise TuneError(f"{dataset.source}: fewer than two pictures of the train split could be read")
    kept = _kept_pictures(engine, dataset, options, student, settings)
    held_out = max(1, round(len(kept.paths) * KEEP_HELD_OUT)) if len(kept.paths) >= 5 else 0
    distilled = _Pictures(kept.paths[held_out:], kept.inputs[held_out:])
    vocabulary = [TEMPLATE.format(label) for label in load_vocabulary(settings.tags_file)]
    student.model.eval()
    with torch.no_grad():  # the base model's vectors: what distillation holds the student to
        teacher_images = _image_vectors(student, distilled.inputs, options.batch_size)
        teacher_texts = _text_vectors(student, vocabulary, options.batch_size)
        base_map = _validation_map(student, validation_pictures, options.batch_size)
    return _Data(train_pictures, validation_pictures, kept, kept.paths[:held_out], distilled, vocabulary,
                 teacher_images, teacher_texts, base_map)


def _train(student: Trainable, data: _Data, options: TuneOptions, lr: float, work: Path,
           fingerprint: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The epochs still to run (all, or after the checkpoint's with `resume`), each measured on
    validation and checkpointed; the state: history, best epoch and its trained weights."""
    state = _start(student, work, fingerprint, options, data.base_validation_map)
    run = _Run(student, options, lr, data, state)
    started = time.perf_counter()
    for epoch in range(state["epoch"] + 1, options.epochs + 1):
        run.epoch(epoch, started, progress)
        student.model.eval()
        with torch.no_grad():
            score = _validation_map(student, data.validation, options.batch_size)
        state["history"].append({"epoch": epoch, "validation_mAP": score, "loss": run.last_loss})
        if score > state["best"]["validation_mAP"]:
            state["best"] = {"epoch": epoch, "validation_mAP": score, "state": student.trained_state()}
        state["epoch"] = epoch
        _save_checkpoint(work, run.checkpoint(state, fingerprint))
        progress(TuneProgress("epoch", epoch, options.epochs, validation_map=score))
    return state


def _disk_error(exc: OSError, doing: str, then: str) -> TuneError:
    if exc.errno == errno.ENOSPC:
        return TuneError(f"No space left on the disk while {doing}: free some space; {then}")
    return TuneError(f"Failed while {doing}: {exc.strerror or exc}; {then}")


# --- the data --------------------------------------------------------------------------------------


def _check_captions(student: Trainable, captions: Sequence[str], dataset: Dataset) -> None:
    """Every caption must mean something to the model's tokenizer (one TuneError line naming the first)."""
    empty = [c for c in captions if student.meaningful_tokens(c) == 0]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise TuneError(
            f"{dataset.source}: the caption {empty[0]!r}{more} means nothing to the model's tokenizer: it splits it "
            f"into no tokens it knows. Write captions in words {student.encoder.model_id} reads (for most CLIP "
            "models: English)"
        )


def _read(student: Trainable, dataset: Dataset, settings: Any) -> _Pictures:
    """The dataset's pictures decoded and prepared once (a picture that cannot be read is left out, logged)."""
    paths = sorted(dataset.labels)
    pictures = _prepare(student, paths, settings)
    pictures.captions = [sorted(dataset.labels[p]) for p in pictures.paths]
    return pictures


def _prepare(student: Trainable, paths: Sequence[str], settings: Any) -> _Pictures:
    def one(path: str) -> PreparedImage | None:
        try:
            image = decode(text_to_path(path), settings.max_image_pixels, student.encoder.image_size).image
            return student.prepare(image)
        except ImageError as exc:
            log.warning("left out %s: %s", path, exc)
            return None

    with ThreadPoolExecutor(max(1, settings.workers or 2)) as pool:
        prepared = list(pool.map(one, paths))
    pictures = _Pictures()
    for path, item in zip(paths, prepared):
        if item is not None:
            pictures.paths.append(path)
            pictures.inputs.append(item)
    return pictures


def _kept_pictures(engine: Any, dataset: Dataset, options: TuneOptions, student: Trainable, settings: Any) -> _Pictures:
    """Unlabelled pictures to keep: --keep's, else a sample of the library; never the dataset's own."""
    own = set(dataset.labels)
    if options.keep is not None:
        folder = options.keep.expanduser()
        if not folder.is_dir():
            raise TuneError(f"--keep {folder}: not a folder of pictures")
        candidates: Iterable[str] = (str(p) for p in discover([folder]))
    else:
        candidates = (payload["paths"][0] for _, payload, _ in engine.store.scroll() if payload.get("paths"))
    pictures = _prepare(student, sample((p for p in candidates if p not in own), options.seed, KEEP_SAMPLE), settings)
    if not pictures.paths:
        log.warning("no unlabelled pictures to keep (%s): only the vocabulary holds the model to what it knew",
                    options.keep or "the index is empty")
    return pictures


def sample(paths: Iterable[str], seed: int, k: int) -> list[str]:
    """`k` of `paths`, uniformly, the same whatever order they come in: those with the smallest hash
    of (seed, path), in that (random) order."""
    return heapq.nsmallest(k, paths, key=lambda p: hashlib.sha256(f"{seed}\0{p}".encode("utf-8", "surrogateescape")).digest())


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _collate(student: Trainable, items: Sequence[PreparedImage]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    pixels = torch.stack([p.pixels for p in items]).to(student.device, torch.float32)
    extras = {k: torch.stack([p.extras[k] for p in items]).to(student.device) for k in items[0].extras}
    return pixels, extras


def _image_vectors(student: Trainable, items: Sequence[PreparedImage], batch: int) -> torch.Tensor:
    if not items:
        return torch.zeros((0, student.encoder.dim), device=student.device)
    return torch.cat([student.image_features(*_collate(student, chunk)).float() for chunk in _batches(items, batch)])


def _text_vectors(student: Trainable, texts: Sequence[str], batch: int) -> torch.Tensor:
    if not texts:
        return torch.zeros((0, student.encoder.dim), device=student.device)
    return torch.cat([student.text_features(chunk).float() for chunk in _batches(list(texts), batch)])


def _validation_map(student: Trainable, pictures: _Pictures, batch: int) -> float:
    """Text→image mAP on the validation pictures (every caption one of them has as a query)."""
    queries = sorted({c for captions in pictures.captions for c in captions})
    if not queries or not pictures.paths:
        return 0.0
    images = _image_vectors(student, pictures.inputs, batch).cpu().numpy()
    texts = _text_vectors(student, queries, batch).cpu().numpy()
    relevant = np.array([[q in captions for captions in pictures.captions] for q in queries])
    return mean_average_precision(texts @ images.T, relevant)


# --- training ----------------------------------------------------------------------------------------


class _Run:
    """The training loop's state: optimizer, schedule, random generator; one epoch at a time."""

    def __init__(self, student: Trainable, options: TuneOptions, lr: float, data: _Data, state: dict[str, Any]) -> None:
        self.student, self.options = student, options
        self.train, self.kept = data.train, data.distilled
        self.teacher_images, self.vocabulary, self.teacher_texts = data.teacher_images, data.vocabulary, data.teacher_texts
        train = data.train
        self.generator = torch.Generator().manual_seed(options.seed)
        full, rest = divmod(len(train.paths), options.batch_size)
        self.steps_per_epoch = full + (rest > 1)  # as `_order` makes them
        total = self.steps_per_epoch * options.epochs
        warmup = max(1, round(total * WARMUP))
        parameters = student.trained_parameters()
        self.optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=WEIGHT_DECAY)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total)))),
        )
        self.autocast, self.scaler = _autocast(student.device)
        self.normalised = [{normalised(c) for c in captions} for captions in train.captions]
        self.last_loss: float | None = None
        self.steps_done = 0
        if state.get("run"):
            self.optimizer.load_state_dict(state["run"]["optimizer"])
            self.schedule.load_state_dict(state["run"]["schedule"])
            self.generator.set_state(state["run"]["generator"])

    def _order(self) -> list[torch.Tensor]:
        """This epoch's batches of train pictures (a lone picture left at the end joins none)."""
        order = torch.randperm(len(self.train.paths), generator=self.generator)
        return [chunk for chunk in torch.split(order, self.options.batch_size) if len(chunk) > 1]

    def epoch(self, epoch: int, started: float, progress: ProgressCallback) -> None:
        student = self.student
        student.model.train()
        batches = self._order()
        losses = []
        for step, chunk in enumerate(batches, 1):
            indices = chunk.tolist()
            picks = torch.randint(1 << 30, (len(indices),), generator=self.generator).tolist()
            texts = [self.train.captions[i][p % len(self.train.captions[i])] for i, p in zip(indices, picks)]
            positives = torch.tensor(
                [[normalised(t) in self.normalised[i] for t in texts] for i in indices], device=student.device
            )
            kept_index = self._sample(len(self.kept.inputs), len(indices))
            vocabulary_index = self._sample(len(self.vocabulary), VOCABULARY_BATCH)
            with self.autocast:
                images = student.image_features(*_collate(student, [self.train.inputs[i] for i in indices]))
                loss = student.loss(images, student.text_features(texts), positives)
                if self.options.keep_weight:
                    loss = loss + self.options.keep_weight * self._keeping(kept_index, vocabulary_index)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(student.trained_parameters(), CLIP_GRAD)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            losses.append(float(loss.detach()))
            self.steps_done += 1
            remaining = (self.options.epochs - epoch) * self.steps_per_epoch + len(batches) - step
            per_step = (time.perf_counter() - started) / self.steps_done
            progress(TuneProgress("training", epoch, self.options.epochs, step, len(batches),
                                  float(np.mean(losses)), per_step * remaining))
        self.last_loss = float(np.mean(losses)) if losses else None

    def _keeping(self, kept_index: torch.Tensor, vocabulary_index: torch.Tensor) -> torch.Tensor:
        """How far the student has moved from the base on what it knew: the cosine distance of its
        vectors of kept pictures and vocabulary prompts to the base's, plus the KL divergence of its
        zero-shot distributions (each picture over the prompts, each prompt over the pictures, at the
        model's scale) from the base's."""
        student = self.student
        total = torch.zeros((), device=student.device)
        images = words = None
        if len(kept_index):
            images = student.image_features(*_collate(student, [self.kept.inputs[i] for i in kept_index]))
            total = total + _distance(images, self.teacher_images[kept_index])
        if len(vocabulary_index):
            words = student.text_features([self.vocabulary[i] for i in vocabulary_index])
            total = total + _distance(words, self.teacher_texts[vocabulary_index])
        if images is not None and words is not None:
            scale = student.model.logit_scale.detach().float().exp()
            before = scale * self.teacher_images[kept_index] @ self.teacher_texts[vocabulary_index].T
            after = scale * images.float() @ words.float().T
            total = total + _divergence(after, before) + _divergence(after.T, before.T)
        return total

    def _sample(self, population: int, size: int) -> torch.Tensor:
        if population == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.randperm(population, generator=self.generator)[: min(size, population)]

    def checkpoint(self, state: dict[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "epoch": state["epoch"],
            "trained": self.student.trained_state(),
            "best": state["best"],
            "history": state["history"],
            "base_validation_mAP": state["base_validation_mAP"],
            "run": {
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "generator": self.generator.get_state(),
            },
        }


def _distance(vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance of unit vectors to their targets."""
    return (1 - (vectors.float() * targets.float()).sum(dim=-1)).mean()


def _divergence(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(logits)) per row, averaged: how differently the rows rank their columns."""
    return torch.nn.functional.kl_div(
        torch.log_softmax(logits.float(), dim=1), torch.log_softmax(target_logits.float(), dim=1),
        log_target=True, reduction="batchmean",
    )


def _autocast(device: str) -> tuple[Any, Any]:
    """CUDA trains under autocast (bfloat16 where the GPU has it, else float16 with loss scaling)."""
    if not device.startswith("cuda"):
        return nullcontext(), torch.amp.GradScaler("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def _fingerprint(model_id: str, dataset: Dataset, split: Split, options: TuneOptions, choice: str, lr: float,
                 kept: Sequence[str]) -> dict[str, Any]:
    """What a checkpoint must have been made with to be continued."""
    digest = hashlib.sha256()
    for path in sorted(dataset.labels):
        digest.update(json.dumps([dataset.relative(path), sorted(dataset.labels[path])]).encode("utf-8"))
    for name in (TRAIN, VALIDATION):
        digest.update(json.dumps([dataset.relative(p) for p in split.of(name)]).encode("utf-8"))
    digest.update(json.dumps(list(kept)).encode("utf-8"))
    return {
        "model": model_id, "data": digest.hexdigest(), "epochs": options.epochs, "batch_size": options.batch_size,
        "lr": lr, "trainable": choice, "keep_weight": options.keep_weight, "seed": options.seed,
    }


def _start(student: Trainable, work: Path, fingerprint: dict[str, Any], options: TuneOptions,
           base_map: float) -> dict[str, Any]:
    """A fresh state, or the checkpoint's (its trained weights put back) when resuming."""
    fresh = {"epoch": 0, "history": [], "base_validation_mAP": base_map,
             "best": {"epoch": 0, "validation_mAP": base_map, "state": None}}
    if not options.resume:
        return fresh
    try:
        saved = torch.load(work / CHECKPOINT, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one line
        raise TuneError(f"the checkpoint in {work} cannot be read ({exc.__class__.__name__}): delete {work} to start over") from None
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("fingerprint") != fingerprint:
        before = saved.get("fingerprint") or {}
        changed = sorted(k for k in fingerprint if before.get(k) != fingerprint[k])
        raise TuneError(
            f"the interrupted run in {work} was made with other settings or data ({', '.join(changed) or 'format'}): "
            "run it with the same ones, or delete that folder to start over"
        )
    student.load_trained(saved["trained"])
    log.info("resuming after epoch %d of %d", saved["epoch"], options.epochs)
    return {"epoch": saved["epoch"], "history": saved["history"], "base_validation_mAP": saved["base_validation_mAP"],
            "best": saved["best"], "run": saved["run"]}


def _save_checkpoint(work: Path, checkpoint: dict[str, Any]) -> None:
    """Whole or not at all: a kill while writing leaves the previous epoch's checkpoint."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        with written_whole(work / CHECKPOINT) as tmp:
            torch.save(checkpoint, tmp)
    except OSError as exc:
        raise _disk_error(exc, f"saving the checkpoint of epoch {checkpoint['epoch']} in {work}",
                          "run the same command with --resume to continue from the epoch before") from None


# --- choosing and measuring --------------------------------------------------------------------------


def _mix(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT: base + α·(tuned − base), tensor by tensor (unchanged tensors as they are)."""
    mixed = {}
    for name, weight in tuned.items():
        old = base.get(name)
        if old is None or not weight.is_floating_point() or torch.equal(old, weight):
            mixed[name] = weight
        else:
            mixed[name] = old + alpha * (weight - old)
    return mixed


def _choose_alpha(student: Trainable, base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                  data: _Data, options: TuneOptions, improved: bool) -> dict[str, Any]:
    """Validation mAP at each α; the smallest α within ALPHA_TOLERANCE of the best (0 when no epoch improved)."""
    table = []
    student.model.eval()
    for alpha in ALPHAS if improved else (0.0,):
        student.load_weights(_mix(base, tuned, alpha))
        with torch.no_grad():
            table.append({"alpha": alpha, "validation_mAP": _validation_map(student, data.validation, options.batch_size)})
    best = max(row["validation_mAP"] for row in table)
    chosen = min(row["alpha"] for row in table if row["validation_mAP"] >= best - ALPHA_TOLERANCE)
    return {"table": table, "chosen": chosen}


def _before_after(engine: Any, folder: Path, test: Dataset, held_out: Sequence[str], options: TuneOptions) -> dict[str, Any]:
    """Base and tuned (loaded from `folder` by the product's own loader) on the test split, each in a
    scratch store, and on the held-out kept pictures."""
    from embedder.engine import Engine

    base_encoder = engine.encoder
    results: dict[str, Any] = {"test": {}, "kept": {}}
    with tempfile.TemporaryDirectory(prefix="embedder-tune-") as scratch:
        scratch_settings = replace(engine.settings, qdrant_url=None, qdrant_path=Path(scratch) / "base",
                                   collection="tune", tags=False, text_model=None, visual_model=None)
        base = Engine.open(scratch_settings, encoder=base_encoder)
        try:
            results["test"]["base"] = _rows(evaluate_model(base, test, options.ks, [None], split=TEST).evaluations)
        finally:
            base.close()
        tuned_settings = replace(scratch_settings, model=str(folder), qdrant_path=Path(scratch) / "tuned")
        tuned = Engine.open(tuned_settings)
        try:
            results["test"]["tuned"] = _rows(evaluate_model(tuned, test, options.ks, [None], split=TEST).evaluations)
            results["kept"] = _kept_figures(engine.settings, base_encoder, tuned.encoder, held_out)
        finally:
            tuned.close()
    results["test"]["pictures"] = len(test.labels)
    results["test"]["queries"] = len(test.queries)
    return results


def _rows(evaluations: Sequence[Any]) -> dict[str, dict[str, float]]:
    return {e.mode: e.overall() for e in evaluations if e.mode in (TEXT_TO_IMAGE, IMAGE_TO_IMAGE)}


def _kept_figures(settings: Any, base: Any, tuned: Any, paths: Sequence[str]) -> dict[str, Any]:
    """What the model knew, on pictures never trained on: the base's tags of each picture as its labels,
    how many of them the tuned model gives too, and the vocabulary's text→image mAP by each model."""
    images = []
    for path in paths:
        try:
            images.append(decode(text_to_path(path), settings.max_image_pixels, base.image_size).image)
        except ImageError:
            continue
    labels = load_vocabulary(settings.tags_file)
    if not images or not labels:
        return {"pictures": 0}
    base_vectors, tuned_vectors = base.encode_images(images), tuned.encode_images(images)
    base_tagger, tuned_tagger = Tagger(base, labels), Tagger(tuned, labels)
    base_tags = [set(t.tags) for t in base_tagger.tag(base_vectors)]
    tuned_tags = [set(t.tags) for t in tuned_tagger.tag(tuned_vectors)]
    agreement = [len(b & t) / len(b | t) if b | t else 1.0 for b, t in zip(base_tags, tuned_tags)]
    relevant = np.array([[label in tags for tags in base_tags] for label in labels])
    return {
        "pictures": len(images),
        "tags_unchanged": float(np.mean(agreement)),
        "base_vocabulary_map": mean_average_precision(base_tagger.label_vectors() @ base_vectors.T, relevant),
        "tuned_vocabulary_map": mean_average_precision(tuned_tagger.label_vectors() @ tuned_vectors.T, relevant),
        "image_cosine_to_base": float(np.mean(np.sum(base_vectors * tuned_vectors, axis=1))),
    }


# --- the model card --------------------------------------------------------------------------------


def _code(text: Any) -> str:
    """A value a user or a file controls, as literal Markdown (a code span)."""
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def model_card(card: dict[str, Any], name: str) -> str:
    """README.md of the tuned model: data, split, settings, and before/after tables."""
    s = card["settings"]
    test = card["test"]
    ks = s["ks"]
    columns = [*(f"P@{k}" for k in ks), *(f"R@{k}" for k in ks), "mAP", "MRR"]
    lines = [
        f"# {_code(name)}: {_code(card['base_model'])} tuned on your labels",
        "",
        f"Made by embedder {__version__} (`embedder tune`) on {card['created']}. Load it with "
        f"`EMBEDDER_MODEL=/path/to/{name}`, into a collection of its own (`embedder use`).",
        "",
        "## Data",
        "",
        f"- dataset: {_code(card['dataset'])}",
        f"- split: {_code(card['split']['file'])} (seed {card['split']['seed']}): "
        f"{card['split']['train']} train, {card['split']['validation']} validation, {card['split']['test']} test pictures",
        f"- kept (distilled towards the base model): {s['kept_pictures'] - s['kept_held_out']} unlabelled pictures "
        f"from {_code(s['keep'])} ({s['kept_held_out']} more held out to measure) and {s['vocabulary']} vocabulary prompts",
        "",
        "## Settings",
        "",
        f"- loss: {card['loss']}; keep weight {s['keep_weight']}",
        f"- trained: {s['trainable']} ({s['trained_parameters']:,} parameters) on {s['device']}; "
        f"{s['epochs']} epochs of batches of {s['batch_size']}, lr {s['lr']:g}, seed {s['seed']}",
        f"- chosen on validation: epoch {card['best_epoch']}, WiSE-FT α {card['alpha']:.2f} "
        f"(weights = base + α·(tuned − base))",
        "",
        "| epoch | validation mAP | loss |",
        "|---|---|---|",
        *(f"| {h['epoch']} | {h['validation_mAP']:.3f} | {_figure(h['loss'])} |" for h in card["history"]),
        "",
        "| α | validation mAP |",
        "|---|---|",
        *(f"| {row['alpha']:.2f} | {row['validation_mAP']:.3f} |" for row in card["alphas"]),
        "",
        f"## Before and after, on the test split ({test['pictures']} pictures never trained on, {test['queries']} queries)",
        "",
        f"| model | mode | {' | '.join(columns)} |",
        f"|---|---|{'---|' * len(columns)}",
    ]
    for model in ("base", "tuned"):
        for mode, overall in test[model].items():
            lines.append(f"| {model} | {mode} | " + " | ".join(f"{overall.get(c, 0.0):.3f}" for c in columns) + " |")
    kept = card.get("kept") or {}
    lines += ["", "## What it knew, on kept pictures never distilled on", ""]
    if kept.get("pictures"):
        lines += [
            f"{kept['pictures']} pictures, the base model's tags as their labels.",
            "",
            "| measure | base | tuned |",
            "|---|---|---|",
            f"| vocabulary text→image mAP | {kept['base_vocabulary_map']:.3f} | {kept['tuned_vocabulary_map']:.3f} |",
            f"| tags unchanged (mean Jaccard) | 1.000 | {kept['tags_unchanged']:.3f} |",
            f"| image vector cosine to the base's | 1.000 | {kept['image_cosine_to_base']:.3f} |",
        ]
    else:
        lines.append("No kept pictures to measure on (the library was empty, or --keep held none).")
    return "\n".join(lines) + "\n"
