"""Near-duplicates: groups of images whose vectors are almost the same (re-encoded, resized, cropped).

Exact duplicates are already one point (same content hash). Near-duplicates are found by cosine
similarity between stored vectors, in blocks, so memory stays at one block of scores at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedder.errors import MoveError
from embedder.media.uploads import display_name
from embedder.paths import path_to_text, text_to_path
from embedder.store import VISUAL, ImageStore

log = logging.getLogger(__name__)

# Similarities are computed a block of rows at a time: at most this many scores in memory at once.
BLOCK_SCORES = 16_000_000


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are near-duplicates of each other, the most similar pair's score first."""

    ids: list[str]
    payloads: list[dict[str, Any]]
    score: float  # the lowest similarity that links the group


def near_duplicate_groups(store: ImageStore, threshold: float) -> list[DuplicateGroup]:
    """Every group of ≥ 2 images linked by cosine ≥ `threshold`, largest groups first.

    Near-duplicates are a question of looks: the image-only model's vectors answer it when the store
    holds them for every image (EMBEDDER_VISUAL_MODEL), else the CLIP vectors."""
    ids: list[str] = []
    payloads: list[dict[str, Any]] = []
    rows: list[np.ndarray] = []
    using = duplicate_space(store)
    for pid, payload, vector in store.scroll(with_vectors=True, using=using):
        ids.append(pid)
        payloads.append(payload)
        rows.append(vector)
    if len(ids) < 2:
        return []
    vectors = np.stack(rows).astype(np.float32)
    parent = list(range(len(ids)))
    weakest: dict[int, float] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    block = max(1, BLOCK_SCORES // len(ids))
    for start in range(0, len(ids), block):
        scores = vectors[start : start + block] @ vectors.T
        rows_, cols = np.nonzero(scores >= threshold)
        for r, c in zip(rows_, cols):
            i, j = start + int(r), int(c)
            if i >= j:
                continue
            a, b = find(i), find(j)
            link = float(scores[r, c])
            if a != b:
                parent[b] = a
                weakest[a] = min(link, weakest.get(a, 1.0), weakest.get(b, 1.0))
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(find(i), []).append(i)
    groups = [
        DuplicateGroup([ids[i] for i in m], [payloads[i] for i in m], weakest.get(root, 1.0))
        for root, m in members.items()
        if len(m) > 1
    ]
    groups.sort(key=lambda g: (-len(g.ids), -g.score))
    log.info("%d near-duplicate groups among %d images at cosine ≥ %.3f", len(groups), len(ids), threshold)
    return groups


def duplicate_space(store: ImageStore) -> str | None:
    """VISUAL when the store's visual model is in use and every image has its vector; else None (CLIP)."""
    if store.visual_model is None:
        return None
    if next(iter(store.without_visual()), None) is not None:
        log.warning("some images have no visual vector yet (see `embedder backfill-visual`): comparing CLIP vectors")
        return None
    return VISUAL


def keeper(group: DuplicateGroup) -> int:
    """Which of a group to keep by default: the most pixels, then the largest file, then the oldest."""

    def rank(i: int) -> tuple[float, float, float]:
        p = group.payloads[i]
        pixels = float(p.get("width") or 0) * float(p.get("height") or 0)
        return (-pixels, -float(p.get("bytes") or 0), float(p.get("date") or float("inf")))

    return min(range(len(group.ids)), key=rank)


def copies_bytes(groups: Sequence[DuplicateGroup]) -> int:
    """How much space the copies take: every file of each group but its default keeper's."""
    return sum(
        int(p.get("bytes") or 0) * len(p.get("paths") or [""])
        for g in groups
        for i, p in enumerate(g.payloads)
        if i != keeper(g)
    )


def forget_others(store: ImageStore, group: DuplicateGroup, keep: int) -> list[str]:
    """Drop every image of `group` but `keep` from the index (no file is touched); their ids."""
    others = [pid for i, pid in enumerate(group.ids) if i != keep]
    store.delete(others)
    log.info("forgot %d near-duplicates of %s", len(others), group.ids[keep])
    return others


def sent_names(payload: dict[str, Any]) -> dict[str, str]:
    """For each upload among an image's paths, the name it was sent as (uploads are kept as
    `<sha256><ext>`, the name people know them by is among the payload's `names`)."""
    digest = payload.get("sha256")
    paths = payload.get("paths") or []
    uploads = [p for p in paths if digest and Path(p).stem == digest]
    if not uploads:
        return {}
    own = {Path(p).name for p in paths if p not in uploads}
    sent = next((n for n in payload.get("names") or [] if n not in own), None)
    return {p: display_name(sent) if sent else Path(p).name for p in uploads}


def others_paths(group: DuplicateGroup, keep: int) -> tuple[list[str], dict[str, str]]:
    """Every path of the images of `group` but `keep`, and the names uploads among them were sent as."""
    paths: list[str] = []
    names: dict[str, str] = {}
    for i, payload in enumerate(group.payloads):
        if i != keep:
            paths += payload.get("paths") or []
            names.update(sent_names(payload))
    return paths, names


@dataclass(frozen=True)
class Move:
    """One file moved (`to` set) or left where it was (`reason` says why)."""

    source: str
    to: str | None = None
    reason: str = ""


def move_others(group: DuplicateGroup, keep: int, folder: Path) -> list[Move]:
    """Move the files of every image of `group` but `keep` into `folder` (made if needed), never
    overwriting or deleting: a name already taken there gets a number, an upload goes by the name
    it was sent as. The images stay in the index under their old paths until those paths are
    indexed at their new place (index the moved files: the index follows them, nothing is encoded
    again), so nothing leaves the index by being moved."""
    folder = _usable_folder(Path(folder).expanduser())
    paths, names = others_paths(group, keep)
    moves = [move_file(text_to_path(p), folder, names.get(p)) for p in paths]
    log.info("moved %d files of near-duplicates to %s", sum(1 for m in moves if m.to), folder)
    return moves


def _usable_folder(folder: Path) -> Path:
    """`folder`, made if needed; a MoveError when files cannot go there."""
    if not folder.is_absolute():
        raise MoveError(f"Type the whole path of the folder to move them to (“{path_to_text(folder)}” is relative).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MoveError(f"{path_to_text(folder)} is a file, not a folder: type a folder to move them to.") from None
    except OSError as exc:
        raise MoveError(f"Cannot make the folder {path_to_text(folder)}: {exc.strerror or exc}.") from None
    if not folder.is_dir():
        raise MoveError(f"{path_to_text(folder)} is not a folder: type a folder to move them to.")
    return folder


def move_back(moves: Sequence[Move]) -> list[Move]:
    """Undo `moves`: each moved file goes back to where it was, unless something else is there now
    (then it stays, with the reason); never overwriting. One `Move` per file moved back or left."""
    back: list[Move] = []
    for move in moves:
        if move.to is None:
            continue
        source, target = text_to_path(move.to), text_to_path(move.source)
        if not source.is_file():
            back.append(Move(move.to, reason="the moved file is no longer there"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            back.append(_place(source, target))
    return back


def move_file(source: Path, folder: Path, name: str | None = None) -> Move:
    """Move `source` into `folder` under `name` (else its own), numbered if that name is taken."""
    if not source.is_file():
        return Move(path_to_text(source), reason="the file is no longer there")
    wanted = Path(name or source.name)
    for number in range(10_000):
        target = folder / (wanted.name if number == 0 else f"{wanted.stem} ({number}){wanted.suffix}")
        move = _place(source, target)
        if move.to is not None or move.reason != _TAKEN:
            return move
    return Move(path_to_text(source), reason=f"every name like {wanted.name} is taken in {path_to_text(folder)}")


_TAKEN = "a file of that name is already there"


def _place(source: Path, target: Path) -> Move:
    """Move one file to `target`, which must not exist: a hard link then unlink (atomic, refuses an
    existing name), else, across file systems, an exclusive copy and then the unlink."""
    try:
        os.link(source, target)
    except FileExistsError:
        return Move(path_to_text(source), reason=_TAKEN)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            return Move(path_to_text(source), reason=f"could not be moved ({exc.strerror or exc})")
        try:
            _copy_exclusive(source, target)
        except FileExistsError:
            return Move(path_to_text(source), reason=_TAKEN)
        except OSError as copy_exc:
            return Move(path_to_text(source), reason=f"could not be moved ({copy_exc.strerror or copy_exc})")
    try:
        source.unlink()
    except OSError as exc:  # both names hold the file: nothing is lost, say so
        return Move(path_to_text(source), path_to_text(target), reason=f"copied, but the original stays ({exc.strerror or exc})")
    return Move(path_to_text(source), path_to_text(target))


def _copy_exclusive(source: Path, target: Path) -> None:
    """Copy `source` to a new file `target` (refused if it exists), with its times and mode."""
    with open(source, "rb") as src, open(target, "xb") as dst:
        try:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        except BaseException:
            dst.close()
            target.unlink(missing_ok=True)
            raise
    shutil.copystat(source, target)
