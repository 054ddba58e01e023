"""Paraphrase robustness: does the wording of a query change what it finds?

A group of paraphrases is either captions a dataset marks with one `group` ("black cat sitting on a
couch" / "a black cat on a sofa" / "sofa with a black cat sitting"), or one label under several
prompt templates (`cat`, `a photo of cat`). For each group: the mean, the minimum and the spread
(best − worst) of its queries' average precision, and how much their first K results overlap
(mean Jaccard of each pair's top-K ids; 1 means every wording shows the same pictures). A model's
figure is the mean spread over its groups: the AP a user loses, on average, by wording a query the
worst way instead of the best. Pure numpy, no torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from embedder.evaluation.metrics import TEXT_TO_IMAGE, Evaluation, GroupRobustness, QueryScore, mean


def overlap(tops: Sequence[Sequence[str]], k: int) -> float:
    """Mean Jaccard overlap of the first `k` ids of every pair of result lists (1.0 for fewer than two)."""
    sets = [set(top[:k]) for top in tops]
    pairs = [(a, b) for a, b in itertools.combinations(sets, 2)]
    if not pairs:
        return 1.0
    return mean(len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs)


def robustness_of(group: str, scores: Sequence[QueryScore], k: int, names: Sequence[str] | None = None) -> GroupRobustness:
    """One group's figures from its queries' scores (`names`: how to call them, default their queries)."""
    return GroupRobustness(
        group,
        tuple(names or [s.query for s in scores]),
        tuple(s.average_precision for s in scores),
        overlap([s.top for s in scores], k),
        k,
    )


def caption_groups(evaluation: Evaluation, groups: Mapping[str, Sequence[str]], k: int) -> list[GroupRobustness]:
    """The figures of each group of captions (group → captions) among one evaluation's queries;
    a group with fewer than two of them measured is left out."""
    by_query = evaluation.by_query()
    found = []
    for group, captions in sorted(groups.items()):
        scores = [by_query[c] for c in captions if c in by_query]
        if len(scores) > 1:
            found.append(robustness_of(group, scores, k))
    return found


def template_groups(evaluations: Sequence[Evaluation], k: int) -> list[GroupRobustness]:
    """Templates as paraphrases: each query under every template of one model's text→image
    evaluations (one evaluation per template); empty with fewer than two templates."""
    text = [e for e in evaluations if e.mode == TEXT_TO_IMAGE]
    if len(text) < 2:
        return []
    by_template = [e.by_query() for e in text]
    found = []
    for query in sorted(set.intersection(*(set(b) for b in by_template))):
        names = [e.template or "{}" for e in text]  # each wording named by its template
        found.append(robustness_of(query, [b[query] for b in by_template], k, names))
    return found


def summary(groups: Sequence[GroupRobustness]) -> dict[str, Any]:
    """One model's robustness: how many groups, and the mean of each group figure."""
    if not groups:
        return {"groups": 0}
    k = groups[0].k
    return {
        "groups": len(groups),
        "mean AP": mean(g.mean_ap for g in groups),
        "min AP": mean(g.min_ap for g in groups),
        "AP spread": mean(g.spread for g in groups),
        f"overlap@{k}": mean(g.overlap for g in groups),
    }


def least_robust(groups: Sequence[GroupRobustness], n: int | None = None) -> list[GroupRobustness]:
    """The groups whose wording matters most first: largest AP spread, then least overlap."""
    ranked = sorted(groups, key=lambda g: (-g.spread, g.overlap, g.group))
    return ranked if n is None else ranked[:n]
