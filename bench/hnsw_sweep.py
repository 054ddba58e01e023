"""HNSW / quantisation settings against recall, on the raw Qdrant Edge API (no payloads, no product code).

    .venv/bin/python bench/hnsw_sweep.py --n 50000 --kinds realistic,isotropic

For each vector kind (bench/vectors.py) and each build setting: one shard with a graph on every
segment, then for each search setting 200 queries: p50 latency and recall@10 against numpy's exact
top 10 (ties within 1e-6 of the exact 10th score count as hits). Writes bench/results/hnsw_sweep.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import vectors as V  # noqa: E402


def build(folder: Path, data: np.ndarray, m: int, ef_construct: int, quant: bool) -> tuple[object, dict]:
    from qdrant_edge import (Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeVectorParams, HnswIndexConfig,
                             Memory, Point, ScalarQuantizationConfig, ScalarType, UpdateOperation)

    shutil.rmtree(folder, ignore_errors=True)
    config = EdgeConfig(
        vectors=EdgeVectorParams(size=V.DIM, distance=Distance.Cosine, memory=Memory.Cold),
        hnsw_config=HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=10_000),
        quantization_config=ScalarQuantizationConfig(type=ScalarType.Int8, quantile=0.99, memory=Memory.Pinned) if quant else None,
        optimizers=EdgeOptimizersConfig(indexing_threshold=1_000),
    )
    shard = EdgeShard.create(str(folder), config)
    t = time.perf_counter()
    for start in range(0, len(data), 1024):
        chunk = np.asarray(data[start:start + 1024]).tolist()
        shard.update(UpdateOperation.upsert_points([Point(start + i, v, {}) for i, v in enumerate(chunk)]))
    upsert_s = time.perf_counter() - t
    t = time.perf_counter()
    shard.optimize()
    info = shard.info()
    return shard, {"upsert_s": upsert_s, "optimize_s": time.perf_counter() - t, "segments": info.segments_count,
                   "indexed": info.indexed_vectors_count}


def truth(data: np.ndarray, qs: np.ndarray, k: int = 10) -> tuple[list, list]:
    ids, scores = [], []
    for q in qs:
        s = np.empty(len(data), dtype=np.float32)
        for start in range(0, len(data), 100_000):
            s[start:start + 100_000] = np.asarray(data[start:start + 100_000]) @ q
        top = np.argpartition(-s, k)[:k]
        top = top[np.argsort(-s[top])]
        ids.append([int(i) for i in top])
        scores.append([float(s[i]) for i in top])
    return ids, scores


def search(shard, qs: np.ndarray, ef: int, quant: dict | None) -> tuple[list, list, list]:
    from qdrant_edge import QuantizationSearchParams, Query, QueryRequest, SearchParams

    params = SearchParams(hnsw_ef=ef, quantization=QuantizationSearchParams(**quant) if quant is not None else None)
    ids, scores, times = [], [], []
    for q in qs:
        request = QueryRequest(limit=10, query=Query.Nearest(q.tolist()), params=params, with_payload=False)
        t = time.perf_counter()
        points = shard.query(request)
        times.append(time.perf_counter() - t)
        ids.append([int(p.id) for p in points])
        scores.append([float(p.score) for p in points])
    return ids, scores, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--kinds", default="realistic,isotropic")
    parser.add_argument("--builds", default="16:100:q", help="m:ef_construct[:q], comma-separated")
    parser.add_argument("--efs", default="32,64,128,256")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default="hnsw_sweep")
    args = parser.parse_args()
    result: dict = {"n": args.n, "load_before": os.getloadavg(), "runs": []}
    for kind in args.kinds.split(","):
        data = V.vectors(kind, args.n)
        qs = V.queries(kind, args.n, args.queries)
        ex_ids, ex_scores = truth(data, qs)
        for spec in args.builds.split(","):
            m, efc, *q = spec.split(":")
            quant = bool(q)
            folder = common.CACHE / "runs" / f"sweep-{kind}-{args.n}-{spec.replace(':', '_')}"
            shard, built = build(folder, data, int(m), int(efc), quant)
            print(f"{kind} n={args.n} m={m} ef_construct={efc} quant={quant}: {built}", flush=True)
            modes = [("no-quant", {"ignore": True})] + ([("int8+rescore x1", {"rescore": True, "oversampling": 1.0}),
                                                        ("int8+rescore x2", {"rescore": True, "oversampling": 2.0}),
                                                        ("int8 no rescore", {"rescore": False})] if quant else [])
            for ef in [int(e) for e in args.efs.split(",")]:
                for name, params in modes:
                    ids, scores, times = search(shard, qs, ef, params)
                    true = [[float(np.asarray(data[i]) @ q) for i in row] for row, q in zip(ids, qs)]
                    r = V.recall_at_k(ex_ids, ex_scores, ids, true)
                    p50 = float(np.percentile(np.array(times) * 1000, 50))
                    print(f"  ef={ef:4d} {name:16s} recall@10 {r:.3f}  p50 {p50:.2f} ms", flush=True)
                    result["runs"].append({"kind": kind, "m": int(m), "ef_construct": int(efc), "quant": quant, **built,
                                           "ef": ef, "mode": name, "recall_at_10": r, "p50_ms": p50,
                                           "load": os.getloadavg()})
            shard.close()
            shutil.rmtree(folder, ignore_errors=True)
    common.write_result(args.out, result)


if __name__ == "__main__":
    main()
