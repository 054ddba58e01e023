"""Embedded store at scale: Qdrant Edge (EdgeStore) against qdrant-client local mode (QdrantStore).

    .venv/bin/python bench/search_latency.py                 # Edge at 10k and 100k, local mode at 10k
    .venv/bin/python bench/search_latency.py --sizes 10000   # one size
    .venv/bin/python bench/search_latency.py --local-max 0   # Edge only
    nohup nice .venv/bin/python bench/search_latency.py --sizes 1000000 --engines edge --vectors realistic \
        --no-e2e --keep --out search_latency-1m-realistic > /tmp/search-1m.log 2>&1 &   # the 1M row
    nohup nice .venv/bin/python bench/search_latency.py --sizes 1000000 --engines edge --vectors isotropic         --no-e2e --keep --out search_latency-1m-isotropic > /tmp/search-1m-iso.log 2>&1 &   # the worst-case row beside it

Points are 512-d clustered unit vectors (bench/vectors.py: `--vectors isotropic`, the worst case and
the default, 300 clusters with isotropic noise; `--vectors realistic`, a CLIP-like cone with a
power-law spectrum, events of near-duplicates and text-like queries) with the payload the indexer writes (paths, folders, format, date, sizes...). Everything
goes through the product's own `ImageStore` classes. For each engine and size, in fresh processes:

* build: upsert rate (batches of 512, each flushed as the indexer's are), then `optimize()` (Edge:
  HNSW for segments above its indexing threshold) and its time;
* query: reopen time and RSS of a fresh process, store-only top-10 p50/p95 without and with payload
  filters, recall@10 of the default search against exact search (a returned point whose exact score
  ties the exact 10th within 1e-6 is a hit), then end-to-end text queries
  (`Searcher.search(Query.text(...))`: the random ViT-B/32 text tower + search + payloads, every text new).

Writes bench/results/search_latency.json.
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

DIM = 512
CLUSTERS = 300
BATCH = 512
SEED = 11
FOLDERS = [f"/photos/{year}/{event}" for year in range(2014, 2025) for event in ("trip", "family", "party", "misc", "phone")]


KIND = "isotropic"  # --vectors: isotropic (the worst case, the original rows) or realistic (CLIP-like)


def vectors(n: int, seed: int = SEED) -> np.ndarray:
    """The stored vectors (bench/vectors.py; cached under bench/cache/vectors/, memory-mapped)."""
    return V.vectors(KIND, n, seed)


def payload(i: int, rng: np.random.Generator) -> dict:
    folder = FOLDERS[int(rng.integers(len(FOLDERS)))]
    fmt = rng.choice(["JPEG", "PNG", "HEIF", "WEBP"], p=[0.8, 0.12, 0.05, 0.03])
    w, h = (4032, 3024) if rng.random() < 0.7 else (1920, 1080)
    parts = folder.strip("/").split("/")
    date = 1.39e9 + float(rng.uniform(0, 3.3e8))
    return {
        "sha256": f"{i:064x}",
        "paths": [f"{folder}/IMG_{i:06d}.jpg"],
        "names": [f"IMG_{i:06d}.jpg"],
        "name": f"IMG_{i:06d}.jpg",
        "folder": folder,
        "folders": ["/"] + ["/" + "/".join(parts[: k + 1]) for k in range(len(parts))],
        "bytes": int(rng.integers(500_000, 6_000_000)),
        "width": w,
        "height": h,
        "format": str(fmt),
        "mtime": date,
        "taken_at": date,
        "date": date,
        "indexed_at": 1.73e9,
        "model": "clip-ViT-B-32",
    }


def point_id(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def open_store(engine: str, folder: Path):
    from embedder.store import edge as store_edge
    from embedder.config import Settings

    if engine == "edge-hnsw":  # the same store with a graph on every segment (the default: exact to ~200k)
        store_edge.INDEXING_THRESHOLD_KB = 1_000
        engine = "edge"
    from embedder.store import QdrantStore
    from embedder.store.edge import EdgeStore

    settings = Settings(qdrant_path=folder, collection="images")
    return EdgeStore(settings, "clip-ViT-B-32", DIM) if engine == "edge" else QdrantStore.embedded(settings, "clip-ViT-B-32", DIM)


def filters():
    from embedder.store import SearchFilter

    return {
        "format=PNG (12%)": SearchFilter(formats=("PNG",)),
        "folder subtree (2%)": SearchFilter(folder="/photos/2019/trip"),
        # days 17361-18518: 2017-07-14 to 2020-09-12 on the camera's clock, as make_filter builds them
        "date range (~30%)": SearchFilter(day_from=17_361, day_to=18_518),
        "date range + min width (~20%)": SearchFilter(day_from=17_361, day_to=18_518, min_width=4000),
    }


# --- child processes -----------------------------------------------------------------------------


def build(engine: str, n: int, folder: Path) -> dict:
    from embedder.store import Point

    shutil.rmtree(folder, ignore_errors=True)
    vecs = vectors(n)
    rng = np.random.default_rng(SEED + 1)
    store = open_store(engine, folder)
    started = time.perf_counter()
    batch_s: list[float] = []
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        batch = [Point(point_id(i), np.asarray(vecs[i]), payload(i, rng)) for i in range(start, stop)]
        t = time.perf_counter()
        store.upsert(batch)  # includes the store's own graph-building steps (embedder/store/policy.py)
        batch_s.append(time.perf_counter() - t)
        if len(batch_s) % 100 == 0:
            print(f"    {stop} points, {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
    wall_s = time.perf_counter() - started  # with making the payloads
    upsert_s = sum(batch_s)  # the store's own time
    started = time.perf_counter()
    optimized = store.optimize()
    optimize_s = time.perf_counter() - started
    stats = store.stats() if hasattr(store, "stats") else {}
    started = time.perf_counter()
    store.close()
    close_s = time.perf_counter() - started
    disk = sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())  # allocated, not sparse size
    steps = sorted(batch_s)[-5:]
    return {
        "points": n,
        "vectors": KIND,
        "upsert_s": upsert_s,
        "upsert_points_per_s": n / upsert_s,
        "longest_upsert_call_s": steps[-1],
        "five_longest_upsert_calls_s": steps,
        "optimize_s": optimize_s,
        "optimized": optimized,
        "build_total_s": upsert_s + optimize_s,
        "build_wall_s_with_payload_making": wall_s + optimize_s,
        "close_s": close_s,
        "stats_after_optimize": stats,
        "disk_mb": disk / 2**20,
        "peak_rss_mb": common.hwm_mb(),
        "loadavg_after": os.getloadavg(),
    }


def rss_split() -> dict:
    """RssAnon (the process's own memory) and RssFile (mapped file pages: the store's files), MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def percentiles(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean()), "n": len(a)}


def query(engine: str, n: int, folder: Path, queries: int, e2e: bool = True) -> dict:
    import embedder.store  # noqa: F401 - imports are not part of reopening
    import embedder.store.edge  # noqa: F401
    import qdrant_edge  # noqa: F401

    rss_start = common.rss_mb()
    started = time.perf_counter()
    store = open_store(engine, folder)
    count = store.count()
    reopen_s = time.perf_counter() - started
    rss_open = common.rss_mb()
    assert count == n, (count, n)
    if KIND == "isotropic":
        rng = np.random.default_rng(SEED + 2)
        # Queries near stored images (cosine ~0.8 to one of them): every query has real neighbours.
        qs = vectors(n)[rng.choice(n, queries, replace=False)] + rng.normal(scale=0.03, size=(queries, DIM)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    else:  # text-like queries outside the image cone (bench/vectors.py)
        qs = V.queries(KIND, n, queries, SEED)
    out: dict = {"points": n, "reopen_s": reopen_s, "rss_before_open_mb": rss_start, "rss_after_open_mb": rss_open}
    for q in qs[:5]:
        store.query(q, 10)  # warm the page cache and code paths
    for q in qs[:100]:  # the goal's "after opening and 100 queries" (before the exact scans below map every original)
        store.query(q, 10)
    out["rss_after_100_queries_mb"] = common.rss_mb()
    out["rss_split_after_100_queries_mb"] = rss_split()
    cases = {"unfiltered": None, **filters()}
    latency: dict = {}
    recall: dict = {}
    for name, where in cases.items():
        times, hits_sizes = [], []
        for q in qs:
            t = time.perf_counter()
            hits = store.query(q, 10, where=where)
            times.append(time.perf_counter() - t)
            hits_sizes.append(len(hits))
        latency[name] = {**percentiles(times), "hits_min": int(min(hits_sizes))}
        if engine.startswith("edge"):
            ex_ids, ex_scores, got_ids, got_true = [], [], [], []
            for q in qs[:100]:
                exact = store.query(q, 10, where=where, exact=True)
                approx = store.query(q, 10, where=where, with_vectors=True)
                ex_ids.append([h.id for h in exact])
                ex_scores.append([h.score for h in exact])
                got_ids.append([h.id for h in approx])
                got_true.append([float(np.dot(h.vector, q)) for h in approx])  # the original's score
            recall[name] = V.recall_at_k(ex_ids, ex_scores, got_ids, got_true)  # ties are hits
        print(f"    {engine} {n}: {name}: p50 {latency[name]['p50_ms']:.1f} ms", file=sys.stderr, flush=True)
    out["store_query_top10"] = latency
    if recall:
        out["recall_at_10_vs_exact"] = recall
        if hasattr(store, "stats"):
            out["stats"] = store.stats()
        t = [0.0]
        for q in qs[:50]:
            s = time.perf_counter()
            store.query(q, 10, exact=True)
            t[0] += time.perf_counter() - s
        out["exact_unfiltered_mean_ms"] = 1000 * t[0] / 50
    out["rss_after_queries_mb"] = common.rss_mb()
    out["loadavg"] = os.getloadavg()
    if not e2e:
        store.close()
        return out

    from embedder.models.base import Encoder
    from embedder.models.sentence_transformers import SentenceTransformersEncoder
    from embedder.query.terms import Query
    from embedder.query.searcher import Searcher

    encoder = SentenceTransformersEncoder(str(common.MODEL_DIR), device="cpu")
    searcher = Searcher(encoder, store)
    words = ["dog", "beach", "mountain", "birthday", "city", "snow", "sunset", "car", "family", "forest"]
    texts = [f"{words[i % 10]} {words[(i * 7 + 3) % 10]} number {i}" for i in range(max(queries // 2, 40))]
    searcher.search(Query.text("warm up query"), 10)
    times, encode_times = [], []
    for text in texts:
        t = time.perf_counter()
        results = searcher.search(Query.text(text, template="a photo of {}"), 10)
        times.append(time.perf_counter() - t)
        assert len(results) == 10
    for text in texts[:20]:
        t = time.perf_counter()
        encoder.encode_texts([text + " again"])
        encode_times.append(time.perf_counter() - t)
    out["e2e_text_query_top10"] = percentiles(times)
    out["text_encode_only"] = percentiles(encode_times)
    out["rss_with_model_mb"] = common.rss_mb()
    store.close()
    return out


def spawn(*args: str) -> dict:
    load = common.load()
    extra = ["--vectors", KIND] + (["--no-e2e"] if NO_E2E else []) + (["--policy", POLICY_OVERRIDES] if POLICY_OVERRIDES else [])
    # The child's progress (stderr) goes straight through: a 1M build runs for a long time.
    done = subprocess.run(["nice", sys.executable, __file__, *args, *extra], stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{args} failed (exit {done.returncode}); its stderr is above")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load_before"] = load
    result["loadavg_before"] = os.getloadavg()
    return result


NO_E2E = False
POLICY_OVERRIDES = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=["build", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--local-max", type=int, default=10000, help="largest size for qdrant-client local mode")
    parser.add_argument("--out", default="search_latency")
    parser.add_argument("--engines", default="edge,local", help="edge, local, edge-hnsw (HNSW on every segment)")
    parser.add_argument("--vectors", choices=["isotropic", "realistic"], default="isotropic",
                        help="isotropic: the worst case (the original rows); realistic: CLIP-like (bench/vectors.py)")
    parser.add_argument("--policy", help="search-time overrides of embedder/store/policy.py, e.g. hnsw_ef=512,acorn_max_selectivity=0")
    parser.add_argument("--keep", action="store_true", help="keep the built store under bench/cache/runs/")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end text queries (the model)")
    args = parser.parse_args()
    global KIND, NO_E2E, POLICY_OVERRIDES
    KIND, NO_E2E, POLICY_OVERRIDES = args.vectors, args.no_e2e, args.policy
    if POLICY_OVERRIDES:
        from dataclasses import replace

        from embedder.store import edge as store_edge

        changes = dict(kv.split("=") for kv in POLICY_OVERRIDES.split(","))
        types = {k: type(getattr(store_edge.POLICY, k)) for k in changes}
        store_edge.POLICY = replace(store_edge.POLICY, **{k: types[k](v) for k, v in changes.items()})
    if args.child:
        folder = Path(args.folder)
        if args.child == "build":
            result = build(args.engine, args.n, folder)
        else:
            result = query(args.engine, args.n, folder, args.queries, e2e=not args.no_e2e)
        print("RESULT " + json.dumps(result), flush=True)
        return

    common.build_model()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict = {"machine": common.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": {},
                     "policy_overrides": POLICY_OVERRIDES}
    print(f"machine: {results['machine']}\nload: {common.load()}", flush=True)
    for n in sizes:
        for engine in args.engines.split(","):
            if engine == "local" and n > args.local_max:
                continue
            folder = common.CACHE / "runs" / f"search-{engine}-{n}-{KIND}"
            queries = args.queries if engine == "edge" else min(args.queries, 60)
            record = folder.with_name(folder.name + ".build.json")
            if args.keep and record.is_file() and folder.is_dir():  # built before with --keep: query it again
                built = json.loads(record.read_text())
                print(f"{engine} {n} {KIND}: reusing the store built {built.get('built_at')}", flush=True)
            else:
                print(f"{engine} {n} {KIND}: building...", flush=True)
                built = spawn("--child", "build", "--engine", engine, "--n", str(n), "--folder", str(folder))
                built["built_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
                if args.keep:
                    record.write_text(json.dumps(built))
            print(f"  upsert {built['upsert_points_per_s']:.0f} points/s, optimize {built['optimize_s']:.1f} s, "
                  f"{built['disk_mb']:.0f} MB on disk", flush=True)
            queried = spawn("--child", "query", "--engine", engine, "--n", str(n), "--folder", str(folder),
                            "--queries", str(queries))
            print(f"  reopen {queried['reopen_s'] * 1000:.0f} ms; "
                  + "; ".join(f"{k} p50 {v['p50_ms']:.1f} / p95 {v['p95_ms']:.1f} ms" for k, v in queried["store_query_top10"].items())
                  + (f"; e2e text p50 {queried['e2e_text_query_top10']['p50_ms']:.1f} ms" if "e2e_text_query_top10" in queried else "")
                  + f"; RSS after open {queried['rss_after_open_mb']:.0f} MB, after queries {queried['rss_after_queries_mb']:.0f} MB",
                  flush=True)
            if "recall_at_10_vs_exact" in queried:
                print(f"  recall@10 vs exact: {queried['recall_at_10_vs_exact']}", flush=True)
            results["runs"][f"{engine}-{n}-{KIND}"] = {"engine": engine, "n": n, "vectors": KIND, "build": built, "query": queried}
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path = common.write_result(args.out, results)
    print(f"wrote {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
