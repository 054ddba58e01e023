"""How fast the CLI says "the store is in use" while another process (the app) holds it.

The CLI takes the embedded store's folder lock before it imports torch or the model, so the
answer should take about as long as starting Python. Runs `python -m embedder info` against a
held store RUNS times and writes bench/results/cli_in_use.json (median and worst, seconds), with
the machine and its load. Usage: python bench/cli_in_use.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

from embedder.store import FolderLock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "qdrant"
        empty = Path(scratch) / "empty.env"
        empty.touch()
        env = {**os.environ, "QDRANT_PATH": str(folder), "EMBEDDER_ENV_FILE": str(empty), "PYTHONPATH": str(common.ROOT)}
        env.pop("QDRANT_URL", None)
        lock = FolderLock(folder)
        seconds = []
        try:
            for _ in range(args.runs):
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "embedder", "info"], env=env, capture_output=True, text=True)
                seconds.append(time.perf_counter() - started)
                assert done.returncode == 1 and "is in use" in done.stderr, done.stderr
        finally:
            lock.release()
    result = {
        "runs": args.runs,
        "median_s": round(statistics.median(seconds), 3),
        "worst_s": round(max(seconds), 3),
        "goal_s": 1.0,
        "machine": common.machine(),
        "load": common.load(),
    }
    print(f"'in use' answered in {result['median_s']} s (median), {result['worst_s']} s (worst) of {args.runs} runs")
    common.write_result("cli_in_use", result)


if __name__ == "__main__":
    main()
