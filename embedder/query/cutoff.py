"""When to stop: how many of a query's results look like it, read from that query's own score curve.

A fixed threshold cannot work: one query's best cosine is 0.31 and its tail 0.22, another's best
is 0.24 (CLIP's text-to-image cosines sit in a narrow band whose place moves with every query and
model). So the cut is where this curve breaks: the scores of the candidates, best first, fall in
small steps among the few that fit the query, then one step far larger than the curve's usual step
(`GAP_RATIO` times its median step, and at least `MIN_GAP_SHARE` of the whole fall from the best to
the last) before the slow slope of the many that do not. The largest such step among the first half
of the candidates (after at least MIN_KEPT) is the cut; a curve without one (a slope nearly straight,
as when nothing fits, or everything does) is not cut.

Only pictures found by their looks alone are cut this way: a picture whose text, names or tags hold
the query's words is an exact match and always stays (embedder/query/searcher.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

MIN_KEPT = 3  # never fewer, when there are this many
MIN_CURVE = 8  # a curve of fewer scores is not cut
GAP_RATIO = 4.0  # how many times the curve's median step the break must be
MIN_GAP_SHARE = 0.04  # and how much of the whole fall, best to last


def knee(scores: Sequence[float]) -> int:
    """How many of `scores` (best first) to keep: up to the break in their curve, or all of them."""
    n = len(scores)
    if n < MIN_CURVE:
        return n
    fall = scores[0] - scores[-1]
    if fall <= 1e-9:
        return n
    steps = [scores[i - 1] - scores[i] for i in range(1, n)]
    usual = statistics.median(steps)
    at = max(range(MIN_KEPT, n // 2 + 1), key=lambda i: (steps[i - 1], -i))
    gap = steps[at - 1]
    if gap < MIN_GAP_SHARE * fall or gap < GAP_RATIO * usual:
        return n
    return at
