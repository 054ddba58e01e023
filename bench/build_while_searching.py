"""Are searches answered while Qdrant Edge builds an HNSW graph? (raw Edge API, one process)

    .venv/bin/python bench/build_while_searching.py --n 30000

A shard of n CLIP-like vectors (bench/vectors.py) with a graph on every segment; `optimize()` runs in
a thread while the main thread sends queries in a loop and a third thread counts (pure Python, to
see whether the GIL is free). Reports how many queries were answered during the build, the longest
gap between two answers, and the counter's rate against its rate without a build.
Writes bench/results/build_while_searching.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import vectors as V  # noqa: E402


def main() -> None:
    from qdrant_edge import (Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeVectorParams, HnswIndexConfig,
                             Point, Query, QueryRequest, SearchParams, UpdateOperation)

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30_000)
    args = parser.parse_args()
    data = V.vectors("realistic", args.n)
    qs = V.queries("realistic", args.n, 50)
    folder = common.CACHE / "runs" / f"gil-{args.n}"
    shutil.rmtree(folder, ignore_errors=True)
    shard = EdgeShard.create(str(folder), EdgeConfig(
        vectors=EdgeVectorParams(size=V.DIM, distance=Distance.Cosine),
        hnsw_config=HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
        optimizers=EdgeOptimizersConfig(indexing_threshold=1_000)))
    for start in range(0, args.n, 1024):
        chunk = np.asarray(data[start:start + 1024]).tolist()
        shard.update(UpdateOperation.upsert_points([Point(start + i, v, {}) for i, v in enumerate(chunk)]))

    counter = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counter[0] += 1

    def rate(seconds: float) -> float:
        c0, t0 = counter[0], time.perf_counter()
        time.sleep(seconds)
        return (counter[0] - c0) / (time.perf_counter() - t0)

    threading.Thread(target=count, daemon=True).start()
    idle_rate = rate(1.0)
    build: dict = {}

    def optimize() -> None:
        t = time.perf_counter()
        build["c0"] = counter[0]
        shard.optimize()
        build["s"] = time.perf_counter() - t
        build["counted"] = counter[0] - build["c0"]

    request = lambda q: QueryRequest(limit=10, query=Query.Nearest(q.tolist()), params=SearchParams(hnsw_ef=256))  # noqa: E731
    builder = threading.Thread(target=optimize)
    answered: list[float] = []
    started = time.perf_counter()
    builder.start()
    i = 0
    while builder.is_alive():
        shard.query(request(qs[i % len(qs)]))
        answered.append(time.perf_counter())
        i += 1
    builder.join()
    stop.set()
    during = [t for t in answered if t <= started + build["s"]]
    gaps = np.diff([started, *answered]) if answered else np.array([build["s"]])
    result = {
        "n": args.n,
        "optimize_s": build["s"],
        "queries_answered_during_build": len(during),
        "longest_gap_between_answers_s": float(gaps.max()),
        "python_counter_rate_idle_per_s": idle_rate,
        "python_counter_rate_during_build_per_s": build["counted"] / build["s"],
        "indexed_after": shard.info().indexed_vectors_count,
        "load": os.getloadavg(),
    }
    print(result, flush=True)
    shard.close()
    shutil.rmtree(folder, ignore_errors=True)
    common.write_result("build_while_searching", result)


if __name__ == "__main__":
    main()
