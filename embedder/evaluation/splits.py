"""One split of a dataset's pictures into train, validation and test, shared by `eval` and `tune`.

The split is by picture (every caption of a picture goes where the picture goes) and stratified by
label: the pictures of each label (`Dataset.stratum`) are shuffled with the seed and dealt out, about
60 / 20 / 20, so every label with three or more pictures has some in each part. A label with two
pictures puts one in train and one in test; a label with one picture goes to train only (it is
learnt from, never measured), with a warning. Each label is shuffled by its own seed (the split seed
and the label), so adding pictures of one label never moves the pictures of another.

The split is written once, beside the dataset (`labels.csv` → `labels.splits.json`; a folder of
class folders → `splits.json` in it), and read back by every later `eval --split` and `tune`: a model
tuned on the train part is measured on test pictures it never saw. A dataset that gained pictures
since is refused until the split file is moved away: a new split would put pictures the model was
tuned on into the test part.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedder.durable import write_json
from embedder.errors import DatasetError
from embedder.evaluation.datasets import Dataset, load_dataset
from embedder.paths import path_to_text

log = logging.getLogger(__name__)

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
FRACTIONS = {VALIDATION: 0.2, TEST: 0.2}  # train gets the rest
SPLIT_KIND = "embedder-split"
SPLIT_FORMAT = 1
FOLDER_SPLIT_NAME = "splits.json"


@dataclass(frozen=True)
class Split:
    """Which pictures (absolute paths, sorted) are in each part, and how the split was made."""

    pictures: Mapping[str, tuple[str, ...]]
    seed: int
    path: Path | None = None  # the file it was read from or written to

    def of(self, name: str) -> tuple[str, ...]:
        return self.pictures[name]

    def counts(self) -> dict[str, int]:
        return {name: len(self.pictures[name]) for name in SPLITS}


def split_path(dataset: Dataset) -> Path:
    """Where a dataset's split is kept: beside its CSV (`x.csv` → `x.splits.json`), or in its folder."""
    source = dataset.source or dataset.root
    if source.is_dir():
        return source / FOLDER_SPLIT_NAME
    return source.with_name(f"{source.stem}.splits.json")


def make_split(dataset: Dataset, seed: int) -> Split:
    """Deal each label's pictures out to train / validation / test (see the module docstring);
    DatasetError when every label has one picture, or a part would be empty."""
    strata: dict[str, list[str]] = {}
    for path in sorted(dataset.labels):
        strata.setdefault(dataset.stratum(path), []).append(path)
    labelled = {label: paths for label, paths in strata.items() if label}
    where = dataset.source or dataset.root
    if labelled and all(len(paths) == 1 for paths in labelled.values()):
        raise DatasetError(
            f"{where}: every label has one picture, so none can be both learnt and tested; give labels "
            "two or more pictures each (three or more to have some for validation)"
        )
    single = sorted(label for label, paths in labelled.items() if len(paths) == 1)
    if single:
        log.warning(
            "%d label%s with one picture (e.g. %r) go%s to the train split only: never measured",
            len(single), "s" if len(single) > 1 else "", single[0], "" if len(single) > 1 else "es",
        )
    parts: dict[str, list[str]] = {name: [] for name in SPLITS}
    for label, paths in sorted(strata.items()):
        order = np.random.default_rng([seed, _label_seed(label)]).permutation(len(paths))
        shuffled = [paths[i] for i in order]
        n_test, n_validation = _shares(len(shuffled))
        parts[TEST] += shuffled[:n_test]
        parts[VALIDATION] += shuffled[n_test : n_test + n_validation]
        parts[TRAIN] += shuffled[n_test + n_validation :]
    for name in SPLITS:
        if not parts[name]:
            raise DatasetError(
                f"{where}: the {name} split would be empty ({len(dataset.labels)} pictures); a label needs "
                "three or more pictures to have one in each of train, validation and test"
            )
    return Split({name: tuple(sorted(parts[name])) for name in SPLITS}, seed)


def _shares(n: int) -> tuple[int, int]:
    """How many of a label's `n` pictures go to test and to validation (train keeps at least one)."""
    if n < 2:
        return 0, 0
    if n == 2:
        return 1, 0
    n_test = max(1, round(n * FRACTIONS[TEST]))
    n_validation = max(1, round(n * FRACTIONS[VALIDATION]))
    return n_test, min(n_validation, n - n_test - 1)


def _label_seed(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "big")


def split_document(dataset: Dataset, split: Split) -> dict[str, Any]:
    """The split file's JSON: paths relative to the dataset's folder."""
    return {
        "kind": SPLIT_KIND,
        "format": SPLIT_FORMAT,
        "seed": split.seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fractions": {TRAIN: round(1 - sum(FRACTIONS.values()), 3), **FRACTIONS},
        "pictures": {name: [dataset.relative(p) for p in split.of(name)] for name in SPLITS},
    }


def read_split(dataset: Dataset, path: Path) -> Split:
    """A split file written by `split_document`, its paths made absolute again (DatasetError if unreadable)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"Cannot read the split {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        document = None
    parts = document.get("pictures") if isinstance(document, dict) else None
    if not (
        isinstance(document, dict)
        and document.get("kind") == SPLIT_KIND
        and document.get("format") == SPLIT_FORMAT
        and isinstance(document.get("seed"), int)
        and isinstance(parts, dict)
        and all(isinstance(parts.get(name), list) and all(isinstance(p, str) for p in parts[name]) for name in SPLITS)
    ):
        raise DatasetError(
            f"{path} is not a split file this version can read; move it away to make a new split (a model "
            "tuned on the old one has seen some of its pictures)"
        )
    pictures = {name: tuple(sorted(os.path.normpath(os.path.join(path_to_text(dataset.root), p)) for p in parts[name])) for name in SPLITS}
    return Split(pictures, document["seed"], path)


def dataset_split(dataset: Dataset, seed: int = 0) -> Split:
    """The dataset's split: read from beside it, or made with `seed` and written there first.

    A split that does not cover the dataset's pictures is a DatasetError (pictures it lists that are
    gone are just left out)."""
    path = split_path(dataset)
    if not path.exists():
        split = make_split(dataset, seed)
        try:
            write_json(path, split_document(dataset, split))
        except OSError as exc:
            raise DatasetError(f"Cannot write the split {path}: {exc.strerror or exc}") from None
        log.info("split %s: %s (seed %d) written to %s", dataset.source, split.counts(), seed, path)
        return Split(split.pictures, seed, path)
    split = read_split(dataset, path)
    known = {p for name in SPLITS for p in split.of(name)}
    new = sorted(set(dataset.labels) - known)
    if new:
        raise DatasetError(
            f"{len(new)} picture{'s' if len(new) > 1 else ''} of the dataset (e.g. {dataset.relative(new[0])}) "
            f"{'are' if len(new) > 1 else 'is'} not in its split {path}: move that file away to make a new "
            "split (a model tuned on the old split has seen some of its pictures)"
        )
    present = set(dataset.labels)
    return Split({name: tuple(p for p in split.of(name) if p in present) for name in SPLITS}, split.seed, path)


def labelled(source: Path, split: str | None = None, seed: int = 0) -> Dataset:
    """The dataset at `source`, or only its `split` part (the split made beside it on first use):
    what `eval` and the Evaluate page measure."""
    try:
        dataset = load_dataset(source)
    except OSError as exc:
        raise DatasetError(f"{source}: {exc.strerror or exc}") from None
    if split is None:
        return dataset
    parts = dataset_split(dataset, seed)
    log.info("split %s: %s", parts.path, parts.counts())
    return dataset.subset(parts.of(split))
