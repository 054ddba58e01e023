"""Near-duplicate groups do not chain (#25: 2): every member is close to the image its group keeps.

At similarity 0.95 a group once held 309 different photos: A like B like C…, joined by union-find,
and "Forget the others" removed 308. Here the vectors are planted in the real embedded store (Qdrant
Edge) so that the chain is exact: neighbours along an arc are ≥ the threshold apart, images two
steps apart are not. Then real files: forgetting a group's others and indexing their paths again
puts them back as they were.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from faultkit import distinct_image
from PIL import Image

from embedder.engine import Engine
from embedder.media.images import point_id
from embedder.query.duplicates import forget_others, keeper, near_duplicate_groups, others_paths
from embedder.store import Point

THRESHOLD = 0.95
STEP = math.acos(0.97)  # neighbours at cosine 0.97; two steps apart 0.88: below the threshold


def plant_arc(engine: Engine, count: int, widths: list[int]) -> list[str]:
    """`count` images on an arc of the first two axes, `widths[k]` pixels wide; their ids in arc order."""
    ids = []
    points = []
    for k in range(count):
        vector = np.zeros(engine.encoder.dim, dtype=np.float32)
        vector[0], vector[1] = math.cos(k * STEP), math.sin(k * STEP)
        pid = point_id(f"{k + 1:032x}" * 2)
        payload = {"paths": [f"/photos/arc{k:03d}.jpg"], "names": [f"arc{k:03d}.jpg"], "width": widths[k],
                   "height": 100, "bytes": 1000, "date": 1.0e9 + k}
        points.append(Point(pid, vector, payload))
        ids.append(pid)
    engine.store.upsert(points)
    return ids


def cosine(engine: Engine, a: str, b: str) -> float:
    return float(engine.store.vector(a) @ engine.store.vector(b))


def test_a_chain_a_b_c_with_a_unlike_c_is_not_one_group(engine: Engine) -> None:
    a, b, c = plant_arc(engine, 3, widths=[300, 200, 100])  # A has the most pixels: it is the one kept
    assert cosine(engine, a, b) >= THRESHOLD and cosine(engine, b, c) >= THRESHOLD
    assert cosine(engine, a, c) < THRESHOLD  # the premise: a chain, not a cluster

    groups = near_duplicate_groups(engine.store, THRESHOLD)
    assert [g.ids for g in groups] == [[a, b]]  # C is like B, but not like the A that is kept
    assert keeper(groups[0]) == 0 and groups[0].score >= THRESHOLD


def test_a_long_chain_falls_apart_into_groups_around_their_keepers(engine: Engine) -> None:
    """309 images (the issue's group), each a small step from the one before: linked as one chain."""
    count = 309
    rng = np.random.default_rng(25)
    vectors = [rng.normal(size=engine.encoder.dim).astype(np.float32)]
    for _ in range(count - 1):
        step = vectors[-1] / np.linalg.norm(vectors[-1]) + rng.normal(0, 0.02, engine.encoder.dim).astype(np.float32)
        vectors.append(step)
    vectors = [v / np.linalg.norm(v) for v in vectors]
    assert all(float(a @ b) >= THRESHOLD for a, b in zip(vectors, vectors[1:]))  # the premise: one chain
    assert float(vectors[0] @ vectors[-1]) < THRESHOLD  # whose ends are nothing alike
    engine.store.upsert([
        Point(point_id(f"{k + 1:032x}" * 2), v, {"paths": [f"/photos/{k:03d}.jpg"], "width": 1000 - k, "height": 10})
        for k, v in enumerate(vectors)
    ])

    groups = near_duplicate_groups(engine.store, THRESHOLD)
    assert len(groups) > 1 and max(len(g.ids) for g in groups) < count // 4
    for group in groups:
        kept = group.ids[keeper(group)]
        assert kept == group.ids[0]  # the keeper rule picks the image the group was gathered around
        assert all(cosine(engine, kept, other) >= THRESHOLD - 1e-6 for other in group.ids)
        assert abs(group.score - min(cosine(engine, kept, other) for other in group.ids[1:])) < 1e-5
    grouped = [pid for g in groups for pid in g.ids]
    assert len(grouped) == len(set(grouped))  # an image is in one group at most


def test_a_tight_cluster_is_still_one_group_with_the_best_kept(engine: Engine) -> None:
    base = np.zeros(engine.encoder.dim, dtype=np.float32)
    base[0] = 1.0
    rng = np.random.default_rng(3)
    points = []
    for k, width in enumerate([640, 1920, 800, 1024]):  # re-encodes and resizes of one photo
        vector = base + rng.normal(0, 0.01, base.shape).astype(np.float32)
        vector /= np.linalg.norm(vector)
        points.append(Point(point_id(f"{k + 1:032x}" * 2), vector, {"paths": [f"/p/{k}.jpg"], "width": width, "height": 10}))
    engine.store.upsert(points)
    [group] = near_duplicate_groups(engine.store, THRESHOLD)
    assert len(group.ids) == 4 and group.payloads[keeper(group)]["width"] == 1920


def test_forgotten_others_come_back_by_indexing_their_paths(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    original = folder / "big.jpg"
    distinct_image(4, (480, 360)).save(original, quality=95)
    Image.open(original).resize((240, 180)).save(folder / "small.jpg", quality=70)
    distinct_image(5, (480, 360)).save(folder / "other.jpg")
    engine.indexer.index([folder])
    payloads = {p["paths"][0]: pid for pid, p, _ in engine.store.scroll()}
    close = cosine(engine, payloads[str(original)], payloads[str(folder / "small.jpg")])
    [group] = near_duplicate_groups(engine.store, close - 1e-3)
    keep = keeper(group)
    assert group.payloads[keep]["paths"] == [str(original)]

    gone = others_paths(group, keep)
    assert gone == [str(folder / "small.jpg")]  # what the page says will leave the index
    forget_others(engine.store, group, keep)
    assert engine.store.count() == 2 and (folder / "small.jpg").is_file()  # the index only: the file stays
    report = engine.indexer.index(gone)  # the way back: index those paths
    assert report.added == gone and engine.store.count() == 3
