"""Synthetic 512-d image embeddings for the store benches: a worst case and a CLIP-like model.

* ``isotropic`` (the worst case, what bench/search_latency.py always used): 300 cluster centres drawn
  from an isotropic Gaussian plus isotropic noise (scale 0.9 per coordinate), normalised. Every one of
  the 512 directions carries the same variance, so the data has no low-dimensional structure and the
  10th and 11th neighbours are nearly tied: the hardest case for a graph index.
* ``realistic`` (a model of CLIP ViT-B/32 image embeddings, stated as assumptions, not fitted to
  real embeddings in this repository — none can be computed offline):

  - **a cone** (Liang et al. 2022, "Mind the Gap", NeurIPS: CLIP image embeddings occupy a narrow
    cone, a large common mean direction; Ethayarajh 2019 calls this anisotropy): every vector is
    ``CONE * u + residual`` with one fixed unit direction ``u``; CONE is set so that the mean pairwise
    cosine of two unrelated images is ≈ 0.5 (the brief's figure for ViT-B/32; the bench prints the
    measured value);
  - **a power-law spectrum** of the residual: eigenvalues λ_k ∝ k^-1 (k = 1..512) in a fixed random
    orthonormal basis, so the top 32 directions carry ~60% of the residual variance ("a few dozen
    directions carry most of the variance");
  - **clusters** as photo libraries have them: events / bursts of near-duplicates. Points come in
    clusters of 14 × Zipf(2) images (14 to 2,100; ~50 on average), shuffled;
    a member is its cluster centre plus a residual scaled by SPREAD (cosine to its centre ≈ 0.85-0.9);
  - **text queries sit outside the image cone** (the modality gap, same paper): a query is a fresh
    point of a random cluster (not stored) plus a fixed gap vector, so its best image cosine is ≈ 0.3
    as for CLIP text→image, not ≈ 0.9 as for an image query.

Everything is seeded: the same (kind, n, seed) gives the same vectors, cached as .npy under
bench/cache/vectors/ (git-ignored) because 1M × 512 float32 is 2 GB and takes a while to draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 512
SEED = 11
CLUSTERS = 300  # isotropic
CONE = 1.1  # mean pairwise cosine ≈ CONE² / (CONE² + 1 + SPREAD²) ≈ 0.5 with the residual's variance 1
ALPHA = 1.0  # λ_k ∝ k^-ALPHA
SPREAD = 0.5  # within-cluster residual, relative to the clusters' own spread
GAP = 4.0  # |gap vector| relative to a unit-variance residual: text→best image cosine ≈ 0.3
CACHE = Path(__file__).resolve().parent / "cache" / "vectors"
CHUNK = 50_000


def isotropic(n: int, seed: int = SEED) -> np.ndarray:
    """The bench's original vectors (unchanged: same seed, same draws)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    sizes = rng.zipf(1.6, CLUSTERS).astype(float)
    which = rng.choice(CLUSTERS, size=n, p=sizes / sizes.sum())
    v = centres[which] + rng.normal(scale=0.9, size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Realistic:
    """The CLIP-like model: a cone, a power-law spectrum, clusters, and out-of-cone text queries."""

    def __init__(self, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed + 1000)
        basis, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        lam = np.arange(1, DIM + 1, dtype=np.float64) ** -ALPHA
        self.scale = (basis * np.sqrt(lam / lam.sum())).T.astype(np.float32)  # z @ scale: residual, total variance 1
        self.u = _unit(rng.normal(size=DIM)).astype(np.float32)
        gap = rng.normal(size=DIM)
        gap -= gap @ self.u * self.u  # orthogonal to the cone's axis
        self.gap = (GAP * _unit(gap)).astype(np.float32)
        self.seed = seed

    def residual(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((n, DIM), dtype=np.float32) @ self.scale

    def clusters(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Cluster centres and each point's cluster, for n points."""
        rng = np.random.default_rng(self.seed)
        sizes: list[int] = []
        while sum(sizes) < n:
            sizes.append(int(min(rng.zipf(2.0), 150)) * 14)
        which = np.repeat(np.arange(len(sizes)), sizes)[:n]
        rng.shuffle(which)  # photos of an event are not upserted together: neither are ours
        centres = CONE * self.u + self.residual(rng, len(sizes))
        return centres.astype(np.float32), which

    def points(self, n: int) -> np.ndarray:
        centres, which = self.clusters(n)
        rng = np.random.default_rng(self.seed + 1)
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            v = centres[which[start:stop]] + SPREAD * self.residual(rng, stop - start)
            out[start:stop] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    def queries(self, n_points: int, count: int, seed: int) -> np.ndarray:
        """Text-like queries: a new member of a random cluster (weighted by size), plus the gap."""
        centres, which = self.clusters(n_points)
        rng = np.random.default_rng(seed)
        picked = which[rng.choice(n_points, count, replace=False)]
        v = centres[picked] + SPREAD * self.residual(rng, count) + self.gap
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def vectors(kind: str, n: int, seed: int = SEED) -> np.ndarray:
    """n stored vectors of `kind` (cached under bench/cache/vectors/, memory-mapped when read back)."""
    path = CACHE / f"{kind}-{n}-{seed}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    v = isotropic(n, seed) if kind == "isotropic" else Realistic(seed).points(n)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, v)
    tmp.replace(path)
    return v


def queries(kind: str, n: int, count: int, seed: int = SEED) -> np.ndarray:
    """Queries for a store of n `kind` vectors.

    isotropic: as the bench always did, near stored images (cosine ~0.8 to one of them);
    realistic: text-like, outside the image cone (see the module docstring)."""
    if kind == "realistic":
        return Realistic(seed).queries(n, count, seed + 2)
    rng = np.random.default_rng(seed + 2)
    qs = np.asarray(vectors(kind, n, seed)[np.sort(rng.choice(n, count, replace=False))])
    qs = qs + rng.normal(scale=0.03, size=(count, DIM)).astype(np.float32)
    return qs / np.linalg.norm(qs, axis=1, keepdims=True)


def recall_at_k(exact_ids: list[list], exact_scores: list[list[float]], got_ids: list[list],
                true_scores: list[list[float]], k: int = 10, tie: float = 1e-6) -> float:
    """Mean recall@k where ties do not count as misses: a returned point is a hit if it is among the
    exact top k, or if its *true* score (computed from the stored vector, not the engine's possibly
    quantised one) is within `tie` of the exact k-th score: an equally good neighbour."""
    total = 0.0
    for ex_i, ex_s, ids, scores in zip(exact_ids, exact_scores, got_ids, true_scores):
        if not ex_i:
            total += 1.0
            continue
        want, kth = set(ex_i[:k]), ex_s[min(k, len(ex_s)) - 1]
        hits = sum(1 for i, s in zip(ids[:k], scores[:k]) if i in want or s >= kth - tie)
        total += min(hits, len(ex_i[:k])) / len(ex_i[:k])
    return total / max(1, len(exact_ids))


def describe(v: np.ndarray, q: np.ndarray | None = None, sample: int = 2000, seed: int = 0) -> dict:
    """Facts to check the model against: mean pairwise cosine, variance in the top directions,
    nearest-neighbour cosine, and for queries their best cosine."""
    rng = np.random.default_rng(seed)
    s = np.asarray(v[np.sort(rng.choice(len(v), min(sample, len(v)), replace=False))], dtype=np.float32)
    cos = s @ s.T
    iu = np.triu_indices(len(s), 1)
    centred = s - s.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(centred.T @ centred))[::-1]
    out = {
        "mean_pairwise_cosine": float(cos[iu].mean()),
        "variance_top8": float(eig[:8].sum() / eig.sum()),
        "variance_top32": float(eig[:32].sum() / eig.sum()),
        "variance_top128": float(eig[:128].sum() / eig.sum()),
    }
    sub = np.asarray(v[: min(len(v), 100_000)], dtype=np.float32)
    nn = s[:200] @ sub.T
    nn.sort(axis=1)
    out["nn_cosine_median_in_first_100k"] = float(np.median(nn[:, -2]))  # -1 is the point itself (when inside)
    out["gap_10th_11th_median"] = float(np.median(nn[:, -11] - nn[:, -12]))
    if q is not None:
        qq = np.asarray(q[:200], dtype=np.float32) @ sub.T
        qq.sort(axis=1)
        out["query_best_cosine_median"] = float(np.median(qq[:, -1]))
        out["query_gap_10th_11th_median"] = float(np.median(qq[:, -10] - qq[:, -11]))
    return out


if __name__ == "__main__":
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for kind in ("isotropic", "realistic"):
        print(kind, json.dumps(describe(vectors(kind, n), queries(kind, n, 200)), indent=1))
