"""The kinds of background job, in one table: what each does, what the pages call it while it runs, and
which job follows it. A new kind is one `JobKind` here; the runner, its journal and the watcher do the rest.

* ``index``: index files and folders (with `prune`, forget files gone from them), then read their text;
* ``uploads``: index uploads already saved, by the names they were sent as, then read their text;
* ``prune``: forget the files under some folders that are gone;
* ``text``: read the text in the stored pictures under some folders or files that the reader has not
  read yet (embedder/indexing/text_pass.py): the pass after the picture pass.

Nothing here imports Streamlit or a model: a job's work is the `Work` it is handed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from embedder.indexing.indexer import Failure, IndexReport, ProgressCallback

if TYPE_CHECKING:
    from embedder.indexing.indexer import Indexer
    from embedder.indexing.text_pass import TextPass
    from embedder.jobs.runner import JobRequest


class Work(Protocol):
    """What jobs work with: the indexer, and the text pass (None when TEXT_IN_IMAGES is off)."""

    indexer: Indexer
    text_pass: TextPass | None


Run = Callable[["Work", "JobRequest", ProgressCallback], IndexReport]
Then = Callable[["Work", "JobRequest", IndexReport], "JobRequest | None"]


@dataclass(frozen=True)
class JobKind:
    name: str
    doing: str  # what the job is doing, for people: "Indexing", "Reading text"
    run: Run
    then: Then | None = None  # the job to queue when this one is done, if any


def run_index(work: Work, request: JobRequest, progress: ProgressCallback) -> IndexReport:
    names = {Path(p): list(labels) for p, labels in request.names.items()}
    indexer = work.indexer
    return indexer.index(
        list(request.paths), prune=request.prune, on_progress=progress, names=names,
        exclude=request.excludes(indexer.exclude),
    )


def run_uploads(work: Work, request: JobRequest, progress: ProgressCallback) -> IndexReport:
    names = {Path(p): list(labels) for p, labels in request.names.items()}
    saved = {Path(p): names.get(Path(p), [Path(p).name]) for p in request.paths}
    refused = [Failure(name, reason) for name, reason in request.refused]
    return work.indexer.index_saved(saved, refused, on_progress=progress)


def run_prune(work: Work, request: JobRequest, progress: ProgressCallback) -> IndexReport:
    report = IndexReport()
    started = time.perf_counter()
    report.removed = work.indexer.prune(list(request.paths))
    report.seconds = time.perf_counter() - started
    return report


def run_text(work: Work, request: JobRequest, progress: ProgressCallback) -> IndexReport:
    if work.text_pass is None:  # TEXT_IN_IMAGES was turned off since the job was queued
        return IndexReport()
    return work.text_pass.run(list(request.paths), on_progress=progress)


def read_their_text(work: Work, request: JobRequest, report: IndexReport) -> JobRequest | None:
    """After a picture pass: read the text of what it indexed (nothing to do when reading is off)."""
    if work.text_pass is None or not request.paths:
        return None
    return replace(
        request, kind="text", label=f"Reading text: {request.label.removeprefix('Upload: ')}",
        prune=False, names={}, refused=(), exclude=None, anchors=(),
    )


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("index", "Indexing", run_index, then=read_their_text),
        JobKind("uploads", "Indexing", run_uploads, then=read_their_text),
        JobKind("prune", "Forgetting", run_prune),
        JobKind("text", "Reading text", run_text),
    )
}
