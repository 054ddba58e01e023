"""The date filter on the stored day, and an old store's upgrade to it (embedder/store/schema.py).

    .venv/bin/python bench/date_filter.py --n 200000        # builds a store as the version before wrote it
    nohup nice .venv/bin/python bench/date_filter.py --n 1000000 \\
        --folder bench/cache/runs/search-edge-1000000-realistic > /tmp/date-1m.log 2>&1 &   # a kept 1M store

A store made before the day field (built here with the old writes: no `day`, no index on it; or a
copy of a store kept by `bench/search_latency.py --keep`, which the copy spares) goes through the
upgrade, each phase in a fresh process, with the same 60 text-like queries (bench/vectors.py) per filter:

1. `before`: opened as the version before opened it, queried with the filter it built (two ranges
   on `date` in seconds, the last day ending at 86399.999);
2. `opened`: opened by this version (timed: it adds the day's index), the date filter as
   `make_filter` builds it now (days), answered by `date` since the points lack `day`;
3. `filled`: `fill_days()` (timed, with the graph steps it causes and the final optimize), queried;
4. `reopened`: opened again (timed), queried: the day's index is in use and segments in day order.

For each phase and filter: p50 / p95, recall@10 against exact search, and whether the exact top 10
are the same images in the same order as in `before`. Writes bench/results/date_filter[-OUT].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import vectors as V  # noqa: E402
from search_latency import BATCH, payload, point_id  # noqa: E402

SEED = 11
MODEL = "clip-ViT-B-32"
# (first day, last day, min width): days since 1970 on the camera's clock (the stored dates are 2014-2024)
FILTERS = {
    "date range (~30%)": (17_361, 18_518, None),
    "date range + min width (~21%)": (17_361, 18_518, 4000),
    "four months (~3%)": (17_361, 17_480, None),
    "one day": (17_400, 17_400, None),
}


def older_writes() -> None:
    """Make this process write and open stores as the version before the day field did."""
    from embedder.store import edge as store_edge

    store_edge.with_day = lambda payload: payload
    store_edge.INTEGER_FIELDS = ()


def where(name: str, phase: str):
    from datetime import date, timedelta

    from embedder.query.filters import make_filter
    from embedder.store import SearchFilter

    first, last, width = FILTERS[name]
    if phase == "before":  # what make_filter built before: seconds, the last day ending at 86399.999
        return SearchFilter(date_from=first * 86_400.0, date_to=last * 86_400.0 + 86_399.999, min_width=width)
    day = lambda n: date(1970, 1, 1) + timedelta(days=n)  # noqa: E731
    return make_filter(after=day(first), before=day(last), min_width=width)


def build(folder: Path, n: int, kind: str) -> dict:
    from embedder.config import Settings
    from embedder.store import Point
    from embedder.store.edge import EdgeStore

    older_writes()
    shutil.rmtree(folder, ignore_errors=True)
    vecs = V.vectors(kind, n, SEED)
    rng = np.random.default_rng(SEED + 1)
    started = time.perf_counter()
    with EdgeStore(Settings(qdrant_path=folder, collection="images"), MODEL, V.DIM) as store:
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            store.upsert([Point(point_id(i), np.asarray(vecs[i]), payload(i, rng)) for i in range(start, stop)])
        store.optimize()
        stats = store.stats()
    return {"build_s": time.perf_counter() - started, "stats": stats}


def phase(name: str, folder: Path, n: int, kind: str) -> dict:
    from embedder.config import Settings
    from embedder.store.edge import EdgeStore

    if name == "before":
        older_writes()
    out: dict = {"phase": name}
    started = time.perf_counter()
    store = EdgeStore(Settings(qdrant_path=folder, collection="images"), MODEL, V.DIM)
    out["open_s"] = time.perf_counter() - started
    if name == "filled":
        started = time.perf_counter()
        out["filled_points"] = store.fill_days()
        out["fill_s"] = time.perf_counter() - started
        started = time.perf_counter()
        store.optimize(force=True)
        out["final_optimize_s"] = time.perf_counter() - started
    out["stats"] = store.stats()
    queries = V.queries(kind, n, 60, 7)
    for q in queries[:5]:
        store.query(q, 10)
    out["filters"] = {}
    for fname in FILTERS:
        f = where(fname, "before" if name == "before" else "now")
        times, exact_ids, exact_scores, got_ids, got_true = [], [], [], [], []
        for q in queries:
            t = time.perf_counter()
            store.query(q, 10, where=f)
            times.append(time.perf_counter() - t)
        for q in queries:
            exact = store.query(q, 10, where=f, exact=True)
            approx = store.query(q, 10, where=f, with_vectors=True)
            exact_ids.append([h.id for h in exact])
            exact_scores.append([h.score for h in exact])
            got_ids.append([h.id for h in approx])
            got_true.append([float(np.dot(h.vector, q)) for h in approx])
        a = np.asarray(times) * 1000
        out["filters"][fname] = {
            "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "recall_at_10": V.recall_at_k(exact_ids, exact_scores, got_ids, got_true),
            "exact_top10_ids": exact_ids,
            "matching": store._count(store._filter(f)),
        }
        print(f"    {name}: {fname}: p50 {out['filters'][fname]['p50_ms']:.1f} ms", file=sys.stderr, flush=True)
    started = time.perf_counter()
    store.close()
    out["close_s"] = time.perf_counter() - started
    out["load"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--vectors", default="realistic", choices=["realistic", "isotropic"])
    parser.add_argument("--folder", type=Path, help="a store kept by search_latency.py --keep (it is copied first)")
    parser.add_argument("--out", default="")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = common.CACHE / "runs" / f"date-filter-{args.n}-{args.vectors}"
    if args.child:
        if args.child == "build":
            result = build(work, args.n, args.vectors)
        else:
            result = phase(args.child, work, args.n, args.vectors)
        print("RESULT " + json.dumps(result), flush=True)
        return

    def spawn(child: str) -> dict:
        command = [sys.executable, __file__, "--n", str(args.n), "--vectors", args.vectors, "--child", child]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        return json.loads([line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])

    result: dict = {"machine": common.machine(), "load_before": os.getloadavg(), "n": args.n}
    if args.folder:
        from embedder.store.aside import copy_tree

        shutil.rmtree(work, ignore_errors=True)
        started = time.perf_counter()
        copy_tree(args.folder, work)
        result["copied_from"], result["copy_s"] = str(args.folder), time.perf_counter() - started
    else:
        V.vectors(args.vectors, args.n, SEED)
        result["build"] = spawn("build")
    result["phases"] = {p: spawn(p) for p in ("before", "opened", "filled", "reopened")}
    before = result["phases"]["before"]["filters"]
    for p in ("opened", "filled", "reopened"):
        for fname, got in result["phases"][p]["filters"].items():
            got["exact_top10_same_as_before"] = got["exact_top10_ids"] == before[fname]["exact_top10_ids"]
    for p in result["phases"].values():
        for got in p["filters"].values():
            got.pop("exact_top10_ids")
    path = common.write_result("date_filter" + (f"-{args.out}" if args.out else ""), result)
    print(json.dumps({p: {k: v for k, v in r.items() if k != "filters"} | {"filters": r["filters"]}
                      for p, r in result["phases"].items()}, indent=1))
    print(f"wrote {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
