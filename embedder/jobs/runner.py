"""Indexing that runs on its own: one runner per store works through a queue of jobs in a thread.

The app holds one `JobRunner` per process (a cached resource), so leaving a page, reloading it or
closing the browser does not stop a run; the CLI's `watch` uses the same runner. Jobs run one at a
time, report progress, can be cancelled between batches (every batch reported as stored has
landed), and keep their final report for the pages to show. Unfinished jobs are written to a small
journal, so a job killed with its process is queued again when the next runner starts: indexing is
idempotent, so nothing is encoded twice.

Nothing here imports Streamlit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from embedder.durable import write_json
from embedder.errors import EmbedderError, Interrupted
from embedder.jobs.kinds import KINDS
from embedder.media.excludes import Excludes
from embedder.indexing.indexer import Indexer, IndexReport, Progress

if TYPE_CHECKING:
    from embedder.indexing.text_pass import TextPass

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
HISTORY = 20  # finished jobs kept for the pages
JOURNAL_FORMAT = 1


@dataclass(frozen=True)
class JobRequest:
    """What to do, in plain data (it is written to the journal as JSON); `kind` is one of
    embedder/jobs/kinds.py's.

    `index` indexes `paths` (files or folders; with `prune`, forgetting files gone from them);
    `uploads` indexes uploads already saved at `paths`, `names` being the names people sent them as
    and `refused` the uploads that could not be kept (name, reason); `prune` only forgets the files
    under `paths` that are gone (a deleted file, a folder moved away); `text` reads the text in the
    pictures under `paths` (it follows `index` and `uploads` by itself). `origin` says who asked:
    "user", "watch" or "resumed". `exclude`: the globs an `index` job's walk skips (None: the
    indexer's, from EXCLUDE), `anchors` the folders globs with a slash are relative to (a watched
    folder); both are kept in the journal, so a resumed job skips what it skipped before.
    """

    kind: str
    paths: tuple[str, ...]
    label: str
    prune: bool = False
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    refused: tuple[tuple[str, str], ...] = ()
    origin: str = "user"
    exclude: tuple[str, ...] | None = None
    anchors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "paths": list(self.paths),
            "label": self.label,
            "prune": self.prune,
            "names": {path: list(labels) for path, labels in self.names.items()},
            "refused": [list(pair) for pair in self.refused],
            "origin": self.origin,
            "exclude": None if self.exclude is None else list(self.exclude),
            "anchors": list(self.anchors),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRequest:
        return cls(
            kind=data["kind"],
            paths=tuple(str(p) for p in data["paths"]),
            label=str(data.get("label") or ", ".join(data["paths"])),
            prune=bool(data.get("prune", False)),
            names={str(p): tuple(str(n) for n in labels) for p, labels in (data.get("names") or {}).items()},
            refused=tuple((str(name), str(reason)) for name, reason in data.get("refused") or ()),
            origin=str(data.get("origin", "user")),
            exclude=None if data.get("exclude") is None else tuple(str(g) for g in data["exclude"]),
            anchors=tuple(str(a) for a in data.get("anchors") or ()),
        )

    @property
    def doing(self) -> str:
        """What the job does, for people: "Indexing", "Reading text"."""
        return KINDS[self.kind].doing

    def excludes(self, default: Excludes) -> Excludes:
        """What this job's walk skips: its own globs, else `default`'s; relative to its anchors."""
        chosen = default if self.exclude is None else Excludes(self.exclude)
        return chosen.anchored(self.anchors) if self.anchors else chosen


@dataclass(frozen=True)
class Job:
    """A snapshot of one job: the runner hands out copies, never the live record."""

    id: int
    request: JobRequest
    state: JobState = "queued"
    progress: Progress | None = None
    report: IndexReport | None = None
    error: str | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def quiet(self) -> bool:
        """A job that ran to its end and found nothing to do: every file was already indexed."""
        return self.state == "done" and self.report is not None and self.report.quiet


class Cancelled(Exception):
    """Raised inside a job's progress callback to stop it between batches."""


class JobRunner:
    """One worker thread running queued jobs one at a time against one `Indexer` (and text pass)."""

    def __init__(
        self,
        indexer: Indexer,
        journal: Path | None = None,
        on_change: Callable[[Job], None] | None = None,
        text_pass: TextPass | None = None,
    ) -> None:
        """`journal`: where unfinished jobs are kept across restarts (None: nowhere).
        `on_change`: called from the worker with each new snapshot (state or progress).
        `text_pass`: reads the text of what index and upload jobs stored (None: no text is read)."""
        self.indexer = indexer
        self.text_pass = text_pass
        self.journal = journal
        self.on_change = on_change
        self._cond = threading.Condition()
        self._jobs: dict[int, Job] = {}
        self._queue: deque[int] = deque()
        self._finished: deque[int] = deque()
        self._cancel: dict[int, threading.Event] = {}
        self._next_id = 1
        self._closing = False
        self._thread: threading.Thread | None = None
        self._leftover = self._unfinished()  # read before any submit rewrites the journal

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, resume: bool = True) -> list[Job]:
        """Start the worker; with `resume`, first queue the jobs an earlier process left unfinished."""
        leftover, self._leftover = self._leftover, []
        resumed = [self.submit(replace(r, origin="resumed")) for r in leftover] if resume else []
        if resumed:
            log.info("resuming %d unfinished indexing job(s)", len(resumed))
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="embedder-jobs", daemon=True)
                self._thread.start()
                # A process that ends without closing the runner (the app stopped by Ctrl-C or SIGTERM)
                # waits here for the batch in flight: a job left running in native code (the model,
                # the store) while Python tears itself down aborts the process.
                atexit.register(self.close)
        return resumed

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop after the batch in flight; the job cut short and those still queued stay in the journal
        for the next start (a job that fails while the runner closes counts as cut short too)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        atexit.unregister(self.close)

    # --- asking ----------------------------------------------------------------------------------

    def submit(self, request: JobRequest) -> Job:
        """Queue a job; returns its snapshot (its id is what `cancel` and `wait` take)."""
        if not request.paths and not request.refused:
            raise EmbedderError("Nothing to do: the job names no files or folders.")
        if request.kind not in KINDS:
            raise EmbedderError(f"Unknown kind of job {request.kind!r}: one of {', '.join(KINDS)}.")
        with self._cond:
            if self._closing:
                raise EmbedderError("The indexing runner is shutting down; try again in a moment.")
            waiting = next((self._jobs[i] for i in self._queue if self._jobs[i].request == request), None)
            if waiting is not None:  # the same work already waits its turn: once is enough
                return waiting
            job = Job(self._next_id, request, queued_at=time.time())
            self._next_id += 1
            self._jobs[job.id] = job
            self._cancel[job.id] = threading.Event()
            self._queue.append(job.id)
            self._save_journal()
            self._cond.notify_all()
        self._changed(job)
        return job

    def cancel(self, job_id: int) -> bool:
        """Stop a queued job now, or a running one after its batch in flight. False if already over."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return False
            self._cancel[job_id].set()
            if job.state == "queued":
                self._queue.remove(job_id)
                job = self._finish(job, "cancelled")
            self._cond.notify_all()
        self._changed(job)
        return True

    def get(self, job_id: int) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """The running job, then the queue in order, then finished jobs, newest first."""
        with self._cond:
            active = [self._jobs[i] for i in self._jobs if self._jobs[i].state == "running"]
            queued = [self._jobs[i] for i in self._queue]
            done = [self._jobs[i] for i in reversed(self._finished)]
        return active + queued + done

    def history(self, quiet: bool = True) -> list[Job]:
        """Finished jobs, newest first, whoever asked (a person, the watcher's catch-up, a resumed job);
        with `quiet=False`, leaving out those that found nothing to do (`Job.quiet`)."""
        return [j for j in self.jobs() if j.finished and (quiet or not j.quiet)]

    def active(self) -> Job | None:
        """The running job, else the first queued one, else None."""
        pending = [j for j in self.jobs() if not j.finished]
        return pending[0] if pending else None

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until the job has finished (or `timeout` passes); its latest snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._jobs[job_id].finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self._jobs[job_id]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or any(j.state == "running" for j in self._jobs.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # --- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self._jobs[self._queue.popleft()]
                job = self._set(job, state="running", started_at=time.time())
                cancel = self._cancel[job.id]
            self._changed(job)
            outcome: dict[str, Any] = {}
            interrupted = False
            try:
                outcome["report"] = self._run(job, cancel)
                state: JobState = "cancelled" if cancel.is_set() else "done"
            except Cancelled:
                state = "cancelled"
            except Interrupted as exc:  # the process is stopping under the job
                log.info("indexing job %d cut short: %s", job.id, exc)
                state, interrupted = "cancelled", True
            except EmbedderError as exc:
                state, outcome["error"] = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - one job's bug must not kill the runner
                if not _process_stopping():
                    log.exception("indexing job %d failed", job.id)
                state, outcome["error"] = "failed", f"{type(exc).__name__}: {exc}"
            with self._cond:
                # Cut short by the process stopping (close, SIGINT/SIGTERM, interpreter shutdown): not a
                # failure and not done; it goes back to the front of the queue, so the journal keeps it.
                stopping = interrupted or _process_stopping() or self._closing
                if stopping and state != "done" and not cancel.is_set():
                    log.info("indexing job %d (%s) stays in the journal for the next start", job.id, job.request.label)
                    self._closing = True  # a process going away runs nothing more
                    self._set(self._jobs[job.id], state="queued", started_at=None, progress=None)
                    self._queue.appendleft(job.id)
                    self._save_journal()
                    self._cond.notify_all()
                    return
                job = self._finish(self._jobs[job.id], state, **outcome)
            self._changed(job)
            self._follow(job)

    def _follow(self, job: Job) -> None:
        """Queue the job that follows a finished one (reading the text of what an index job stored)."""
        then = KINDS[job.request.kind].then
        if job.state != "done" or then is None or job.report is None:
            return
        follow = then(self, job.request, job.report)
        if follow is not None:
            try:
                self.submit(follow)
            except EmbedderError as exc:  # shutting down: the next index run reads the text
                log.info("not reading text now: %s", exc)

    def _run(self, job: Job, cancel: threading.Event) -> IndexReport:
        request = job.request

        def progress(p: Progress) -> None:
            with self._cond:
                snapshot = self._set(self._jobs[job.id], progress=p)
            self._changed(snapshot)
            if cancel.is_set() or self._closing:
                raise Cancelled

        return KINDS[request.kind].run(self, request, progress)

    # --- bookkeeping (callers hold self._cond) --------------------------------------------------

    def _set(self, job: Job, **changes: Any) -> Job:
        job = replace(job, **changes)
        self._jobs[job.id] = job
        return job

    def _finish(self, job: Job, state: JobState, **outcome: Any) -> Job:
        job = self._set(job, state=state, finished_at=time.time(), **outcome)
        self._finished.append(job.id)
        while len(self._finished) > HISTORY:
            old = self._finished.popleft()
            self._jobs.pop(old, None)
            self._cancel.pop(old, None)
        self._save_journal()
        self._cond.notify_all()
        return job

    def _changed(self, job: Job) -> None:
        if self.on_change is not None:
            try:
                self.on_change(job)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop indexing
                log.exception("job listener failed")

    def _save_journal(self) -> None:
        """Write every unfinished job (running first) so the next start can pick them up."""
        if self.journal is None:
            return
        pending = [j for j in self._jobs.values() if j.state == "running"] + [self._jobs[i] for i in self._queue]
        requests = self._leftover + [j.request for j in pending]
        document = {"format": JOURNAL_FORMAT, "pid": os.getpid(), "jobs": [r.as_dict() for r in requests]}
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.journal, document, indent=None)
        except OSError as exc:  # the journal is a convenience: indexing goes on without it
            log.warning("cannot write the job journal %s: %s", self.journal, exc.strerror or exc)

    def _unfinished(self) -> list[JobRequest]:
        if self.journal is None or not self.journal.is_file():
            return []
        try:
            document = json.loads(self.journal.read_text(encoding="utf-8"))
            requests = [JobRequest.from_dict(item) for item in document.get("jobs", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring an unreadable job journal %s: %s", self.journal, exc)
            return []
        unknown = [r for r in requests if r.kind not in KINDS]  # written by a newer version
        for request in unknown:
            log.warning("ignoring a job of an unknown kind %r in the job journal: %s", request.kind, request.label)
        return [r for r in requests if r.kind in KINDS]


def _process_stopping() -> bool:
    """Whether this Python process is shutting down (its main thread has ended: the app stopped by
    SIGINT or SIGTERM, a script returning while a job runs), when failures mean nothing of the job."""
    return sys.is_finalizing() or not threading.main_thread().is_alive()
