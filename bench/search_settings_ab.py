"""Search-time settings side by side on one store, interleaved query by query (fair under a shifting load).

    .venv/bin/python bench/search_settings_ab.py bench/cache/runs/search-edge-200000-realistic \\
        --n 200000 --variants "policy;acorn_max_selectivity=0;hnsw_ef=128;hnsw_ef=512"

The store is one `bench/search_latency.py --keep` built. Each variant is a set of overrides of
embedder/store/policy.py's search-time fields (`policy` = none). For every query and filter case
the variants take turns, so each sees the same load. Recall@10 is against exact search with ties
counted as hits (bench/vectors.py). Writes bench/results/search_settings_ab.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import search_latency as SL  # noqa: E402
import vectors as V  # noqa: E402


def parse(variant: str):
    from embedder.store.policy import POLICY

    if variant == "policy":
        return POLICY
    changes = dict(kv.split("=") for kv in variant.split(","))
    return replace(POLICY, **{k: type(getattr(POLICY, k))(v) for k, v in changes.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--vectors", default="realistic")
    parser.add_argument("--variants", default="policy;acorn_max_selectivity=0")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default="search_settings_ab")
    args = parser.parse_args()
    from embedder.store import edge as store_edge

    SL.KIND = args.vectors
    variants = {v: parse(v) for v in args.variants.split(";")}
    load_before = os.getloadavg()
    import embedder.store.edge  # noqa: F401 - imports are not part of reopening
    import qdrant_edge  # noqa: F401

    started = time.perf_counter()
    store = SL.open_store("edge", Path(args.folder))
    count = store.count()
    reopen_s = time.perf_counter() - started
    rss_open = common.rss_mb()
    qs = V.queries(args.vectors, args.n, args.queries, SL.SEED)
    cases = {"unfiltered": None, **SL.filters()}
    for q in qs[:100]:  # the goal's "after opening and 100 queries"
        store.query(q, 10)
    result: dict = {"folder": args.folder, "n": args.n, "count": count, "vectors": args.vectors,
                    "stats": store.stats(), "reopen_s": reopen_s, "rss_after_open_mb": rss_open,
                    "rss_after_100_queries_mb": common.rss_mb(), "rss_split_after_100_queries_mb": SL.rss_split(),
                    "load_before": load_before, "cases": {}}
    print({k: v for k, v in result.items() if k != "cases"}, flush=True)
    for name, where in cases.items():
        times = {v: [] for v in variants}
        got = {v: ([], []) for v in variants}
        ex_ids, ex_scores = [], []
        for q in qs:
            for v, policy in variants.items():
                store_edge.POLICY = policy
                t = time.perf_counter()
                hits = store.query(q, 10, where=where, with_vectors=True)
                times[v].append(time.perf_counter() - t)
                got[v][0].append([h.id for h in hits])
                got[v][1].append([float(np.dot(h.vector, q)) for h in hits])
            exact = store.query(q, 10, where=where, exact=True)
            ex_ids.append([h.id for h in exact])
            ex_scores.append([h.score for h in exact])
        result["cases"][name] = {
            v: {**SL.percentiles(times[v]), "recall_at_10": V.recall_at_k(ex_ids, ex_scores, *got[v])} for v in variants
        }
        print(name, {v: (round(r["p50_ms"], 1), round(r["recall_at_10"], 3)) for v, r in result["cases"][name].items()},
              flush=True)
    result["load_after"] = os.getloadavg()
    store.close()
    common.write_result(args.out, result)


if __name__ == "__main__":
    main()
