"""Payload indexes in RAM or memory-mapped, on a kept 1M store: the one-off re-make, reopen, and filters.

    .venv/bin/python bench/filter_index_placement.py ram cached    # each placement in turn

Needs a store kept by `bench/search_latency.py --keep` (default: the CLIP-like 1M one under
bench/cache/runs/). For each placement: open the store with the policy's `payload_indexes_on_disk` set
that way (the store re-makes any index placed otherwise: timed), close, reopen (timed), then 60
text-like queries (bench/vectors.py) per filter, p50. Writes bench/results/filter_index_placement.json.
The store is left as the last placement says: end with `cached`, the product's.
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
import vectors as V  # noqa: E402

FOLDER = common.CACHE / "runs" / "search-edge-1000000-realistic"


def filters() -> dict:
    from embedder.store import SearchFilter

    return {
        "date range (30%)": SearchFilter(date_from=1.5e9, date_to=1.6e9),
        "min width (70%)": SearchFilter(min_width=4000),
        "date range + min width (21%)": SearchFilter(date_from=1.5e9, date_to=1.6e9, min_width=4000),
        "format=PNG (12%)": SearchFilter(formats=("PNG",)),
        "narrow date range (3%)": SearchFilter(date_from=1.5e9, date_to=1.51e9),
    }


def run(placement: str, folder: Path, n: int) -> dict:
    from embedder.config import Settings
    from embedder.store import edge as store_edge
    from embedder.store.policy import POLICY

    store_edge.POLICY = replace(POLICY, payload_indexes_on_disk=placement == "cached")
    settings = Settings(qdrant_path=folder, collection="images")
    started = time.perf_counter()
    store = store_edge.EdgeStore(settings, "clip-ViT-B-32", 512)
    first_open_s = time.perf_counter() - started  # includes re-making indexes placed otherwise
    store.close()
    started = time.perf_counter()
    store = store_edge.EdgeStore(settings, "clip-ViT-B-32", 512)
    reopen_s = time.perf_counter() - started
    queries = V.queries("realistic", n, 60, 7)
    for q in queries[:5]:
        store.query(q, 10)
    p50 = {}
    for name, where in filters().items():
        times = []
        for q in queries:
            t = time.perf_counter()
            store.query(q, 10, where=where)
            times.append(time.perf_counter() - t)
        p50[name] = 1000 * float(np.median(times))
        print(f"  {placement}: {name}: p50 {p50[name]:.1f} ms", flush=True)
    rss = common.rss_mb()
    store.close()
    return {"placement": placement, "first_open_s": first_open_s, "reopen_s": reopen_s, "filter_p50_ms": p50,
            "rss_after_queries_mb": rss, "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("placements", nargs="+", choices=["ram", "cached"])
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--n", type=int, default=1_000_000, help="the kept store's size (for its queries)")
    args = parser.parse_args()
    result: dict = {"machine": common.machine(), "folder": str(args.folder), "load_before": os.getloadavg(), "runs": []}
    for placement in args.placements:
        result["runs"].append(run(placement, args.folder, args.n))
        print(result["runs"][-1], flush=True)
    common.write_result("filter_index_placement", result)


if __name__ == "__main__":
    main()
