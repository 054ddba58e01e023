"""What reopening an Edge shard costs: payload indexes in RAM, memory-mapped (`Memory.Cached`), or none.

    .venv/bin/python bench/reopen_payload_indexes.py 100000 ram cached none cached+graph

`cached+graph` also memory-maps the HNSW graph (`HnswIndexConfig(memory=Memory.Cached)`).

n random 512-d vectors with the indexer's payload (bench/search_latency.py), the store's policy
(embedder/store/policy.py: graphs above 20k points a segment), the product's payload indexes
(embedder/store/schema.py) created as each variant says; then `optimize()` and two timed loads.
Writes bench/results/reopen_payload_indexes.json.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import search_latency as SL  # noqa: E402


def main() -> None:
    from qdrant_edge import (EdgeShard, FloatIndexParams, KeywordIndexParams, Memory, PayloadSchemaType, Point,
                             UpdateOperation)

    from embedder.store.edge import edge_config
    from embedder.store.policy import POLICY
    from embedder.store.schema import KEYWORD_FIELDS, NUMBER_FIELDS

    n = int(sys.argv[1])
    v = np.random.default_rng(0).normal(size=(n, 512)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    result: dict = {"n": n, "load_before": os.getloadavg(), "runs": []}
    for variant in sys.argv[2:]:
        path = common.CACHE / "runs" / f"pidx-{variant}"
        shutil.rmtree(path, ignore_errors=True)
        policy = replace(POLICY, graph_on_disk=variant.endswith("+graph"))
        config = edge_config(512, policy=policy)
        shard = EdgeShard.create(str(path), config)
        if variant != "none":
            cached = variant.startswith("cached")
            for f in KEYWORD_FIELDS:
                shard.update(UpdateOperation.create_field_index(
                    f, KeywordIndexParams(memory=Memory.Cached) if cached else PayloadSchemaType.Keyword))
            for f in NUMBER_FIELDS:
                shard.update(UpdateOperation.create_field_index(
                    f, FloatIndexParams(memory=Memory.Cached) if cached else PayloadSchemaType.Float))
        rng = np.random.default_rng(1)
        for i in range(0, n, 1000):
            points = [Point(j, v[j].tolist(), SL.payload(j, rng)) for j in range(i, min(n, i + 1000))]
            shard.update(UpdateOperation.upsert_points(points))
        shard.flush()
        t = time.perf_counter()
        shard.optimize()
        optimize_s = time.perf_counter() - t
        shard.close()
        loads = []
        for _ in range(2):
            t = time.perf_counter()
            shard = EdgeShard.load(str(path))
            loads.append(time.perf_counter() - t)
            segments = shard.info().segments_count
            shard.close()
        result["runs"].append({"variant": variant, "optimize_s": optimize_s, "load_s": loads, "segments": segments,
                               "rss_mb": common.rss_mb(), "load": os.getloadavg()})
        print(result["runs"][-1], flush=True)
        shutil.rmtree(path, ignore_errors=True)
    common.write_result(os.environ.get("OUT", "reopen_payload_indexes"), result)


if __name__ == "__main__":
    main()
