"""Evaluations as text and JSON: the leaderboard table, the per-query list (worst first) and the groups
of paraphrases whose wording matters most. Every query is user text: shown through `printable`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embedder.evaluation.metrics import Evaluation, GroupRobustness
from embedder.evaluation.robustness import least_robust, summary
from embedder.terminal import printable

SPREAD = "AP spread"


def format_table(evaluations: Sequence[Evaluation]) -> str:
    """One row per evaluation (a leaderboard when there are several models or templates): model,
    mode, template, queries, every overall figure, the mean AP spread of its paraphrase groups (when
    the dataset has any), images indexed a second and ms a text query."""
    if not evaluations:
        return ""
    columns = list(next((e.overall() for e in evaluations if e.queries), {}))
    robust = any(e.paraphrases for e in evaluations)
    width = max(12, *(len(printable(e.model)) for e in evaluations))
    header = (
        f"{'model':<{width}} {'mode':<12} {'template':<16} {'queries':>7} "
        + " ".join(f"{c:>6}" for c in columns)
        + (f" {'spread':>6}" if robust else "")
        + f" {'img/s':>7} {'q ms':>6}"
    )
    lines = [header, "-" * len(header)]
    for ev in evaluations:
        overall = ev.overall()
        template = printable(ev.template or "—")
        cells = " ".join(f"{overall.get(c, 0.0):>6.3f}" for c in columns)
        if robust:
            cells += f" {summary(ev.paraphrases)[SPREAD]:>6.3f}" if ev.paraphrases else f" {'—':>6}"
        speed = f"{ev.images_per_s:>7.1f}" if ev.images_per_s is not None else f"{'—':>7}"
        query_ms = f"{ev.query_ms:>6.1f}" if ev.query_ms is not None else f"{'—':>6}"
        row = f"{printable(ev.model):<{width}} {ev.mode:<12} {template[:16]:<16} {len(ev.queries):>7}"
        lines.append(f"{row} {cells} {speed} {query_ms}")
    return "\n".join(lines)


def format_per_query(evaluation: Evaluation, k: int) -> str:
    """The text queries, worst first: where the model struggles."""
    rows = sorted(evaluation.queries, key=lambda q: (q.average_precision, q.query))
    lines = [f"{'query':<32} {'P@' + str(k):>6} {'R@' + str(k):>6} {'AP':>6} {'RR':>6}"]
    lines += [
        f"{printable(q.query)[:32]:<32} {q.precision[k]:>6.3f} {q.recall[k]:>6.3f} "
        f"{q.average_precision:>6.3f} {q.reciprocal_rank:>6.3f}"
        for q in rows
    ]
    return "\n".join(lines)


def format_robustness(groups: Sequence[GroupRobustness], n: int = 10) -> str:
    """The `n` least robust groups of paraphrases: mean, min and spread of AP, top-K overlap, and the
    wordings from best to worst."""
    if not groups:
        return ""
    k = groups[0].k
    lines = [f"{'group':<24} {'mean':>6} {'min':>6} {'spread':>6} {'ov@' + str(k):>6}  wordings, best first"]
    for g in least_robust(groups, n):
        ranked = sorted(zip(g.average_precisions, g.queries), key=lambda pair: -pair[0])
        wordings = "; ".join(f"{printable(q)} {ap:.2f}" for ap, q in ranked)
        lines.append(
            f"{printable(g.group)[:24]:<24} {g.mean_ap:>6.3f} {g.min_ap:>6.3f} {g.spread:>6.3f} {g.overlap:>6.3f}  {wordings}"
        )
    return "\n".join(lines)


def evaluation_document(evaluation: Evaluation, per_query: bool = True) -> dict[str, Any]:
    """One evaluation as JSON: its overall figures and robustness, with `per_query` every query and group."""
    document: dict[str, Any] = {
        "model": evaluation.model,
        "mode": evaluation.mode,
        "template": evaluation.template,
        "split": evaluation.split,
        "images_per_s": evaluation.images_per_s,
        "query_ms": evaluation.query_ms,
        "queries": len(evaluation.queries),
        "overall": evaluation.overall(),
        "robustness": summary(evaluation.paraphrases) if evaluation.paraphrases else None,
    }
    if per_query:
        ks = evaluation.ks
        document["per_query"] = [
            {
                "query": q.query,
                "relevant": q.relevant,
                **{f"P@{k}": q.precision[k] for k in ks},
                **{f"R@{k}": q.recall[k] for k in ks},
                "AP": q.average_precision,
                "RR": q.reciprocal_rank,
            }
            for q in evaluation.queries
        ]
        document["paraphrase_groups"] = [g.as_dict() for g in least_robust(evaluation.paraphrases)]
    return document


def leaderboard_rows(evaluations: Sequence[Evaluation]) -> list[dict[str, Any]]:
    """The leaderboard as rows (the Evaluate page's table): what `format_table` prints, with the
    paraphrase robustness of each row (mean and min AP, spread, top-K overlap) where it has groups."""
    rows = []
    for ev in evaluations:
        robustness = summary(ev.paraphrases) if ev.paraphrases else {}
        rows.append({
            "model": ev.model, "mode": ev.mode, "template": ev.template or "—", "queries": len(ev.queries),
            **ev.overall(),
            **{f"paraphrase {name}": value for name, value in robustness.items() if name != "groups"},
            "images/s": ev.images_per_s, "ms/query": ev.query_ms,
        })
    return rows
