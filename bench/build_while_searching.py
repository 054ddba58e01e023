"""Do searches keep answering while the store indexes and builds its graph? (the product's EdgeStore)

    .venv/bin/python bench/build_while_searching.py --n 200000                  # both modes, one after the other
    .venv/bin/python bench/build_while_searching.py --n 1000000 --modes aside   # the 1M row (quiet machine)

For each mode, in a fresh process: an `EdgeStore` is filled the way the indexer fills it (batches of
512 CLIP-like vectors, bench/vectors.py, with the indexer's payload; the store builds its graph by
itself every `build_step_points` new points, embedder/store/policy.py), then the indexer's final
`optimize()`. Meanwhile a second thread searches without pause (top 10, every fourth with a date
filter) and a third counts in pure Python (is this interpreter free?). Modes: `aside` (the product:
each graph built by a child process on a copy, then swapped in) and `here` (the build in this
process, as before: EDGE's optimize() holds the interpreter, so searches wait).

Reports the longest a search took and the longest gap between two answers, during the graph steps
and over the whole fill, with where each step spent its time (copy, child, load, swap). Writes
bench/results/build_while_searching[-OUT].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import vectors as V  # noqa: E402
from search_latency import BATCH, payload, point_id  # noqa: E402

SEED = 11


def run(mode: str, n: int, kind: str, folder: Path, step: int | None) -> dict:
    """One mode, in this process: fill a store while searching; the timings."""
    from dataclasses import replace

    from embedder.config import Settings
    from embedder.store import Point, SearchFilter
    from embedder.store import aside
    from embedder.store import edge as store_edge

    store_edge.BUILD_ASIDE = mode == "aside"
    if step:
        store_edge.POLICY = replace(store_edge.POLICY, build_step_points=step)
    events: list[dict] = []
    common.timed(store_edge.EdgeStore, "_optimize", events, "graph step (the caller waits)")
    common.timed(aside, "copy_tree", events, "copy (writes wait)")
    common.timed(aside.Child, "run", events, "child build")
    common.timed(store_edge.EdgeStore, "_load_built", events, "load the built copy")
    common.timed(store_edge.EdgeStore, "_swap_in", events, "replay and swap")
    common.timed(store_edge.EdgeStore, "_retire", events, "close the replaced shard")
    common.timed(store_edge.EdgeStore, "_flushed", events, "flush (a write's fsyncs)")
    shutil.rmtree(folder, ignore_errors=True)
    vecs = V.vectors(kind, n, SEED)
    queries = V.queries(kind, n, 200, SEED)
    rng = np.random.default_rng(SEED + 1)
    store = store_edge.EdgeStore(Settings(qdrant_path=folder, collection="images"), "clip-ViT-B-32", V.DIM)
    dated = SearchFilter(day_from=17_361, day_to=18_518)  # ~2017-07 to 2020-09: about a third of the dates

    stop = threading.Event()
    answers: list[tuple[float, float]] = []  # (asked, answered), perf_counter seconds
    counter = [0]

    def search() -> None:
        i = 0
        while not stop.is_set():
            asked = time.perf_counter()
            store.query(queries[i % len(queries)], 10, where=dated if i % 4 == 3 else None)
            answers.append((asked, time.perf_counter()))
            i += 1

    def count() -> None:
        while not stop.is_set():
            counter[0] += 1

    threads = [threading.Thread(target=search, daemon=True), threading.Thread(target=count, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    idle_rate = counter[0] / 1.0
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        stop_at = min(n, start + BATCH)
        store.upsert([Point(point_id(i), np.asarray(vecs[i]), payload(i, rng)) for i in range(start, stop_at)])
        if (start // BATCH) % 200 == 0:
            print(f"    {mode}: {stop_at} points, {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
    store.optimize()  # the indexer's end of run
    filled_s = time.perf_counter() - started
    counted = counter[0]
    stop.set()
    for t in threads:
        t.join()
    stats = store.stats()
    store.close()

    steps = [e for e in events if e["what"].startswith("graph step")]
    windows = [(e["at"] - e["s"], e["at"]) for e in steps]
    took = np.asarray([b - a for a, b in answers])
    done = np.asarray([b for _, b in answers])
    gaps = np.diff(np.concatenate([[started], done[done >= started]]))

    def during(times: np.ndarray, at: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(at), bool)
        for a, b in windows:
            inside |= (at >= a) & (at <= b)
        return times[inside]

    asked = np.asarray([a for a, _ in answers])
    step_took = during(took, asked)

    def overlapping(a: float, b: float) -> list[str]:
        return sorted({e["what"] for e in events
                       if e["at"] - e["s"] < b and e["at"] > a and not e["what"].startswith("graph")})

    slowest = [{"took_s": round(float(took[i]), 3), "at_s": round(float(asked[i] - started), 1),
                "while": overlapping(float(asked[i]), float(asked[i] + took[i]))}
               for i in np.argsort(-took)[:8]]
    flushes = [e["s"] for e in events if e["what"].startswith("flush")]
    result = {
        "mode": mode,
        "points": n,
        "build_step_points": store_edge.POLICY.build_step_points,
        "vectors": kind,
        "fill_s": filled_s,
        "graph_steps": len(steps),
        "graph_steps_s": [round(e["s"], 2) for e in steps],
        "where_the_steps_went_s": {
            what: [round(e["s"], 2) for e in events if e["what"] == what]
            for what in dict.fromkeys(e["what"] for e in events) if not what.startswith("flush")
        },
        "flushes": len(flushes),
        "longest_flushes_s": sorted(round(f, 3) for f in flushes)[-5:],
        "slowest_queries": slowest,
        "queries_answered": len(answers),
        "queries_answered_during_graph_steps": int(len(step_took)),
        "longest_query_s": float(took.max()) if len(took) else None,
        "longest_query_during_graph_steps_s": float(step_took.max()) if len(step_took) else None,
        "longest_gap_between_answers_s": float(gaps.max()) if len(gaps) else None,
        "query_p50_ms": float(np.percentile(took, 50) * 1000) if len(took) else None,
        "query_p99_ms": float(np.percentile(took, 99) * 1000) if len(took) else None,
        "python_counter_rate_idle_per_s": idle_rate,
        "python_counter_rate_while_filling_per_s": counted / (time.perf_counter() - started),
        "stats_after": stats,
        "peak_rss_mb": common.hwm_mb(),
        "load_after": os.getloadavg(),
    }
    shutil.rmtree(folder, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--vectors", default="realistic", choices=["realistic", "isotropic"])
    parser.add_argument("--modes", nargs="+", default=["aside", "here"], choices=["aside", "here"])
    parser.add_argument("--step", type=int, help="build_step_points instead of the policy's (small proofs)")
    parser.add_argument("--out", default="", help="suffix of the result file's name")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one mode, in this process
    args = parser.parse_args()
    folder = common.CACHE / "runs" / f"build-while-searching-{args.n}"
    if args.child:
        print(json.dumps(run(args.child, args.n, args.vectors, folder, args.step)), flush=True)
        return
    V.vectors(args.vectors, args.n, SEED)  # made and cached before anything is timed
    result = {"machine": common.machine(), "load_before": os.getloadavg(), "runs": []}
    for mode in args.modes:
        command = [sys.executable, __file__, "--n", str(args.n), "--vectors", args.vectors, "--child", mode]
        out = subprocess.run(command + (["--step", str(args.step)] if args.step else []),
                             check=True, stdout=subprocess.PIPE, text=True)
        result["runs"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(result["runs"][-1], indent=1), flush=True)
    common.write_result("build_while_searching" + (f"-{args.out}" if args.out else ""), result)


if __name__ == "__main__":
    main()
