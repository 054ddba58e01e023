"""Watched folders: file events (or polling, for network shares) batched into indexing jobs.

New, changed, moved and deleted files are collected until the folders have been quiet for a
moment, then handed to the `JobRunner` as at most two jobs: index what appeared or changed (a moved
file is recognised by its content and only gets its new path), then forget what is gone. On start,
each folder gets one catch-up pass (index with prune), so changes made while nothing was watching
are found too. Events for paths that indexing skips (hidden, or matched by the exclude globs,
relative to the watched folder) are ignored, and every job carries those globs.

A watched folder that is not there (a NAS share unmounted, a disk unplugged) is said once in the
log; nothing under it is forgotten, and when it is back it is watched again and caught up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch
from watchdog.observers.polling import PollingObserver

from embedder.media.excludes import Excludes
from embedder.media.images import is_image_name
from embedder.jobs.runner import Job, JobRequest, JobRunner
from embedder.paths import path_to_text

log = logging.getLogger(__name__)

QUIET_S = 2.0  # a batch is handed over once no event came for this long
MAX_WAIT_S = 30.0  # ...or once its first event is this old, however busy the folder stays
CHECK_S = 5.0  # how often the watched folders are looked for (one gone, one back)


class FolderWatcher:
    """Watches folders and feeds what changes in them to a `JobRunner`."""

    def __init__(
        self,
        runner: JobRunner,
        quiet_s: float = QUIET_S,
        poll_s: float = 0.0,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        exclude: Excludes | None = None,
        check_s: float = CHECK_S,
    ) -> None:
        self.runner = runner
        self.exclude = exclude or Excludes()
        self.quiet_s = quiet_s
        self.max_wait_s = max(max_wait_s, quiet_s)
        self.poll_s = poll_s
        self.check_s = check_s
        self._clock = clock
        self._observer = PollingObserver(timeout=poll_s) if poll_s > 0 else Observer()
        self._handler = _Handler(self._record)
        self._roots: dict[str, ObservedWatch | None] = {}  # None: not there now (said once)
        self._cond = threading.Condition()
        self._changed: dict[str, None] = {}  # paths to index, in the order they came
        self._gone: dict[str, None] = {}  # paths to forget if they are still gone
        self._first_event: float | None = None
        self._last_event = 0.0
        self._stopping = False
        self._flusher = threading.Thread(target=self._flush_loop, name="embedder-watch", daemon=True)
        self._started = False

    @property
    def mode(self) -> str:
        return f"polling every {self.poll_s:g} s" if self.poll_s > 0 else "file events"

    @property
    def roots(self) -> list[str]:
        return list(self._roots)

    @property
    def missing(self) -> list[str]:
        """The watched folders that are not there now (watched again once they are back)."""
        return [root for root, watch in list(self._roots.items()) if watch is None]

    def start(self, roots: Iterable[Path | str] = (), catch_up: bool = True) -> list[Job]:
        """Start watching `roots` (more can be added later); returns the catch-up jobs queued."""
        if not self._started:
            self._observer.start()
            self._flusher.start()
            self._started = True
        return [job for root in roots if (job := self.add(root, catch_up)) is not None]

    def add(self, root: Path | str, catch_up: bool = True) -> Job | None:
        """Watch one more folder; with `catch_up`, index it once now (with prune). None if already
        watched, or if it is not there now: then it is watched (and caught up) once it is."""
        folder = os.path.abspath(os.path.expanduser(os.fspath(root)))
        if folder in self._roots:
            return None
        if not os.path.isdir(folder):
            self._roots[folder] = None
            log.warning("%s is not there (not a folder now): watching it once it is", path_to_text(folder))
            return None
        self._roots[folder] = self._observer.schedule(self._handler, folder, recursive=True)
        log.info("watching %s (%s)", path_to_text(folder), self.mode)
        return self._catch_up(folder) if catch_up else None

    def _catch_up(self, folder: str) -> Job:
        return self.runner.submit(
            JobRequest(
                "index", (folder,), f"Catch up {path_to_text(folder)}", prune=True, origin="watch",
                exclude=self.exclude.globs,
            )
        )

    def remove(self, root: Path | str) -> None:
        folder = os.path.abspath(os.path.expanduser(os.fspath(root)))
        watch = self._roots.pop(folder, None)
        if watch is not None:
            self._unschedule(watch)

    def check_roots(self) -> list[Job]:
        """Look for each watched folder: one gone is said once and nothing under it is forgotten;
        one back is watched again and caught up (the catch-up jobs queued). The watcher's own
        thread does this every `check_s` seconds."""
        live = {emitter.watch for emitter in self._observer.emitters if emitter.is_alive()}
        jobs = []
        for folder, watch in list(self._roots.items()):
            there = os.path.isdir(folder)
            if watch is not None and there and watch in live:
                continue
            if watch is not None:  # gone, or its watch died with it (inotify drops a deleted folder's)
                self._unschedule(watch)
                self._roots[folder] = None
                if not there:
                    log.warning(
                        "%s is gone (unmounted or moved?): its images stay indexed, and it is watched again "
                        "once it is back", path_to_text(folder),
                    )
            if there and folder in self._roots:
                self._roots[folder] = self._observer.schedule(self._handler, folder, recursive=True)
                log.info("%s is there again: watching it and catching up", path_to_text(folder))
                jobs.append(self._catch_up(folder))
        return jobs

    def _unschedule(self, watch: ObservedWatch) -> None:
        try:
            self._observer.unschedule(watch)
        except (KeyError, OSError):  # its emitter already stopped with the folder it watched
            pass

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._started:
            self._observer.stop()
            self._observer.join(10)
            self._flusher.join(10)

    def flush(self) -> list[Job]:
        """Hand over what is pending now, quiet or not (tests and shutdown use it)."""
        with self._cond:
            changed, gone = list(self._changed), list(self._gone)
            self._changed.clear()
            self._gone.clear()
            self._first_event = None
        return self._submit(changed, gone)

    # --- events ----------------------------------------------------------------------------------

    def _roots_holding(self, path: str) -> list[str]:
        return [root for root in list(self._roots) if (path + os.sep).startswith(os.path.join(root, ""))]

    def _skipped(self, path: str) -> bool:
        """Whether a walk of the watched folder holding `path` would skip it."""
        roots = self._roots_holding(path)
        return bool(roots) and self.exclude.excludes(path, min(roots, key=len))

    def _record(self, changed: list[str], gone: list[str]) -> None:
        changed = [p for p in changed if not self._skipped(p)]
        gone = [p for p in gone if not self._skipped(p)]
        if not changed and not gone:
            return
        with self._cond:
            for path in gone:
                self._changed.pop(path, None)
                self._gone[path] = None
            for path in changed:
                self._changed[path] = None
            now = self._clock()
            self._last_event = now
            if self._first_event is None:
                self._first_event = now
            self._cond.notify_all()

    def _flush_loop(self) -> None:
        next_check = time.monotonic() + self.check_s
        while True:
            flush = False
            with self._cond:
                while not self._stopping:
                    until_check = next_check - time.monotonic()
                    if until_check <= 0:
                        break
                    if self._first_event is not None:
                        now = self._clock()
                        due = min(self._last_event + self.quiet_s, self._first_event + self.max_wait_s)
                        if now >= due:
                            flush = True
                            break
                        self._cond.wait(min(due - now, until_check))
                    else:
                        self._cond.wait(until_check)
                if self._stopping:
                    return
            if flush:
                self.flush()
            else:
                next_check = time.monotonic() + self.check_s
                try:
                    self.check_roots()
                except Exception:  # noqa: BLE001 - the next look tries again; the thread must live on
                    log.warning("could not look for the watched folders", exc_info=True)

    def _submit(self, changed: list[str], gone: list[str]) -> list[Job]:
        """At most two jobs: index what exists of `changed`, then forget what is still gone, unless
        the watched folder holding it is gone too (unmounted: its catch-up sorts it out once back)."""
        present = [p for p in changed if os.path.exists(p)]
        # a file whose path now holds a folder, a FIFO or a dangling symlink is as gone as a deleted one
        vanished = [p for p in changed if p not in present] + [p for p in gone if not os.path.isfile(p)]
        vanished = [p for p in vanished if self._root_is_there(p)]
        jobs = []
        try:
            if present:  # a folder moved in is walked with globs relative to the watched folder holding it
                label = _label("New or changed", present)
                request = JobRequest(
                    "index", tuple(present), label, origin="watch", exclude=self.exclude.globs, anchors=tuple(self._roots)
                )
                jobs.append(self.runner.submit(request))
            if vanished:
                gone_once = tuple(dict.fromkeys(vanished))
                jobs.append(self.runner.submit(JobRequest("prune", gone_once, _label("Gone", vanished), origin="watch")))
        except Exception as exc:  # noqa: BLE001 - a runner shutting down: the next catch-up finds these
            log.warning("could not queue watched changes: %s", exc)
        return jobs


    def _root_is_there(self, path: str) -> bool:
        """Whether the watched folder holding `path` (the innermost) is there now."""
        roots = self._roots_holding(path)
        return not roots or os.path.isdir(max(roots, key=len))


def _label(what: str, paths: list[str]) -> str:
    where = paths[0] if len(paths) == 1 else os.path.commonpath(paths)
    return f"{what}: {path_to_text(where)}" if len(paths) == 1 else f"{what}: {len(paths)} files in {path_to_text(where)}"


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into (changed, gone) paths; ignores files that are not images."""

    def __init__(self, record: Callable[[list[str], list[str]], None]) -> None:
        self._record = record

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind not in ("created", "modified", "moved", "deleted", "closed"):
            return
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if kind == "moved" else ""
        if event.is_directory:
            if kind == "modified":  # a folder's own mtime: the files' events say what changed
                return
            changed = [dest] if kind == "moved" else [src] if kind == "created" else []
            gone = [src] if kind in ("moved", "deleted") else []
        else:
            changed = [p for p in ([dest] if kind == "moved" else [src] if kind != "deleted" else []) if _wanted(p)]
            gone = [src] if kind in ("moved", "deleted") and _wanted(src) else []
        if changed or gone:
            self._record(changed, gone)


def _wanted(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and is_image_name(name)
