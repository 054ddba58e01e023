"""Back-filling the VISUAL vector (`embedder backfill-visual`): points stored before EMBEDDER_VISUAL_MODEL
was set get its vector, their files decoded again and only the image-only model run; their CLIP
vector and payload stay exactly as they are.

A point whose files are gone or changed keeps no visual vector (text queries still find it; "Similar"
and image queries do not) and is reported; running the command again tries it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from embedder.models.base import Encoder, PreparedImage, default_workers
from embedder.errors import ImageError
from embedder.media.images import decode
from embedder.paths import text_to_path
from embedder.store import ImageStore

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    filled: int = 0  # points that got their visual vector
    failed: list[tuple[str, str]] = field(default_factory=list)  # (first path or id, why) of points left without
    seconds: float = 0.0

    def summary(self) -> str:
        failed = f", {len(self.failed):,} without (files gone or changed)" if self.failed else ""
        return f"{self.filled:,} images got a visual vector{failed} in {self.seconds:.1f} s"


def backfill_visual(
    store: ImageStore,
    visual: Encoder,
    max_pixels: int,
    workers: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Give every point of `store` that lacks one its VISUAL vector; decoding runs a batch ahead of the model."""
    started = time.perf_counter()
    report = BackfillReport()
    todo = list(store.without_visual())
    batches = [todo[i : i + visual.batch_size] for i in range(0, len(todo), visual.batch_size)]
    done = 0
    with ThreadPoolExecutor(workers or default_workers(visual.device), thread_name_prefix="backfill") as pool:

        def submit(batch: list[tuple[str, dict[str, Any]]]) -> list[Future]:
            return [pool.submit(_prepare, payload, max_pixels, visual) for _, payload in batch]

        ahead = submit(batches[0]) if batches else []
        for n, batch in enumerate(batches):
            current, ahead = ahead, submit(batches[n + 1]) if n + 1 < len(batches) else []
            ready: dict[str, PreparedImage] = {}
            for (pid, payload), future in zip(batch, current):
                result = future.result()
                if isinstance(result, ImageError):
                    report.failed.append(((payload.get("paths") or [pid])[0], str(result)))
                else:
                    ready[pid] = result
            if ready:
                store.set_visual(dict(zip(ready, visual.encode_images(list(ready.values())))))
                report.filled += len(ready)
            done += len(batch)
            if on_progress:
                on_progress(done, len(todo))
    report.seconds = time.perf_counter() - started
    log.info("backfill-visual: %s", report.summary())
    return report


def _prepare(payload: dict[str, Any], max_pixels: int, visual: Encoder) -> PreparedImage | ImageError:
    """In a worker thread: the first of the point's files that still holds its bytes, decoded and
    prepared for the visual model."""
    failure = ImageError("no path is stored for this image")
    for text in payload.get("paths") or []:
        try:
            decoded = decode(text_to_path(text), max_pixels, visual.image_size, sha256=payload.get("sha256"))
        except ImageError as exc:
            failure = exc
            continue
        try:
            return visual.prepare_image(decoded.image)
        except Exception as exc:  # noqa: BLE001 - one odd image must not stop the run
            return ImageError(f"could not be prepared for the model ({type(exc).__name__}: {exc})")
    return failure
