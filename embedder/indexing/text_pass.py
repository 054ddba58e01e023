"""Reading the text in pictures: a pass of its own after the picture pass ("Reading text").

Pictures are searchable by what they look like as soon as the picture pass stores them; this pass
then reads the text in every stored picture under the given folders (or files) that the current
reader has not read yet (`embedder.models.ocr.VERSION`, stored as `text_reader`: a better reader
reads everything again) and adds to its point, keeping everything else:

* `text_lines`: the recognised lines, each ``{"text", "box": [[x, y] ×4], "confidence"}`` (the box in
  the pixels of the picture as decoded upright, whose size is `text_size`: [width, height]);
* `text`: their words (`embedder.words.searchable` of each line, line after line), full-text indexed;
* `text_reader`: the reader's version; `text_failed`: why the reader failed on this picture, if it did;
* its word fields and WORDS vector again, now with the words of its text (embedder/indexing/lexicon.py).

Each picture is decoded again from its first file that still holds its bytes (`decode(...,
sha256=...)`, at the reader's `DECODE_SIDE`): a file that changed or is gone since it was indexed is
skipped with the reason (the next index run settles it). A picture the reader fails on fails alone,
with the reason in the report, keeps its picture vector and is not read again by this reader. Each
reading is stored as soon as it is made, so a pass stopped anywhere (cancelled, killed) goes on where
it stopped the next time: nothing read is read twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedder.errors import ImageError, TextReadError
from embedder.indexing.lexicon import TEXT_FIELDS, rewrite
from embedder.indexing.indexer import Failure, IndexReport, Progress, ProgressCallback, submit_unless_stopping
from embedder.media.images import decode
from embedder.paths import path_to_text, text_to_path
from embedder.store import ImageStore, SearchFilter
from embedder.words import searchable

if TYPE_CHECKING:
    from embedder.models.ocr import TextReader, TextReading

log = logging.getLogger(__name__)

AHEAD = 2  # pictures decoded ahead of the reader
NOT_READ = "text not read: "  # how a reading's failure starts in a report


def unread(store: ImageStore, roots: Sequence[str], version: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The points under `roots` (folders, or files) whose text `version` has not read, each once."""
    seen: set[str] = set()
    for root in roots:
        path = Path(root).expanduser().absolute()
        text = path_to_text(path)
        where = (
            SearchFilter(paths=(text,), text_unread_by=version) if not path.is_dir()
            else SearchFilter(folder=text, text_unread_by=version)
        )
        for pid, payload, _ in store.scroll(where=where):
            if pid not in seen:
                seen.add(pid)
                yield pid, payload


def text_payload(payload: dict[str, Any], reading: TextReading | None, version: str, failed: str | None = None) -> dict[str, Any]:
    """`payload` with a reading's fields (no lines for a failure, which records why)."""
    lines = [line.to_dict() for line in reading.lines] if reading is not None else []
    fields: dict[str, Any] = {
        "text_lines": lines,
        "text": " ".join(w for w in (searchable(line["text"]) for line in lines) if w),
        "text_reader": version,
    }
    if reading is not None:
        fields["text_size"] = list(reading.size)
    kept = {k: v for k, v in payload.items() if k not in TEXT_FIELDS}
    if failed:
        fields["text_failed"] = failed
    return {**kept, **fields}


class TextPass:
    """Reads the text of the stored pictures under some roots, one picture at a time (the reader
    runs on every core, with the decoding of the next pictures beside it)."""

    def __init__(
        self,
        store: ImageStore,
        reader: Callable[[], TextReader],
        max_pixels: int,
        lock: threading.Lock,
        owns: Callable[[str], bool] = lambda pid: True,
    ) -> None:
        """`reader` makes (or returns) the reader, called only when there is something to read;
        `lock` is the indexer's payload lock (every read-merge-write of a payload holds it);
        `owns` says which points this worker reads (a `--shard` worker: its share)."""
        self.store = store
        self.reader = reader
        self.max_pixels = max_pixels
        self.lock = lock
        self.owns = owns

    def run(self, roots: Sequence[Path | str], on_progress: ProgressCallback | None = None) -> IndexReport:
        """Read the text of every picture under `roots` not read by this reader yet; the report lists
        each picture read (`read`, those holding text in `with_text`) and each not read, with why
        (`text_failed`), by path."""
        from embedder.models.ocr import DECODE_SIDE, VERSION

        started = time.perf_counter()
        report = IndexReport()
        todo = [(pid, p) for pid, p in unread(self.store, [str(r) for r in roots], VERSION) if self.owns(pid)]
        if todo:
            reader = self.reader()
            tracker = _Rate(len(todo), on_progress)
            with ThreadPoolExecutor(1, thread_name_prefix="text-decode") as pool:
                for (pid, payload), decoded in _ahead(pool, todo, self.max_pixels, DECODE_SIDE):
                    self._read_one(reader, pid, payload, decoded, report)
                    tracker.advance()
        report.seconds = time.perf_counter() - started
        if todo:
            log.info("read text %s: %s", [str(r) for r in roots], report.summary())
        return report

    def _read_one(
        self, reader: TextReader, pid: str, payload: dict[str, Any], decoded: tuple[str, Any] | ImageError,
        report: IndexReport,
    ) -> None:
        first = (payload.get("paths") or [pid])[0]
        _name(report, first, payload)
        if isinstance(decoded, ImageError):
            report.text_failed.append(Failure(first, f"{NOT_READ}{decoded}"))
            return
        path, image = decoded
        try:
            reading, failed = reader.read(image), None
        except TextReadError as exc:
            reading, failed = None, str(exc)
        with self.lock:  # the point as it is now: another run may have moved it meanwhile
            current = self.store.retrieve([pid]).get(pid)
            if current is None or current.get("text_reader") == reader.version:
                return
            fresh = rewrite(self.store, pid, text_payload(current, reading, reader.version, failed))
        _name(report, path, current)
        if failed:
            report.text_failed.append(Failure(path, f"{NOT_READ}{failed}"))
            return
        report.read.append(path)
        if fresh["text"]:
            report.with_text.append(path)


def _name(report: IndexReport, path: str, payload: dict[str, Any]) -> None:
    """An upload is reported by the name it was sent as."""
    name = payload.get("name")
    if isinstance(name, str) and name != Path(path).name:
        report.names[path] = name


def _ahead(
    pool: ThreadPoolExecutor, todo: list[tuple[str, dict[str, Any]]], max_pixels: int, side: int
) -> Iterator[tuple[tuple[str, dict[str, Any]], tuple[str, Any] | ImageError]]:
    """Each point with its picture decoded (in `pool`, AHEAD of the reader), in order."""
    window: list[tuple[tuple[str, dict[str, Any]], Future]] = []
    try:
        for item in todo:
            window.append((item, submit_unless_stopping(pool, _decode_first, item[1], max_pixels, side)))
            if len(window) > AHEAD:
                head, future = window.pop(0)
                yield head, future.result()
        while window:
            head, future = window.pop(0)
            yield head, future.result()
    finally:
        for _, future in window:
            future.cancel()


def _decode_first(payload: dict[str, Any], max_pixels: int, side: int) -> tuple[str, Any] | ImageError:
    """The first of the point's files that still holds its bytes, decoded upright: (its path, image)."""
    failure = ImageError("no path is stored for this image")
    for text in payload.get("paths") or []:
        try:
            return text, decode(text_to_path(text), max_pixels, side, sha256=payload.get("sha256")).image
        except ImageError as exc:
            failure = exc
    return failure


class _Rate:
    """Progress of a pass, in pictures, with pictures/s and the time left."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self.started = time.perf_counter()

    def advance(self) -> None:
        self.done += 1
        if self.callback:
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            self.callback(Progress(self.done, self.total, rate, (self.total - self.done) / rate))
