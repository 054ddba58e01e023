"""When to stop: how many of a query's results look like it, read from that query's own score curve.

A fixed threshold cannot work: one query's best cosine is 0.31 and its tail 0.22, another's best
is 0.24 (CLIP's text-to-image cosines sit in a narrow band whose place moves with every query and
model). So the cut is where this curve bends: the scores of the candidates, best first, are scaled
to run from 1 (the best) to 0 (the last candidate), and the knee is the candidate farthest below the
straight line between the two ends — where the quick fall of the few that fit the query turns into
the slow slope of the many that do not. A curve without a knee clear enough (`PROMINENCE`: a slope
nearly straight, as when nothing fits, or everything does) is not cut.

Only pictures found by their looks alone are cut this way: a picture whose text, names or tags hold
the query's words is an exact match and always stays (embedder/query/searcher.py).
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_KEPT = 3  # never fewer, when there are this many
MIN_CURVE = 8  # a curve of fewer scores is not cut
PROMINENCE = 0.2  # how far below the straight line (in the scaled units) a knee must be


def knee(scores: Sequence[float]) -> int:
    """How many of `scores` (best first) to keep: up to the knee of their curve, or all of them."""
    n = len(scores)
    if n < MIN_CURVE:
        return n
    top, bottom = scores[0], scores[-1]
    if top - bottom <= 1e-9:
        return n
    best_at, depth = n, 0.0
    for i, score in enumerate(scores):
        below = (1 - i / (n - 1)) - (score - bottom) / (top - bottom)
        if below > depth:
            best_at, depth = i, below
    if depth < PROMINENCE:
        return n
    return max(min(MIN_KEPT, n), best_at)
