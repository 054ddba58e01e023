"""Near-duplicates: groups of images whose vectors are almost the same (re-encoded, resized, cropped).

Exact duplicates are already one point (same content hash). Near-duplicates are found by cosine
similarity between stored vectors, in blocks, so memory stays at one block of scores at a time.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


@dataclass(frozen=True)
class Move:
    """One file moved (`to` set) or left where it was (`reason` says why)."""

    source: str
    to: str | None = None
    reason: str = ""


def move_others(store: ImageStore, group: DuplicateGroup, keep: int, folder: Path) -> list[Move]:
    """Move the files of every image of `group` but `keep` into `folder` (made if needed; a name
    already taken there gets a number), never overwriting or deleting. Images whose files all
    moved leave the index; index `folder` to bring them back."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    moves: list[Move] = []
    for i, (pid, payload) in enumerate(zip(group.ids, group.payloads)):
        if i == keep:
            continue
        moved = [_move(Path(p), folder) for p in payload.get("paths", [])]
        moves += moved
        if moved and all(m.to for m in moved):
            store.delete([pid])
    log.info("moved %d files of near-duplicates to %s", sum(1 for m in moves if m.to), folder)
    return moves


def _move(source: Path, folder: Path) -> Move:
    if not source.is_file():
        return Move(str(source), reason="the file is no longer there")
    target = folder / source.name
    number = 1
    while target.exists():
        target = folder / f"{source.stem} ({number}){source.suffix}"
        number += 1
    try:
        shutil.move(str(source), str(target))
    except OSError as exc:
        return Move(str(source), reason=f"could not be moved ({exc.strerror or exc})")
    return Move(str(source), str(target))
