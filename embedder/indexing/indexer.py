"""The pipeline from image files to Qdrant points.

Files are hashed first; an image whose hash is stored is never decoded or encoded again (a
renamed, moved or copied file only updates the point's paths, and a point stored by an older
version without some payload fields gets them from the file's header). New images are decoded in a
thread pool ahead of the model, encoded in batches and upserted batch by batch, so a crash
loses at most the batch in flight and the next run finishes the job. Point ids come from
content hashes, which makes every re-run idempotent.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedder.models.base import Encoder, PreparedImage, default_workers
from embedder.errors import ImageError, Interrupted, UploadError
from embedder.media.excludes import Excludes
from embedder.media.formats import SKIP_SUFFIX
from embedder.media.images import ImageMeta, decode, discover, hash_file, point_id, read_meta
from embedder.paths import missing, path_to_text, text_to_path
from embedder.store import ImageStore, Point, SearchFilter
from embedder.indexing.lexicon import TEXT_FIELDS, needs_words, rewrite, with_words
from embedder.indexing.tags import Tagged, Tagger, needs_tags, retag, stored_vectors
from embedder.media.uploads import save_upload
from embedder.media.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

RETRIEVE_CHUNK = 256
# What `new_payload` writes: a stored point lacking any of these gets them from its file on re-index.
PAYLOAD_FIELDS = frozenset(
    {
        "sha256", "paths", "names", "name", "folder", "folders",  # which image, where
        "bytes", "width", "height", "format", "mtime", "taken_at", "taken_offset", "date",  # what the file says
        "indexed_at", "model",  # how it was indexed
    }
)


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass(frozen=True)
class FileOutcome:
    """What one file of a run came to: each file indexed or uploaded has exactly one."""

    file: str  # the file as people know it: its path, or the name it was uploaded as
    outcome: str  # one of OUTCOMES
    stored_at: str = ""  # the path it is indexed at (an upload's file under UPLOAD_DIR); "" if none
    detail: str = ""  # failed or skipped: why; copy: the file it is a copy of


# Each file's outcome, in the order a report lists them, and how a summary counts them.
OUTCOMES = {
    "added": "added",
    "unchanged": "unchanged",
    "renamed": "renamed",
    "copy": "already indexed (another copy)",
    "updated": "updated",
    "failed": "failed",
    "skipped": "skipped",
}


@dataclass
class IndexReport:
    """What a run did, file by file.

    The lists hold paths (for uploads, the stored files); `files()` gives every input file once
    with what it came to, uploads by the names they were sent as (`sent`). A picture found at
    several paths is added once and its other paths are `copies` (`copy_of` says of which file).
    `removed` is what prune forgot: paths of the index, not files of the run."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)  # new paths of known images no longer at their old ones
    copies: list[str] = field(default_factory=list)  # paths of images that another file holds too
    updated: list[str] = field(default_factory=list)  # known images whose missing fields were filled in
    removed: list[str] = field(default_factory=list)  # paths pruned: gone, or no longer a regular file
    failed: list[Failure] = field(default_factory=list)  # uploads by the names they were sent as
    skipped: list[Failure] = field(default_factory=list)  # left out on purpose (videos, SVG, …): why, in `reason`
    read: list[str] = field(default_factory=list)  # pictures whose text was read (embedder/indexing/text_pass.py)
    with_text: list[str] = field(default_factory=list)  # of those, the ones holding text
    # Pictures whose text was not read (the reader failed on it, or its file changed or is gone): why.
    # Apart from `failed`: the picture itself is indexed, and each file keeps its one outcome in `files()`.
    text_failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    names: dict[str, str] = field(default_factory=dict)  # stored path → the name it was uploaded as (the first)
    copy_of: dict[str, str] = field(default_factory=dict)  # a path in `copies` → the file it is a copy of
    sent: dict[str, list[str]] = field(default_factory=dict)  # stored upload → every name it was sent as, in order

    def label(self, path: str) -> str:
        """How people know the file at `path`: the upload's own name, else the path."""
        return self.names.get(path, path)

    def files(self) -> list[FileOutcome]:
        """Every file of the run exactly once, with what it came to (see `FileOutcome`).

        An upload is listed under each name it was sent as: the same bytes sent twice are added
        once, and the second is a copy of the first."""
        entries: list[FileOutcome] = []
        for outcome, paths in (("added", self.added), ("unchanged", self.unchanged), ("renamed", self.renamed),
                               ("copy", self.copies), ("updated", self.updated)):
            for path in paths:
                entries += self._entries(outcome, path)
        entries += [FileOutcome(f.path, "failed", detail=f.reason) for f in self.failed]
        entries += [FileOutcome(f.path, "skipped", detail=f.reason) for f in self.skipped]
        return entries

    def _entries(self, outcome: str, path: str) -> list[FileOutcome]:
        """The files behind one stored path: the path itself, or each name an upload was sent as."""
        original = self.copy_of.get(path, "")
        names = self.sent.get(path)
        if not names:
            return [FileOutcome(path, outcome, path, original if outcome == "copy" else "")]
        if outcome == "copy":  # bytes stored before under `original`: that name again is no copy of itself
            return [FileOutcome(n, "unchanged" if n == original else "copy", path, "" if n == original else original)
                    for n in names]
        first, *others = names
        if outcome in ("unchanged", "updated"):
            return [FileOutcome(n, outcome, path) for n in names]
        return [FileOutcome(first, outcome, path)] + [FileOutcome(n, "copy", path, first) for n in others]

    def counts(self) -> dict[str, int]:
        """How many files came to each outcome (every key of OUTCOMES), and `removed`."""
        counted = Counter(entry.outcome for entry in self.files())
        return {
            **{outcome: counted[outcome] for outcome in OUTCOMES}, "removed": len(self.removed),
            "read": len(self.read), "text not read": len(self.text_failed),
        }

    @property
    def quiet(self) -> bool:
        """True when the run changed nothing and nothing failed: every file was already indexed."""
        counts = self.counts()
        return not any(counts[k] for k in ("added", "renamed", "copy", "updated", "failed", "removed", "read", "text not read"))

    def summary(self) -> str:
        """The run in words, leaving out what did not happen: `3 added, 240 unchanged, 1 failed in 2.0 s`;
        a run that changed nothing says so: `Nothing new: all 240 files were already indexed (0.3 s)`.
        Files left out on purpose are counted by kind: `…, 40 skipped (videos: 38, SVG drawings: 2) in 2.0 s`.
        The text pass's part follows: `…; text read in 3 pictures (2 with text), 1 not read`."""
        took = f"{self.seconds:.1f} s"
        counts = self.counts()
        skipped = f"{counts['skipped']:,} skipped ({self.skipped_kinds()})" if counts["skipped"] else ""
        reading = self.reading()
        changes = ["added", "renamed", "copy", "updated", "removed", "failed"]
        if not any(counts[k] for k in changes):
            also = f"; {skipped}" if skipped else ""
            if reading and not counts["unchanged"]:  # a text pass alone
                return f"{reading[0].upper()}{reading[1:]}{also} in {took}"
            if not counts["unchanged"]:
                return f"Nothing to index: no image files were found{also} ({took})"
            files = _plural(counts["unchanged"], "file")
            if reading:
                return f"{files} already indexed{also}; {reading} in {took}"
            return f"Nothing new: {'all ' if counts['unchanged'] > 1 else ''}{files} already indexed{also} ({took})"
        order = ["added", "unchanged", "renamed", "copy", "updated", "removed", "failed"]
        parts = [f"{counts[k]:,} {OUTCOMES.get(k, k)}" for k in order if counts[k]] + ([skipped] if skipped else [])
        return ", ".join(parts) + f" in {took}" + (f"; {reading}" if reading else "")

    def reading(self) -> str:
        """The text pass's part of the run: `text read in 3 pictures (2 with text), 1 not read`; "" if none."""
        if not self.read and not self.text_failed:
            return ""
        pictures = f"{len(self.read):,} picture{'' if len(self.read) == 1 else 's'}"
        said = f"text read in {pictures} ({len(self.with_text):,} with text)"
        return said + (f", {len(self.text_failed):,} not read" if self.text_failed else "")

    def skipped_by_reason(self) -> dict[str, int]:
        """How many files were left out for each reason, most first."""
        return dict(Counter(f.reason for f in self.skipped).most_common())

    def skipped_kinds(self) -> str:
        """`videos: 38, SVG drawings: 2`: the skipped files by kind, most first."""
        return ", ".join(f"{reason.removesuffix(SKIP_SUFFIX)}: {n:,}" for reason, n in self.skipped_by_reason().items())

    @classmethod
    def merge(cls, reports: Iterable[IndexReport]) -> IndexReport:
        """One report for several runs (uploads and folders in one go, a job's parts)."""
        merged = cls()
        for report in reports:
            for name in ("added", "unchanged", "renamed", "copies", "updated", "removed", "failed", "skipped", "read", "with_text", "text_failed"):
                getattr(merged, name).extend(getattr(report, name))
            merged.seconds += report.seconds
            merged.names.update(report.names)
            merged.copy_of.update(report.copy_of)
            merged.sent.update(report.sent)
        return merged

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "renamed": self.renamed,
            "copies": self.copies,
            "copy_of": self.copy_of,
            "updated": self.updated,
            "removed": self.removed,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "skipped": [{"path": f.path, "reason": f.reason} for f in self.skipped],
            "files": [
                {"file": e.file, "outcome": e.outcome, "stored_at": e.stored_at, "detail": e.detail}
                for e in self.files()
            ],
            "read": self.read,
            "with_text": self.with_text,
            "text_failed": [{"path": f.path, "reason": f.reason} for f in self.text_failed],
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Progress:
    done: int  # files dealt with so far
    total: int
    images_per_s: float  # images encoded per second in this run
    eta_s: float | None

    def words(self) -> str:
        """`340 of 802 files · 12.3 images/s · about 1 min 05 s left`, leaving out what is not known yet
        (no "0.0 images/s" before the first batch is encoded, no "0 s left" at the end)."""
        parts = [f"{self.done:,} of {self.total:,} files"]
        if self.images_per_s >= 0.05:
            parts.append(f"{self.images_per_s:.1f} images/s")
        if self.eta_s is not None and self.done < self.total and self.eta_s >= 1:
            parts.append(time_left(self.eta_s))
        return " · ".join(parts)


def time_left(seconds: float | None) -> str:
    """`about 2 min 05 s left`, in the largest units that keep it short."""
    if seconds is None:
        return "estimating time left"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"about {minutes} min {seconds:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


ProgressCallback = Callable[[Progress], None]


@dataclass
class _Image:
    """One distinct image (one content hash) and every path it was found at."""

    digest: str
    paths: list[Path]
    size: int
    mtime: float

    @property
    def id(self) -> str:
        return point_id(self.digest)


def shard_of(digest: str, shards: int) -> int:
    """Which of `shards` workers owns an image: stable, by content hash."""
    return int(digest[:16], 16) % shards


class Indexer:
    """Drives one indexing run: hash, skip known, decode ahead, encode, upsert, report."""

    def __init__(
        self,
        encoder: Encoder,
        store: ImageStore,
        max_pixels: int,
        workers: int = 0,
        shard: tuple[int, int] | None = None,
        max_upload_bytes: int | None = None,
        exclude: Excludes | None = None,
        visual: Encoder | None = None,
        thumbnails: ThumbnailCache | None = None,
        tagger: Tagger | None = None,
    ) -> None:
        """`exclude`: what folder runs skip unless a run says otherwise (EXCLUDE; hidden names always)."""
        self.encoder = encoder
        self.visual = visual  # the image-only model (EMBEDDER_VISUAL_MODEL): each new point gets its vector too
        self.thumbnails = thumbnails  # thumbnails made from the decode the model needs anyway
        self.tagger = tagger  # tags each new image from its CLIP vector, and stored images that have none
        self.store = store
        self.max_pixels = max_pixels
        self.workers = workers or default_workers(encoder.device)
        self.shard = shard
        self.max_upload_bytes = max_upload_bytes
        self.exclude = exclude or Excludes()
        # Runs in one process (two browser sessions) may meet on the same images: every
        # read-merge-write of a point's payload happens under this lock, so no path is lost.
        self._payload_lock = threading.Lock()

    @property
    def payload_lock(self) -> threading.Lock:
        """What every read-merge-write of a payload holds (the text pass too)."""
        return self._payload_lock

    def index(
        self,
        roots: Sequence[Path | str],
        prune: bool = False,
        on_progress: ProgressCallback | None = None,
        names: Mapping[Path, Sequence[str]] | None = None,
        exclude: Excludes | None = None,
    ) -> IndexReport:
        """Index every image under `roots`; with `prune`, forget images under them that are gone.

        `names` labels paths with the names people know them by (uploads); by default a file's name.
        `exclude` (by default the indexer's) says what the walk skips; with `prune`, paths it skips
        are forgotten too, as if their files were gone (their files are not touched).
        """
        exclude = exclude or self.exclude
        started = time.perf_counter()
        report = IndexReport()
        present: list[Path | str] = []
        for root in roots:
            if missing(root):  # a root that exists but cannot be read is for `discover` to report
                report.failed.append(Failure(path_to_text(root), "no such file or folder"))
            else:
                present.append(root)
        files = list(discover(
            present,
            lambda path, why: report.failed.append(Failure(path_to_text(path), why)),
            exclude,
            lambda path, kind: report.skipped.append(Failure(path_to_text(path), kind.reason)),
        ))
        names = names or {}
        tracker = _Tracker(len(files), on_progress)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool:
            found = self._hash_all(files, pool, report, tracker)
            owners = {path_to_text(path): img.digest for img in found for path in img.paths}
            images = self._mine(found, tracker)
            self._release_paths(owners)
            new = self._sort_known(images, names, owners, report, tracker)
            self._encode_new(new, names, pool, report, tracker)
        filled = self.store.fill_days()  # images stored before the date filter's day field: once, from their dates
        if report.added or filled:
            self.store.optimize()  # after a bulk load, where the engine wants it (a no-op when small)
        if prune:  # a root that is missing (an unplugged disk) is not a reason to forget its images
            report.removed = self.prune(present, exclude)
        report.seconds = time.perf_counter() - started
        log.info("index %s: %s", [str(r) for r in roots], report.summary())
        return report

    def index_uploads(
        self, uploads: Iterable[tuple[str, bytes]], upload_dir: Path, on_progress: ProgressCallback | None = None
    ) -> IndexReport:
        """Save uploaded files under `upload_dir` (content-addressed) and index them (see `index_saved`)."""
        saved, refused = self.save_uploads(uploads, upload_dir)
        return self.index_saved(saved, refused, on_progress)

    def save_uploads(
        self, uploads: Iterable[tuple[str, bytes]], upload_dir: Path
    ) -> tuple[dict[Path, list[str]], list[Failure]]:
        """Keep uploaded bytes under `upload_dir`: where each went with the names it was sent as, and
        the uploads refused (too large, not an image type, no space) under those names."""
        saved: dict[Path, list[str]] = {}
        refused: list[Failure] = []
        for raw_name, data in uploads:
            try:
                upload = save_upload(raw_name, data, upload_dir, self.max_upload_bytes)
            except (UploadError, OSError) as exc:
                refused.append(Failure(raw_name, str(exc)))
                continue
            saved.setdefault(upload.path, []).append(upload.name)
        return saved, refused

    def index_saved(
        self,
        saved: Mapping[Path, Sequence[str]],
        refused: Sequence[Failure] = (),
        on_progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index saved uploads: the report speaks of them by the names people sent them as, and
        files that turn out not to be readable images are not kept."""
        report = self.index(list(saved), names=saved, on_progress=on_progress) if saved else IndexReport()
        unreadable = []
        for failure in report.failed:
            path = text_to_path(failure.path)
            if path in saved:  # bytes that are no readable image are not worth keeping
                path.unlink(missing_ok=True)
            unreadable += [Failure(name, failure.reason) for name in saved.get(path, [failure.path])]
        report.failed = list(refused) + unreadable
        report.names = {path_to_text(path): names[0] for path, names in saved.items() if names}
        report.sent = {path_to_text(path): list(names) for path, names in saved.items() if names}
        return report

    def prune(self, roots: Sequence[Path | str], exclude: Excludes | None = None) -> list[str]:
        """Drop paths under `roots` that no longer hold their image (see `no_longer_holds`: gone, a
        folder, a FIFO, a device, a dangling symlink, another file's size) or that a walk of the root
        skips (hidden, or matched by `exclude`); delete points left with no path. No file is touched."""
        folders = [os.path.abspath(Path(r).expanduser()) for r in roots]
        prefixes = {os.path.join(path_to_text(folder), ""): folder for folder in folders}

        def gone(path: str, size: int | None) -> bool:
            under = [folder for prefix, folder in prefixes.items() if (path + os.sep).startswith(prefix)]
            if not under:
                return False
            if exclude is not None and all(exclude.excludes(text_to_path(path), folder) for folder in under):
                return True  # no walk of these roots finds it
            return no_longer_holds(text_to_path(path), size)

        removed: list[str] = []
        doomed: list[str] = []
        shrunk: list[tuple[str, dict[str, Any]]] = []
        for pid, payload, _ in self.store.scroll():
            size = payload.get("bytes")
            lost = [p for p in payload.get("paths", []) if gone(p, size if isinstance(size, int) else None)]
            if not lost:
                continue
            removed.extend(lost)
            kept = [p for p in payload["paths"] if p not in lost]
            if kept:
                shrunk.append((pid, relocated(payload, kept, [])))
            else:
                doomed.append(pid)
        self.store.delete(doomed)
        for pid, payload in shrunk:
            rewrite(self.store, pid, payload)
        return removed

    def _update_point(
        self,
        img: _Image,
        fresh: list[Path],
        names: Mapping[Path, Sequence[str]],
        meta: ImageMeta | None,
        owners: Mapping[str, str],
        tagged: Tagged | None = None,
    ) -> bool:
        """Record new paths (and upload names) of a stored image, paths whose files are gone dropping
        out, and paths this run found under another hash (`owners`) leaving it; with `meta`, fill in
        the payload fields it lacks; with `tagged`, its tags if it has none. One write at most. True
        if fields were filled in (tags alone leave the image "unchanged")."""
        with self._payload_lock:
            stored = self.store.retrieve([img.id]).get(img.id, {})
            payload = stored
            listed = stored.get("paths", [])
            kept = [
                p for p in listed
                if owners.get(p, img.digest) == img.digest and (not fresh or os.path.exists(text_to_path(p)))
            ]
            if fresh or kept != listed:
                paths = list(dict.fromkeys(kept + [path_to_text(p) for p in fresh]))
                labels = [label for p in fresh for label in _labels(p, names)]
                payload = relocated(stored, paths, labels)
            filled = meta is not None and not PAYLOAD_FIELDS <= payload.keys()  # another run may have filled them
            if filled:
                payload = backfilled(payload, new_payload(img, meta, names, self.encoder.model_id, time.time()))
            if tagged is not None and stored and "tags" not in payload:  # another run may have tagged it meanwhile
                payload = {**payload, **tagged.payload()}
            if stored and (payload != stored or needs_words(stored)):  # names, tags, words: a point's words
                rewrite(self.store, img.id, payload)
        return filled

    def _read_meta(self, img: _Image) -> ImageMeta | None:
        """The file's header, to fill in a stored point's missing fields; None if it cannot be read now."""
        try:
            return read_meta(img.paths[0], self.max_pixels)
        except ImageError as exc:
            log.info("cannot fill in the missing details of %s, left as stored: %s", img.paths[0], exc)
            return None

    def _hash_all(
        self, files: list[Path], pool: ThreadPoolExecutor, report: IndexReport, tracker: _Tracker
    ) -> list[_Image]:
        by_digest: dict[str, _Image] = {}
        hashing = [submit_unless_stopping(pool, _hash_and_stat, path) for path in files]
        for path, result in zip(files, (future.result() for future in hashing)):
            if isinstance(result, ImageError):
                report.failed.append(Failure(path_to_text(path), str(result)))
                tracker.advance(1)
                continue
            digest, size, mtime = result
            image = by_digest.setdefault(digest, _Image(digest, [], size, mtime))
            image.paths.append(path)
        return list(by_digest.values())

    def _mine(self, images: list[_Image], tracker: _Tracker) -> list[_Image]:
        """The images this worker indexes: all of them, or with `shard`, its share by content hash."""
        if not self.shard:
            return images
        mine = [img for img in images if self._owns(img.id)]
        tracker.skip(sum(len(img.paths) for img in images) - sum(len(img.paths) for img in mine))
        return mine

    def _owns(self, pid: str) -> bool:
        """Whether this worker indexes the point `pid` (its id holds the start of its content hash)."""
        return not self.shard or shard_of(pid.replace("-", ""), self.shard[1]) == self.shard[0]

    def owns(self, pid: str) -> bool:
        """Whether this worker indexes (and reads the text of) the point `pid`."""
        return self._owns(pid)

    def _release_paths(self, owners: Mapping[str, str]) -> None:
        """A path belongs to one point, the one of its bytes now (`owners`: path → content hash): points
        not found in this run leave the paths found under another hash, and go when none is left.

        (The old bytes of an edited photo exist at no path any more.) Found points are settled by
        `_sort_known`; each lookup goes through the paths index, a chunk of paths at a time.
        """
        found = {point_id(digest) for digest in set(owners.values())}
        paths = list(owners)
        for start in range(0, len(paths), RETRIEVE_CHUNK):
            chunk = paths[start : start + RETRIEVE_CHUNK]
            where = SearchFilter(paths=tuple(chunk), exclude_ids=tuple({point_id(owners[p]) for p in chunk}))
            holders = [pid for pid, _, _ in self.store.scroll(where=where) if pid not in found and self._owns(pid)]
            if not holders:
                continue
            with self._payload_lock:  # read again under the lock: another run may have changed them
                for pid, payload in self.store.retrieve(holders).items():
                    kept = [p for p in payload.get("paths", []) if p not in owners]
                    if not kept:
                        log.info("dropping %s: its paths %s now hold other pictures", pid, payload["paths"])
                        self.store.delete([pid])
                    elif kept != payload["paths"]:
                        rewrite(self.store, pid, relocated(payload, kept, []))

    def _sort_known(
        self,
        images: list[_Image],
        names: Mapping[Path, Sequence[str]],
        owners: Mapping[str, str],
        report: IndexReport,
        tracker: _Tracker,
    ) -> list[_Image]:
        """Settle images already stored (unchanged, new locations, missing fields); return the ones to encode."""
        new: list[_Image] = []
        for start in range(0, len(images), RETRIEVE_CHUNK):
            chunk = images[start : start + RETRIEVE_CHUNK]
            stored = self.store.retrieve([img.id for img in chunk])
            tags = self._tags_for(stored)
            for img in chunk:
                payload = stored.get(img.id)
                if payload is None:
                    new.append(img)
                    continue
                known_paths = set(payload.get("paths", []))
                known_names = set(payload.get("names", []))
                fresh = [
                    p for p in img.paths
                    if path_to_text(p) not in known_paths or not known_names.issuperset(_labels(p, names))
                ]
                taken = any(owners.get(p, img.digest) != img.digest for p in known_paths)  # found under another hash
                meta = None if PAYLOAD_FIELDS <= payload.keys() else self._read_meta(img)
                tagged = tags.get(img.id)
                changed = fresh or meta or taken or tagged or needs_words(payload)
                filled = self._update_point(img, fresh, names, meta, owners, tagged) if changed else False
                _sort_fresh(img, fresh, payload, owners, report)
                (report.updated if filled else report.unchanged).extend(
                    path_to_text(p) for p in img.paths if p not in fresh
                )
                tracker.advance(len(img.paths))
        return new

    def retag(self, refresh: bool = False) -> int:
        """Tag every stored image that has no tags (with `refresh`, also those another vocabulary or
        model tagged) from its stored vector; how many were tagged (0 with tagging off)."""
        if self.tagger is None:
            return 0
        return retag(self.store, self.tagger, refresh=refresh, lock=self._payload_lock)

    def _tags_for(self, stored: Mapping[str, Mapping[str, Any]]) -> dict[str, Tagged]:
        """Tags for the stored images that have none yet (stored before tagging, or with TAGS=false),
        from their stored vectors: nothing is decoded or encoded again."""
        if self.tagger is None:
            return {}
        untagged = {pid: payload for pid, payload in stored.items() if needs_tags(payload, self.tagger)}
        vectors = stored_vectors(self.store, untagged) if untagged else {}
        if not vectors:
            return {}
        ids = list(vectors)
        return dict(zip(ids, self.tagger.tag(np.stack([vectors[i] for i in ids]))))

    def _encode_new(
        self,
        images: list[_Image],
        names: Mapping[Path, Sequence[str]],
        pool: ThreadPoolExecutor,
        report: IndexReport,
        tracker: _Tracker,
    ) -> None:
        batch: list[tuple[_Image, _Ready]] = []
        for img, decoded in self._decode_ahead(images, pool):
            if isinstance(decoded, ImageError):
                report.failed.extend(Failure(path_to_text(p), str(decoded)) for p in img.paths)
                tracker.advance(len(img.paths))
                continue
            batch.append((img, decoded))
            if len(batch) >= self.encoder.batch_size:
                self._write(batch, names, report, tracker)
                batch = []
        self._write(batch, names, report, tracker)

    def _decode_ahead(
        self, images: list[_Image], pool: ThreadPoolExecutor
    ) -> Iterator[tuple[_Image, _Ready | ImageError]]:
        """Decode in the pool, at most two batches ahead of the model, in order."""
        window: deque[tuple[_Image, Future]] = deque()
        ahead = 2 * self.encoder.batch_size + self.workers
        min_side = max(self.encoder.image_size, self.visual.image_size if self.visual else 0)
        prepare = self.encoder.prepare_image  # the models' preprocessing runs in the pool too
        visual = self.visual.prepare_image if self.visual else None
        try:
            for img in images:
                decoding = submit_unless_stopping(
                    pool, _decode_first, img.paths, img.digest, self.max_pixels, min_side, prepare, visual,
                    self.thumbnails,
                )
                window.append((img, decoding))
                if len(window) >= ahead:
                    first, future = window.popleft()
                    yield first, future.result()
            while window:
                first, future = window.popleft()
                yield first, future.result()
        finally:
            for _, future in window:
                future.cancel()

    def _write(
        self,
        batch: list[tuple[_Image, _Ready]],
        names: Mapping[Path, Sequence[str]],
        report: IndexReport,
        tracker: _Tracker,
    ) -> None:
        if not batch:
            return
        vectors = self.encoder.encode_images([d.prepared for _, d in batch])
        looks: list[Any] = [None] * len(batch)
        if self.visual is not None:
            looks = list(self.visual.encode_images([d.visual for _, d in batch]))
        tagged = self.tagger.tag(vectors) if self.tagger else [None] * len(batch)
        now = time.time()
        points: list[Point] = []
        for (img, d), vector, look, tags in zip(batch, vectors, looks, tagged):
            payload = new_payload(img, d.meta, names, self.encoder.model_id, now)
            payload.update(tags.payload() if tags else {})
            refusal = _unstorable(payload)
            if refusal:  # one bad point fails alone: the rest of the batch lands
                report.failed.extend(Failure(path_to_text(p), refusal) for p in img.paths)
            else:
                points.append(Point(img.id, vector, payload, look))
        with self._payload_lock:  # another run may have stored some of these meanwhile: keep its paths and text
            stored = self.store.retrieve([p.id for p in points])
            points = [_worded(p, stored.get(p.id)) for p in points]
            self.store.upsert(points)
        stored_ids = {p.id for p in points}
        for img, _ in batch:  # one file of each new picture is added; its other files are copies of it
            if img.id in stored_ids:
                first, *others = (path_to_text(p) for p in img.paths)
                report.added.append(first)
                report.copies.extend(others)
                report.copy_of.update(dict.fromkeys(others, first))
        tracker.encoded(len(points), sum(len(img.paths) for img, _ in batch))


def _worded(point: Point, stored: dict[str, Any] | None) -> Point:
    """A new point with its words (and, if another run stored it meanwhile, that run's paths and text)."""
    payload = point.payload
    if stored is not None:
        kept = {k: v for k, v in stored.items() if k in TEXT_FIELDS}
        payload = {**kept, **payload, **_locations(*_merged(stored, payload))}
    payload, words = with_words(payload)
    return replace(point, payload=payload, words=words)


def _sort_fresh(
    img: _Image, fresh: list[Path], payload: Mapping[str, Any], owners: Mapping[str, str], report: IndexReport
) -> None:
    """Report the new paths of a stored image: a copy while another file holds the same bytes (found
    in this run or still at a stored path, inside or outside the folders of the run), else the
    first is a rename and the others copies of it. A stored path sent again under a new name (an
    upload) is a copy of the image as it was known."""
    known = set(payload.get("paths", []))
    fresh_text = [path_to_text(p) for p in fresh]
    holders = [path_to_text(p) for p in img.paths if path_to_text(p) not in fresh_text]  # found, nothing new
    holders += [  # stored elsewhere and still there, holding these bytes (not another picture's now)
        p for p in payload.get("paths", [])
        if p not in holders and p not in fresh_text
        and owners.get(p, img.digest) == img.digest and os.path.exists(text_to_path(p))
    ]
    for text in fresh_text:
        if text in known:  # only its name is new
            report.copies.append(text)
            report.copy_of[text] = (payload.get("names") or [text])[0]
        elif holders:
            report.copies.append(text)
            report.copy_of[text] = holders[0]
        else:
            report.renamed.append(text)
            holders.append(text)


def submit_unless_stopping(pool: ThreadPoolExecutor, work: Callable[..., Any], *args: Any) -> Future:
    """`pool.submit`, where a pool that takes no more work means the process is stopping (Python
    stops every thread pool as the interpreter shuts down): `Interrupted`, never a failed run."""
    try:
        return pool.submit(work, *args)
    except RuntimeError as exc:  # "cannot schedule new futures after (interpreter) shutdown"
        raise Interrupted(f"indexing stopped because the process is stopping ({exc})") from None


def _hash_and_stat(path: Path) -> tuple[str, int, float] | ImageError:
    """In a worker thread: the file's hash, size and time, if it is a regular file (opened without blocking)."""
    try:
        digest = hash_file(path)
    except ImageError as exc:
        return exc
    if digest.size == 0:
        return ImageError("empty file (0 bytes): not an image")
    return digest.sha256, digest.size, digest.mtime


@dataclass(frozen=True)
class _Ready:
    """A decoded image, already the model's input: all the model's thread has left to do is stack it."""

    meta: ImageMeta
    prepared: PreparedImage
    visual: PreparedImage | None = None  # the image-only model's input, when there is one


def _decode_first(
    paths: list[Path],
    digest: str,
    max_pixels: int,
    min_side: int,
    prepare: Callable[[Any], PreparedImage],
    prepare_visual: Callable[[Any], PreparedImage] | None = None,
    thumbnails: ThumbnailCache | None = None,
) -> _Ready | ImageError:
    """In a worker thread: decode (JPEGs at a reduced scale) and preprocess for the model; the
    full-size pixels are dropped here, so what waits for the model is ~0.6 MB an image.

    Only the bytes that were hashed are decoded: a file rewritten since then is reported as changed,
    never stored with its old hash and its new picture."""
    try:
        decoded = decode(paths[0], max_pixels, min_side, sha256=digest)
    except ImageError as exc:
        return exc
    if thumbnails is not None:
        try:
            thumbnails.add_from(digest, decoded.image)
        except Exception:  # noqa: BLE001 - a thumbnail is a nicety: never a reason to fail an image
            log.debug("no thumbnail for %s", paths[0], exc_info=True)
    try:
        look = prepare_visual(decoded.image) if prepare_visual else None  # decoded once for both models
        return _Ready(decoded.meta, prepare(decoded.image), look)
    except Exception as exc:  # noqa: BLE001 - one odd image must not stop the run
        return ImageError(f"could not be prepared for the model ({type(exc).__name__}: {exc})")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'} {'was' if count == 1 else 'were'}"


def _labels(path: Path, names: Mapping[Path, Sequence[str]]) -> list[str]:
    return list(names.get(path) or [path_to_text(path.name)])


def no_longer_holds(path: Path, size: int | None = None) -> bool:
    """Whether `path` can no longer be the stored image of `size` bytes: nothing there, a dangling
    symlink or a loop, or (following symlinks) no regular file — a folder, a FIFO, a device, a
    socket — or a regular file of another size. A path that cannot be looked at now (permission
    denied, a disk error) is not taken for gone."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return isinstance(exc, (FileNotFoundError, NotADirectoryError)) or exc.errno == errno.ELOOP
    if not stat.S_ISREG(st.st_mode):
        return True
    return size is not None and st.st_size != size


def _unstorable(payload: dict[str, Any]) -> str | None:
    """Why Qdrant could not store `payload` (strict UTF-8 JSON, finite numbers), or None if it can."""
    try:
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return "could not be stored: its details hold text that is not valid Unicode"
    except (TypeError, ValueError) as exc:
        return f"could not be stored: {exc}"
    return None


def _ancestors(paths: Iterable[str]) -> list[str]:
    folders: set[str] = set()
    for path in paths:
        folders.update(str(parent) for parent in Path(path).parents)
    return sorted(folders)


def _locations(paths: list[str], labels: list[str]) -> dict[str, Any]:
    names = list(dict.fromkeys(labels))
    return {
        "paths": paths,
        "names": names,
        "name": names[0],
        "folder": str(Path(paths[0]).parent),
        "folders": _ancestors(paths),
    }


def new_payload(
    img: _Image, meta: ImageMeta, names: Mapping[Path, Sequence[str]], model_id: str, now: float
) -> dict[str, Any]:
    """Everything stored with a new point."""
    return {
        "sha256": img.digest,
        **_locations([path_to_text(p) for p in img.paths], [label for p in img.paths for label in _labels(p, names)]),
        "bytes": img.size,
        "width": meta.width,
        "height": meta.height,
        "format": meta.format,
        "mtime": img.mtime,
        "taken_at": meta.taken_at,  # wall-clock seconds: the camera's local time read as UTC
        "taken_offset": meta.taken_offset,  # that clock's UTC offset, "+02:00", if the camera wrote one
        "date": meta.taken_at or img.mtime,
        "indexed_at": now,
        "model": model_id,
    }


def backfilled(payload: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """`payload` with the fields it lacks taken from `fresh` (a `new_payload` of its file): stored values win.

    Where the image lives comes from the stored paths and names, not just where this run found it.
    """
    stored_at = _locations(payload["paths"], payload["names"]) if payload.get("paths") and payload.get("names") else {}
    return {**fresh, **stored_at, **payload}


def _merged(stored: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Paths and names of a point written by two runs: the stored ones first, then the new ones."""
    paths = list(dict.fromkeys(stored.get("paths", []) + new["paths"]))
    return paths, [*stored.get("names", []), *new["names"]]


def relocated(payload: dict[str, Any], paths: list[str], new_labels: list[str]) -> dict[str, Any]:
    """`payload` now found at `paths`: names of dropped paths go, `new_labels` join."""
    dropped = {Path(p).name for p in payload.get("paths", []) if p not in paths} - {Path(p).name for p in paths}
    labels = [n for n in payload.get("names", []) if n not in dropped] + new_labels
    return {**payload, **_locations(paths, labels or [Path(paths[0]).name])}


class _Tracker:
    """Counts progress and reports it, with images/s and ETA over the encoding so far."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.images = 0
        self.callback = callback
        self.started = time.perf_counter()

    def skip(self, files: int) -> None:
        self.total -= files

    def advance(self, files: int) -> None:
        self.done += files
        self._report()

    def encoded(self, images: int, files: int) -> None:
        self.images += images
        self.advance(files)

    def _report(self) -> None:
        if not self.callback:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.images / elapsed
        left = self.total - self.done
        self.callback(Progress(self.done, self.total, rate, left / rate if rate > 0 else None))
