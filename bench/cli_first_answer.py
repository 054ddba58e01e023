"""The CLI's first answer: seconds from starting `embedder search TEXT` to its first result line.

    .venv/bin/python bench/cli_first_answer.py                      # 100k points, 5 runs a variant
    .venv/bin/python bench/cli_first_answer.py --points 10000 --runs 2

An Edge store of --points clustered vectors (bench/search_latency.py's, with their payloads) made for
the random-weight clip-ViT-B-32 look-alike (bench/common.py), then, each a fresh process as a person
runs it (offline, on the CPU), variants interleaved:

* lean       — the default once the text tower is exported: its ONNX graph and tokenizer, no torch;
* full model — EMBEDDER_TEXT_SPEEDUP=torch: torch, sentence-transformers and the whole CLIP first
               (what every search did before), then the query;
* first run  — once, from an empty MODEL_CACHE_DIR: the model loads and its text tower is exported.

For each: time to the first result line, to the end of the process, and the process's peak RSS;
then `python -X importtime` of one lean search (the largest imports). Writes
bench/results/cli_first_answer.json (with the machine and its load before and after).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GOAL_S = 2.0
# `python -m embedder ARGS` that also writes its peak RSS (VmHWM, KB) to the file named first: a child's
# ru_maxrss would report this parent's, kept across fork and exec.
RUN = (
    "import atexit, sys\n"
    "out = sys.argv.pop(1)\n"
    "def hwm():\n"
    "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "    open(out, 'w').write(line.split()[1])\n"
    "atexit.register(hwm)\n"
    "from embedder.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
QUERIES = ("a dog on the beach at sunset", "red car in the city", "birthday cake", "snow on the mountain",
           "two children playing in the park", "an old house by the lake", "a small boat")


def build_store(folder: Path, points: int) -> None:
    """An Edge store recorded for the bench model, holding `points` clustered vectors."""
    import search_latency as sl

    from embedder.config import Settings
    from embedder.models.ids import model_id_of
    from embedder.store import Point
    from embedder.store.edge import EdgeStore

    marker = folder / "bench-points.txt"
    if marker.is_file() and marker.read_text() == str(points):
        return  # built before (the store is only read)
    shutil.rmtree(folder, ignore_errors=True)
    store = EdgeStore(Settings(qdrant_path=folder), model_id_of(str(common.MODEL_DIR)), sl.DIM)
    vecs, rng = sl.vectors(points), np.random.default_rng(sl.SEED + 1)
    for start in range(0, points, sl.BATCH):
        stop = min(points, start + sl.BATCH)
        store.upsert([Point(sl.point_id(i), np.asarray(vecs[i]), sl.payload(i, rng)) for i in range(start, stop)])
    store.optimize()
    store.close()
    marker.write_text(str(points))


def environment(store: Path, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDER_", "QDRANT_"))}
    env.update(
        EMBEDDER_MODEL=str(common.MODEL_DIR), EMBEDDER_DEVICE="cpu", QDRANT_PATH=str(store),
        MODEL_CACHE_DIR=str(cache), EMBEDDER_ENV_FILE=str(common.ROOT / "tests" / "fixtures" / "empty.env"),
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TAGS="false", **extra,
    )
    return env


def answer(env: dict[str, str], text: str) -> dict:
    """One `embedder search TEXT` in a fresh process: seconds to the first result line and to exit, peak RSS."""
    hwm = common.CACHE / "cli-first-answer-hwm.txt"
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", RUN, str(hwm), "search", text, "-k", "10"], cwd=str(common.ROOT), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.readline()
    first_s = time.perf_counter() - started
    rest = child.stdout.read()
    errors = child.stderr.read()
    assert child.wait() == 0 and first.strip(), (child.returncode, first, errors)
    return {"first_result_s": round(first_s, 3), "exit_s": round(time.perf_counter() - started, 3),
            "peak_rss_mb": round(int(hwm.read_text()) / 1024, 1), "lines": 1 + rest.count("\n"), "stderr": errors.strip()}


def summary(runs: list[dict]) -> dict:
    firsts = [r["first_result_s"] for r in runs]
    return {"first_result_p50_s": round(float(np.median(firsts)), 3), "first_result_min_s": min(firsts),
            "first_result_max_s": max(firsts), "exit_p50_s": round(float(np.median([r["exit_s"] for r in runs])), 3),
            "peak_rss_mb_p50": float(np.median([r["peak_rss_mb"] for r in runs])), "runs": runs}


def import_times(env: dict[str, str], text: str, top: int = 12) -> list[dict]:
    """The largest cumulative imports of one lean search (`python -X importtime`)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "embedder", "search", text, "-k", "10"],
                          cwd=str(common.ROOT), env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if found and len(found.group(3)) <= 3:  # top-level imports and their direct children
            rows.append({"module": found.group(4), "cumulative_ms": round(int(found.group(2)) / 1000, 1)})
    heavy = [m for m in ("torch", "transformers", "sentence_transformers") if any(r["module"] == m for r in rows)]
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:top] + [{"heavy_imported": heavy}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant, interleaved")
    args = parser.parse_args()
    common.build_model()
    work = common.CACHE / f"cli-first-answer-{args.points}"
    store, cache = work / "qdrant", work / "model-cache"
    result: dict = {"machine": common.machine(), "load_before": common.load(), "loadavg_before": os.getloadavg(),
                    "points": args.points, "goal_first_result_s": GOAL_S}
    started = time.perf_counter()
    build_store(store, args.points)
    result["store_build_s"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(cache, ignore_errors=True)
    result["first_run_exports"] = answer(environment(store, cache), "a photo of a dog")
    exported = list(cache.rglob("text.onnx"))
    result["export_file_mb"] = round(exported[0].stat().st_size / 2**20, 1) if exported else None
    print("first run (export):", result["first_run_exports"], flush=True)
    variants = {"lean (default, exported tower)": environment(store, cache),
                "full model (EMBEDDER_TEXT_SPEEDUP=torch)": environment(store, cache, EMBEDDER_TEXT_SPEEDUP="torch")}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    loads = []
    for r in range(args.runs):
        loads.append(os.getloadavg())
        for name, env in variants.items():
            runs[name].append(answer(env, QUERIES[r % len(QUERIES)] + f" {r}"))
            print(name, runs[name][-1], flush=True)
    result["variants"] = {name: summary(done) for name, done in runs.items()}
    result["loadavg_during"] = loads
    result["lean_import_times"] = import_times(variants["lean (default, exported tower)"], "a quiet lake")
    lean = result["variants"]["lean (default, exported tower)"]["first_result_p50_s"]
    result["goal_met"] = lean <= GOAL_S
    result["load_after"], result["loadavg_after"] = common.load(), os.getloadavg()
    print("wrote", common.write_result(f"cli_first_answer-{args.points // 1000}k", result))


if __name__ == "__main__":
    main()
