"""Measuring a model on a labelled dataset through the product itself: index the pictures, search with
every label (text→image) and every picture (image→image), and score the rankings, with the speed of
each model (images indexed a second, milliseconds a text query) for a leaderboard.

Datasets and their CSV: `datasets.py`; splits: `splits.py`; the measures: `metrics.py`; paraphrase
robustness: `robustness.py`; the table and JSON: `leaderboard.py`; pictures: `plots.py`. Measuring
one split searches only that split's pictures, and an image query is never in its own reference set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from embedder.evaluation.datasets import Dataset
from embedder.evaluation.metrics import IMAGE_TO_IMAGE, TEXT_TO_IMAGE, Evaluation, GroupRobustness, score_ranking
from embedder.evaluation.robustness import caption_groups, template_groups
from embedder.models.vectors import normalise
from embedder.paths import path_to_text, text_to_path
from embedder.query.terms import apply_template
from embedder.store import SearchFilter

log = logging.getLogger(__name__)


def overlap_k(ks: Sequence[int]) -> int:
    """The cut-off whose results paraphrases are compared at: the second one asked for (5 of 1,5,10)."""
    return ks[min(1, len(ks) - 1)]


def dataset_filter(dataset: Dataset, **more: Any) -> SearchFilter:
    """The dataset's pictures in the store: its folder, and for one split only that split's files."""
    paths = tuple(path_to_text(p) for p in sorted(dataset.labels)) if dataset.restricted else ()
    return SearchFilter(folder=path_to_text(dataset.root), paths=paths, **more)


def evaluate_text(
    engine: Any, dataset: Dataset, ks: Sequence[int], template: str | None = None, ensemble: Sequence[str] = ()
) -> Evaluation:
    """Every label as a text query against the dataset's images; with `ensemble`, a query is the
    mean of its vectors under each of those templates (normalised)."""
    templates = list(ensemble) or [template]
    where = dataset_filter(dataset)
    depth = len(dataset.labels)
    scores = []
    spent = 0.0
    engine.encoder.encode_texts(["warm-up"])  # the first call pays one-off costs: not a query's time
    for query in dataset.queries:
        started = time.perf_counter()
        vector = normalise(engine.encoder.encode_texts([apply_template(query, t) for t in templates]).mean(axis=0))
        hits = engine.store.query(vector, depth, where=where)
        spent += time.perf_counter() - started
        ranked = [query in _labels_of(hit.payload, dataset) for hit in hits]
        relevant = sum(query in labels for labels in dataset.labels.values())
        scores.append(score_ranking(query, ranked, relevant, ks, [hit.id for hit in hits]))
    label = f"ensemble of {len(templates)}" if ensemble else template
    query_ms = 1000 * spent / len(scores) if scores else None
    evaluation = Evaluation(TEXT_TO_IMAGE, label, tuple(ks), scores, engine.encoder.model_id, query_ms=query_ms)
    evaluation.paraphrases = caption_groups(evaluation, dataset.paraphrases(), overlap_k(ks))
    return evaluation


def evaluate_images(engine: Any, dataset: Dataset, ks: Sequence[int]) -> Evaluation:
    """Every image as a query (its stored vector, itself left out) for images sharing a label."""
    depth = len(dataset.labels)
    scores = []
    for pid, payload, vector in engine.store.scroll(with_vectors=True, where=dataset_filter(dataset)):
        labels = _labels_of(payload, dataset)
        if not labels:
            continue
        hits = engine.store.query(vector, depth, where=dataset_filter(dataset, exclude_ids=(pid,)))
        ranked = [bool(labels & _labels_of(hit.payload, dataset)) for hit in hits]
        relevant = sum(bool(labels & other) for path, other in dataset.labels.items() if path not in payload["paths"])
        scores.append(score_ranking(payload.get("name", pid), ranked, relevant, ks, [hit.id for hit in hits]))
    return Evaluation(IMAGE_TO_IMAGE, None, tuple(ks), scores, engine.encoder.model_id)


@dataclass
class ModelEvaluation:
    """What measuring one model gives: its rows, templates as paraphrases, and the index report."""

    evaluations: list[Evaluation]
    report: Any  # the IndexReport of indexing the dataset (its failures)
    templates: list[GroupRobustness] = field(default_factory=list)  # one group per label, a wording per template


def evaluate_model(
    engine: Any,
    dataset: Dataset,
    ks: Sequence[int],
    templates: Sequence[str | None],
    ensemble: bool = False,
    split: str | None = None,
) -> ModelEvaluation:
    """Index the dataset (timed), then text→image per template (and their ensemble) and image→image;
    every row carries the model's indexing speed and the split it measured (`split`: its name)."""
    started = time.perf_counter()
    report = engine.indexer.index([text_to_path(p) for p in sorted(dataset.labels)])
    elapsed = time.perf_counter() - started
    evaluations = [evaluate_text(engine, dataset, ks, t) for t in templates]
    by_template = template_groups(evaluations, overlap_k(ks))
    if ensemble:
        evaluations.append(evaluate_text(engine, dataset, ks, ensemble=[t or "{}" for t in templates]))
    evaluations.append(evaluate_images(engine, dataset, ks))
    speed = len(report.added) / elapsed if report.added and elapsed > 0 else None
    for evaluation in evaluations:
        evaluation.images_per_s = speed
        evaluation.split = split
    return ModelEvaluation(evaluations, report, by_template)


def _labels_of(payload: dict[str, Any], dataset: Dataset) -> set[str]:
    return set().union(*(dataset.labels.get(p, set()) for p in payload.get("paths", [])))


def evaluate_in_scratch(
    settings: Any,
    dataset: Dataset,
    ks: Sequence[int],
    templates: Sequence[str | None],
    ensemble: bool = False,
    split: str | None = None,
    encoder: Any = None,
) -> ModelEvaluation:
    """`evaluate_model` for `settings.model` (or the loaded `encoder`, when given) in a throw-away
    embedded store of its own, removed afterwards: the configured collection is never touched."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from embedder.engine import Engine

    with tempfile.TemporaryDirectory(prefix="embedder-eval-") as scratch:
        scratch_settings = replace(settings, qdrant_url=None, qdrant_path=Path(scratch), collection="eval")
        if encoder is None:
            scratch_settings = replace(scratch_settings, text_model=None)
        engine = Engine.open(scratch_settings, encoder=encoder)
        try:
            return evaluate_model(engine, dataset, ks, templates, ensemble, split)
        finally:
            engine.close()
