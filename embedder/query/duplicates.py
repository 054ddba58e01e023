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
    """Images that are near-duplicates of the first one, the one kept by default (see `keeper`):
    every other member is at least the threshold similar to it, most similar first."""

    ids: list[str]
    payloads: list[dict[str, Any]]
    score: float  # the lowest similarity of a member to the first one


def near_duplicate_groups(store: ImageStore, threshold: float) -> list[DuplicateGroup]:
    """Groups of ≥ 2 images, each member at cosine ≥ `threshold` to its group's kept image, largest
    groups first.

    Similarity does not chain: A like B and B like C does not put A with C unless C is like A too.
    Images linked at all are first gathered (any pair ≥ `threshold`), then taken apart around
    keepers: the best of those left (most pixels, largest, oldest) keeps every image left that is
    close to it, and so on, so forgetting a group's others never forgets a picture unlike the one kept.

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
    groups = [
        DuplicateGroup([ids[i] for i in members], [payloads[i] for i in members], score)
        for linked in _linked(vectors, threshold)
        for members, score in _around_keepers(linked, vectors, payloads, threshold)
    ]
    groups.sort(key=lambda g: (-len(g.ids), -g.score))
    log.info("%d near-duplicate groups among %d images at cosine ≥ %.3f", len(groups), len(ids), threshold)
    return groups


def _linked(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """The sets of ≥ 2 rows joined by chains of pairs at cosine ≥ `threshold` (blocks of rows at a time)."""
    count = len(vectors)
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    block = max(1, BLOCK_SCORES // count)
    for start in range(0, count, block):
        rows_, cols = np.nonzero(vectors[start : start + block] @ vectors.T >= threshold)
        for r, c in zip(rows_.tolist(), cols.tolist()):
            a, b = find(start + r), find(c)
            if a != b:
                parent[b] = a
    members: dict[int, list[int]] = {}
    for i in range(count):
        members.setdefault(find(i), []).append(i)
    return [m for m in members.values() if len(m) > 1]


def _around_keepers(
    linked: list[int], vectors: np.ndarray, payloads: list[dict[str, Any]], threshold: float
) -> list[tuple[list[int], float]]:
    """`linked` taken apart into groups around keepers: the best image left keeps those left at
    cosine ≥ `threshold` to it; each group (keeper first, then most similar first) with its lowest
    similarity to the keeper. Images close to no keeper are in no group."""
    left = sorted(linked, key=lambda i: _keep_rank(payloads[i]))
    groups: list[tuple[list[int], float]] = []
    while len(left) > 1:
        centre, rest = left[0], np.array(left[1:])
        scores = vectors[rest] @ vectors[centre]
        close = scores >= threshold
        if close.any():
            order = np.argsort(-scores[close], kind="stable")
            groups.append(([centre, *rest[close][order].tolist()], float(scores[close].min())))
        left = rest[~close].tolist()
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
    """Which of a group to keep by default: the most pixels, then the largest file, then the oldest
    (the image the group was gathered around, its first)."""
    return min(range(len(group.ids)), key=lambda i: _keep_rank(group.payloads[i]))


def _keep_rank(payload: dict[str, Any]) -> tuple[float, float, float]:
    """Sorts the image to keep first: the most pixels, then the largest file, then the oldest."""
    pixels = float(payload.get("width") or 0) * float(payload.get("height") or 0)
    return (-pixels, -float(payload.get("bytes") or 0), float(payload.get("date") or float("inf")))


def others_paths(group: DuplicateGroup, keep: int) -> list[str]:
    """The paths of every image of `group` but `keep`: what "forget the others" drops from the index
    (their files stay), and what `index` of these paths (an index job) adds back, as it was."""
    return [p for i, payload in enumerate(group.payloads) if i != keep for p in payload.get("paths", [])]


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


def others_sent_names(group: DuplicateGroup, keep: int) -> dict[str, str]:
    """The names that uploads among the paths of every image of `group` but `keep` were sent as."""
    names: dict[str, str] = {}
    for i, payload in enumerate(group.payloads):
        if i != keep:
            names.update(sent_names(payload))
    return names


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
    names = others_sent_names(group, keep)
    moves = [move_file(text_to_path(p), folder, names.get(p)) for p in others_paths(group, keep)]
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
