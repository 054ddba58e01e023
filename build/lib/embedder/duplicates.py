"""Near-duplicates: groups of images whose vectors are almost the same (re-encoded, resized, cropped).

Exact duplicates are already one point (same content hash). Near-duplicates are found by cosine
similarity between stored vectors, in blocks, so memory stays at one block of scores at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedder.store import ImageStore

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
    """Every group of ≥ 2 images linked by cosine ≥ `threshold`, largest groups first."""
    ids: list[str] = []
    payloads: list[dict[str, Any]] = []
    rows: list[np.ndarray] = []
    for pid, payload, vector in store.scroll(with_vectors=True):
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
