"""How the store searches as a library grows: one policy, which each backend translates into its config.

Small libraries are searched exactly (every vector scored: never a miss, no graph to build). A
segment larger than `exact_below` points gets an HNSW graph and int8 scalar quantisation: the
quantised vectors (a quarter of the size) stay in RAM, the float32 originals stay on disk (memory
mapped), and each query walks the graph on the quantised vectors and rescores `oversampling` × limit
candidates with the originals, so scores are exact cosines of the originals on every backend.

The numbers come from bench/hnsw_sweep.py and bench/search_latency.py (BENCHMARKS.md, section 4):
on CLIP-like vectors (bench/vectors.py) m 16 / ef_construct 100 / ef 256 with int8 + 2× rescoring
finds 0.98-0.99 of the exact top 10 at 50k-200k and 0.956 at 1M (p50 8 ms on 2 cores). On
isotropic vectors (no structure: the worst case) a graph finds only ~0.6; real CLIP embeddings
are far from isotropic.

`EdgeStore` (embedder/store/edge.py) and `QdrantStore` (embedder/store/server.py) both read
`POLICY`; nothing else should hard-code any of these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class SearchPolicy:
    """When to switch from exact search to HNSW + quantisation, and how to build and search the graph."""

    # A segment with more points than this gets a graph and quantised vectors; below it, exact search.
    exact_below: int = 20_000
    # HNSW: links per node, candidates while building, candidates while searching.
    m: int = 16
    ef_construct: int = 100
    hnsw_ef: int = 256
    # No extra graph links per payload value (Qdrant's payload_m): they multiply build time; a
    # filter matching fewer than `full_scan_points` points is scored exactly instead (payload index +
    # a scan of just those points), a wider one walks the graph checking the filter. 50k rather
    # than 25k: at 1M the date-range + width filter (~20%, ~20k a segment, estimated above 25k)
    # walked the graph with ACORN at recall 0.93 and was scored exactly at 50k, recall 1.00, in the
    # same 101 ms (bench/results/search_latency-1m-isotropic*.json). A segment keeps the threshold
    # it was built with; new segments take this one.
    payload_m: int = 0
    full_scan_points: int = 50_000
    # ACORN (search time only): with a filter matching less than this share of a segment, the graph
    # walk also looks at neighbours of neighbours, so the links left after filtering still connect
    # (0: never). Qdrant's own default share.
    acorn_max_selectivity: float = 0.4
    # Scalar int8 quantisation in RAM, originals on disk, rescoring of oversampling × limit candidates.
    quantize: bool = True
    quantile: float = 0.99
    oversampling: float = 2.0
    originals_on_disk: bool = True
    # Payload indexes memory-mapped (Memory.Cached) rather than copied into RAM: a 100k store
    # opened in 1.8 s instead of 2.7 s before read-ahead (bench/reopen_payload_indexes.py), and they
    # leave the process's own memory. An old store's indexes are re-made this way once when opened.
    payload_indexes_on_disk: bool = True
    # The HNSW graph memory-mapped too: measured no faster to open (1.7 s against 1.8 s), so off.
    graph_on_disk: bool = False
    # The graph is built in steps: the store optimizes by itself after every `build_step_points`
    # new points, and segments never grow past `max_segment_points`, so one step (a new segment, or
    # a merge) is bounded. Edge's optimize() holds the interpreter of its process for the whole
    # step, so EdgeStore runs it in a child process on a copy (store/aside.py) and searches go on;
    # the step bounds what the child builds and what is copied (bench/build_while_searching.py).
    build_step_points: int = 100_000
    max_segment_points: int = 200_000

    def kb(self, points: int, dim: int) -> int:
        """Qdrant sizes its thresholds in KB of float32 vectors."""
        return max(1, points * dim * FLOAT32_BYTES // 1024)

    def indexing_threshold_kb(self, dim: int) -> int:
        return self.kb(self.exact_below, dim)

    def full_scan_threshold_kb(self, dim: int) -> int:
        return self.kb(self.full_scan_points, dim)

    def max_segment_size_kb(self, dim: int) -> int:
        return self.kb(self.max_segment_points, dim)


POLICY = SearchPolicy()
