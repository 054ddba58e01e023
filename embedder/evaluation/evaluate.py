"""Retrieval quality on a labelled dataset: P@K, R@K, mAP and MRR, text→image and image→image,
with the speed of each model (images indexed a second, milliseconds a text query) for a leaderboard.

A dataset is a folder of class folders (`beach/001.jpg`; the query is the class name) or a CSV of
`path,caption` rows (paths relative to the CSV; an image may have several rows or `a|b` captions;
each distinct caption is a query whose relevant images are the ones it describes).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedder.errors import DatasetError
from embedder.models.vectors import normalise
from embedder.media.images import discover
from embedder.paths import path_to_text, text_to_path
from embedder.query.terms import apply_template
from embedder.store import SearchFilter
from embedder.terminal import printable

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    root: Path  # the folder whose images are indexed and searched
    labels: dict[str, set[str]] = field(default_factory=dict)  # absolute path (as stored) → captions / classes

    @property
    def queries(self) -> list[str]:
        return sorted({label for labels in self.labels.values() for label in labels})


def load_dataset(source: Path) -> Dataset:
    """Read a folder of class folders, or a `path,caption` CSV."""
    source = source.expanduser().resolve()
    if source.is_file():
        return _from_csv(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder or CSV file")
    dataset = Dataset(source)
    for path in discover([source]):
        relative = path.relative_to(source)
        if len(relative.parts) >= 2:
            dataset.labels[path_to_text(path)] = {path_to_text(relative.parts[0])}  # as paths are stored
    if not dataset.labels:
        raise DatasetError(f"{source}: no images in class folders (expected {source}/<class>/<image>)")
    return dataset


def _from_csv(path: Path) -> Dataset:
    dataset = Dataset(path.parent)
    reader = None
    # No field is longer than the file: a long caption is read, whatever the csv module's default limit.
    default_limit = csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            reader = csv.reader(fh)
            header = [name.strip().lower() for name in next(reader, [])]
            if not {"path", "caption"} <= set(header):
                raise DatasetError(f"{path}: a CSV dataset needs the columns path,caption")
            for row in reader:
                if row:
                    image, captions = _csv_row(path, reader.line_num, header, row)
                    dataset.labels.setdefault(image, set()).update(captions)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text; save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}, line {reader.line_num if reader else 1}: not valid CSV ({exc})") from None
    finally:
        csv.field_size_limit(default_limit)
    if not dataset.labels:
        raise DatasetError(f"{path}: no rows")
    return dataset


def _csv_row(path: Path, line: int, header: list[str], row: list[str]) -> tuple[str, set[str]]:
    """One `path,caption` row → (the image's absolute path, its captions); a malformed row is a DatasetError."""
    if len(row) != len(header):
        hint = ": put a caption with commas in double quotes" if len(row) > len(header) else ""
        raise DatasetError(f"{path}, line {line}: the header has {len(header)} columns but this row has {len(row)}{hint}")
    fields = dict(zip(header, row))
    if not fields["path"].strip():
        raise DatasetError(f"{path}, line {line}: the path is empty")
    image = path_to_text(os.path.normpath(path.parent / fields["path"]))
    return image, {c.strip() for c in fields["caption"].split("|") if c.strip()}


@dataclass(frozen=True)
class QueryScore:
    query: str
    relevant: int
    precision: dict[int, float]
    recall: dict[int, float]
    average_precision: float
    reciprocal_rank: float


def score_ranking(query: str, ranked: Sequence[bool], relevant: int, ks: Sequence[int]) -> QueryScore:
    """Scores of one ranked list (True where the hit is relevant; `relevant` = how many exist)."""
    hits = np.asarray(ranked, dtype=bool)
    found = np.cumsum(hits)
    precision = {k: float(found[min(k, len(hits)) - 1]) / k if len(hits) else 0.0 for k in ks}
    recall = {k: float(found[min(k, len(hits)) - 1]) / relevant if len(hits) and relevant else 0.0 for k in ks}
    positions = np.flatnonzero(hits)
    ap = float(np.sum(found[positions] / (positions + 1))) / relevant if relevant else 0.0
    rr = 1.0 / (positions[0] + 1) if len(positions) else 0.0
    return QueryScore(query, relevant, precision, recall, ap, rr)


@dataclass
class Evaluation:
    mode: str  # "text→image" or "image→image"
    template: str | None
    ks: tuple[int, ...]
    queries: list[QueryScore]
    model: str = ""
    images_per_s: float | None = None  # indexing speed of the model on this dataset (None: nothing indexed)
    query_ms: float | None = None  # a text query: encode, then rank every image


    def overall(self) -> dict[str, float]:
        if not self.queries:
            return {}
        out = {f"P@{k}": _mean(q.precision[k] for q in self.queries) for k in self.ks}
        out |= {f"R@{k}": _mean(q.recall[k] for q in self.queries) for k in self.ks}
        out["mAP"] = _mean(q.average_precision for q in self.queries)
        out["MRR"] = _mean(q.reciprocal_rank for q in self.queries)
        return out

    def as_dict(self, per_query: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {
            "model": self.model,
            "mode": self.mode,
            "template": self.template,
            "images_per_s": self.images_per_s,
            "query_ms": self.query_ms,
            "queries": len(self.queries),
            "overall": self.overall(),
        }
        if per_query:
            document["per_query"] = [
                {
                    "query": q.query,
                    "relevant": q.relevant,
                    **{f"P@{k}": q.precision[k] for k in self.ks},
                    **{f"R@{k}": q.recall[k] for k in self.ks},
                    "AP": q.average_precision,
                    "RR": q.reciprocal_rank,
                }
                for q in self.queries
            ]
        return document


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0


def evaluate_text(
    engine: Any, dataset: Dataset, ks: Sequence[int], template: str | None = None, ensemble: Sequence[str] = ()
) -> Evaluation:
    """Every label as a text query against the dataset's images; with `ensemble`, a query is the
    mean of its vectors under each of those templates (normalised)."""
    templates = list(ensemble) or [template]
    where = SearchFilter(folder=path_to_text(dataset.root))
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
        scores.append(score_ranking(query, ranked, relevant, ks))
    label = f"ensemble of {len(templates)}" if ensemble else template
    query_ms = 1000 * spent / len(scores) if scores else None
    return Evaluation("text→image", label, tuple(ks), scores, engine.encoder.model_id, query_ms=query_ms)


def evaluate_images(engine: Any, dataset: Dataset, ks: Sequence[int]) -> Evaluation:
    """Every image as a query (its stored vector, itself left out) for images sharing a label."""
    where_root = path_to_text(dataset.root)
    depth = len(dataset.labels)
    scores = []
    for pid, payload, vector in engine.store.scroll(with_vectors=True):
        labels = _labels_of(payload, dataset)
        if not labels:
            continue
        where = SearchFilter(folder=where_root, exclude_ids=(pid,))
        hits = engine.store.query(vector, depth, where=where)
        ranked = [bool(labels & _labels_of(hit.payload, dataset)) for hit in hits]
        relevant = sum(bool(labels & other) for path, other in dataset.labels.items() if path not in payload["paths"])
        scores.append(score_ranking(payload.get("name", pid), ranked, relevant, ks))
    return Evaluation("image→image", None, tuple(ks), scores, engine.encoder.model_id)


def evaluate_model(
    engine: Any, dataset: Dataset, ks: Sequence[int], templates: Sequence[str | None], ensemble: bool = False
) -> tuple[list[Evaluation], Any]:
    """Index the dataset (timed), then text→image per template (and their ensemble) and image→image;
    every row carries the model's indexing speed. Also returns the index report (its failures)."""
    started = time.perf_counter()
    report = engine.indexer.index([text_to_path(p) for p in sorted(dataset.labels)])
    elapsed = time.perf_counter() - started
    evaluations = [evaluate_text(engine, dataset, ks, t) for t in templates]
    if ensemble:
        evaluations.append(evaluate_text(engine, dataset, ks, ensemble=[t or "{}" for t in templates]))
    evaluations.append(evaluate_images(engine, dataset, ks))
    speed = len(report.added) / elapsed if report.added and elapsed > 0 else None
    for evaluation in evaluations:
        evaluation.images_per_s = speed
    return evaluations, report


def _labels_of(payload: dict[str, Any], dataset: Dataset) -> set[str]:
    return set().union(*(dataset.labels.get(p, set()) for p in payload.get("paths", [])))


def format_table(evaluations: Sequence[Evaluation]) -> str:
    """One row per evaluation (a leaderboard when there are several models or templates): model,
    mode, template, queries, every overall figure, images indexed a second and ms a text query."""
    if not evaluations:
        return ""
    columns = list(next((e.overall() for e in evaluations if e.queries), {}))
    width = max(12, *(len(e.model) for e in evaluations))
    header = (
        f"{'model':<{width}} {'mode':<12} {'template':<16} {'queries':>7} "
        + " ".join(f"{c:>6}" for c in columns)
        + f" {'img/s':>7} {'q ms':>6}"
    )
    lines = [header, "-" * len(header)]
    for ev in evaluations:
        overall = ev.overall()
        template = printable(ev.template or "—")
        cells = " ".join(f"{overall.get(c, 0.0):>6.3f}" for c in columns)
        speed = f"{ev.images_per_s:>7.1f}" if ev.images_per_s is not None else f"{'—':>7}"
        query_ms = f"{ev.query_ms:>6.1f}" if ev.query_ms is not None else f"{'—':>6}"
        row = f"{ev.model:<{width}} {ev.mode:<12} {template[:16]:<16} {len(ev.queries):>7}"
        lines.append(f"{row} {cells} {speed} {query_ms}")
    return "\n".join(lines)


def format_per_query(evaluation: Evaluation, k: int) -> str:
    """The text queries, worst first: where the model struggles."""
    rows = sorted(evaluation.queries, key=lambda q: (q.average_precision, q.query))
    lines = [f"{'query':<32} {'P@' + str(k):>6} {'R@' + str(k):>6} {'AP':>6} {'RR':>6}"]
    lines += [
        f"{printable(q.query)[:32]:<32} {q.precision[k]:>6.3f} {q.recall[k]:>6.3f} "
        f"{q.average_precision:>6.3f} {q.reciprocal_rank:>6.3f}"
        for q in rows
    ]
    return "\n".join(lines)
