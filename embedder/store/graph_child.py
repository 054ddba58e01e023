"""The child process that builds a copied shard's search graph, so the app's interpreter never waits on it.

    python graph_child.py SHARD RESULT PARENT_PID

Run by `embedder.store.aside` by its file path, so it imports nothing of the product: only the
standard library and Qdrant Edge. Edge's `optimize()` holds the interpreter lock of the process it
runs in for the whole build (minutes at 1M images); here that is this process. It loads the shard
with the config the store wrote into it, builds (merges segments, HNSW graphs, quantised vectors),
flushes, closes, and writes `{"changed": bool, "seconds": float}` to RESULT. It runs at a lower
priority than the app, and dies with the process that started it (Linux's parent-death signal), so
an interrupted build never outlives the store that asked for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
NICENESS = 10


def die_with(parent: int) -> None:
    """Be killed when `parent` ends; exit at once if it has ended already."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        sys.exit(3)


def main(argv: list[str]) -> int:
    shard_path, result_path, parent = argv[1], argv[2], int(argv[3])
    die_with(parent)
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    from qdrant_edge import EdgeShard

    started = time.perf_counter()
    shard = EdgeShard.load(shard_path)  # with the config the store wrote into the shard (its search policy)
    changed = bool(shard.optimize())
    shard.flush()
    shard.close()
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump({"changed": changed, "seconds": time.perf_counter() - started}, out)
        out.flush()
        os.fsync(out.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
