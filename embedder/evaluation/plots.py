"""Evaluations as pictures: the leaderboard, P@K and R@K curves per model, AP per query, paraphrase spread.

Each `*_figure` function returns a matplotlib `Figure` (made without pyplot, so pages may draw them
from any thread); `png(figure)` gives its PNG bytes and `write_plots` writes them all into a folder
(`eval --plot DIR`). Queries and model names are user text: drawn literally (no mathtext, so a `$`
in a caption stays a `$`). No torch.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

from embedder.durable import write_bytes
from embedder.errors import EmbedderError
from embedder.evaluation.metrics import TEXT_TO_IMAGE, Evaluation
from embedder.evaluation.robustness import least_robust, summary

log = logging.getLogger(__name__)

MAX_BARS = 40  # queries or groups in one bar chart: the worst ones when there are more
DPI = 100
PLOT_NAMES = ("leaderboard.png", "precision_at_k.png", "recall_at_k.png", "per_query_ap.png", "paraphrase_spread.png")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _literal(*texts) -> None:
    """Matplotlib reads `$…$` as maths: every text a user controls is drawn as it is."""
    for text in texts:
        text.set_parse_math(False)


def row_name(evaluation: Evaluation) -> str:
    """A leaderboard row's name: model, mode and template."""
    template = f" · {evaluation.template}" if evaluation.template else ""
    return f"{evaluation.model} · {evaluation.mode}{template}"


def leaderboard_figure(evaluations: Sequence[Evaluation]):
    """mAP and MRR per leaderboard row (and the mean AP spread of its paraphrases, where it has any)."""
    rows = [e for e in evaluations if e.queries]
    figure = _figure(9, 1.2 + 0.45 * max(1, len(rows)))
    ax = figure.add_subplot()
    names = [row_name(e) for e in rows]
    positions = list(range(len(rows)))
    measures = [("mAP", "mAP"), ("MRR", "MRR")]
    if any(e.paraphrases for e in rows):
        measures.append(("AP spread (lower is better)", None))
    height = 0.8 / len(measures)
    for i, (label, key) in enumerate(measures):
        values = [
            e.overall()[key] if key else (summary(e.paraphrases)["AP spread"] if e.paraphrases else 0.0) for e in rows
        ]
        bars = ax.barh([p + i * height for p in positions], values, height=height, label=label)
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=8)
    ax.set_yticks([p + height * (len(measures) - 1) / 2 for p in positions], names)
    _literal(*ax.get_yticklabels())
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("score")
    ax.set_title("Leaderboard")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure


def curve_figure(evaluations: Sequence[Evaluation], measure: str = "P"):
    """P@K (`measure="P"`) or R@K (`"R"`) against K, one line per model, mode and template."""
    figure = _figure(7, 4.5)
    ax = figure.add_subplot()
    for evaluation in (e for e in evaluations if e.queries):
        overall = evaluation.overall()
        ks = list(evaluation.ks)
        ax.plot(ks, [overall[f"{measure}@{k}"] for k in ks], marker="o", label=row_name(evaluation))
    ax.set_xlabel("K (results looked at)")
    ax.set_ylabel(f"{measure}@K")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{'Precision' if measure == 'P' else 'Recall'} at K")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        _literal(*ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8).get_texts())
    return figure


def per_query_figure(evaluation: Evaluation):
    """Average precision of each text query, worst first (the MAX_BARS worst when there are more)."""
    rows = sorted(evaluation.queries, key=lambda q: (q.average_precision, q.query))[:MAX_BARS]
    figure = _figure(8, 1.2 + 0.3 * max(1, len(rows)))
    ax = figure.add_subplot()
    bars = ax.barh(range(len(rows)), [q.average_precision for q in rows], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=7)
    ax.set_yticks(range(len(rows)), [q.query for q in rows])
    _literal(*ax.get_yticklabels(), ax.set_title(f"AP per query, worst first: {row_name(evaluation)}"))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("average precision")
    return figure


def spread_figure(evaluation: Evaluation, groups=None):
    """Each group of paraphrases as a line from its worst to its best AP (a dot per wording), the
    least robust first; `groups` default to the evaluation's own."""
    ranked = least_robust(evaluation.paraphrases if groups is None else groups, MAX_BARS)
    figure = _figure(8, 1.2 + 0.35 * max(1, len(ranked)))
    ax = figure.add_subplot()
    for row, group in enumerate(ranked):
        ax.plot([group.min_ap, group.min_ap + group.spread], [row, row], color="tab:gray", linewidth=2)
        ax.scatter(group.average_precisions, [row] * len(group.average_precisions), color="tab:orange", zorder=3)
        ax.scatter([group.mean_ap], [row], marker="|", s=200, color="black", zorder=4)
    ax.set_yticks(range(len(ranked)), [g.group for g in ranked])
    _literal(*ax.get_yticklabels(), ax.set_title(f"Paraphrase spread (AP of each wording): {row_name(evaluation)}"))
    ax.invert_yaxis()
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("average precision (dots: wordings; bar: mean)")
    if not ranked:
        ax.text(0.5, 0.5, "no groups of paraphrases in this dataset", ha="center", va="center", transform=ax.transAxes)
    return figure


def png(figure) -> bytes:
    """A figure as PNG bytes (what a page shows, or a file holds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def evaluation_figures(evaluations: Sequence[Evaluation], templates=()) -> dict[str, object]:
    """Every figure of a leaderboard, by file name: the leaderboard, P@K and R@K curves, and for the
    first text→image row the AP per query and the paraphrase spread (its groups, else `templates`:
    one group per label across the prompt templates)."""
    figures: dict[str, object] = {
        "leaderboard.png": leaderboard_figure(evaluations),
        "precision_at_k.png": curve_figure(evaluations, "P"),
        "recall_at_k.png": curve_figure(evaluations, "R"),
    }
    text = [e for e in evaluations if e.mode == TEXT_TO_IMAGE and e.queries]
    if text:
        first = text[0]
        figures["per_query_ap.png"] = per_query_figure(first)
        figures["paraphrase_spread.png"] = spread_figure(first, None if first.paraphrases else list(templates))
    return figures


def write_plots(evaluations: Sequence[Evaluation], folder: Path, templates=()) -> list[Path]:
    """Write every figure of `evaluation_figures` as a PNG into `folder` (made if missing), each
    file whole or not at all; the paths written."""
    folder = folder.expanduser()
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in evaluation_figures(evaluations, templates).items():
            write_bytes(folder / name, png(figure))
            written.append(folder / name)
    except OSError as exc:
        raise EmbedderError(f"Cannot write the plots into {folder}: {exc.strerror or exc}") from None
    log.info("wrote %d plots to %s", len(written), folder)
    return written
