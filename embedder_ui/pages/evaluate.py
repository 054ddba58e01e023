"""The Evaluate page: how well the model (and any other to compare, a tuned one say) finds the pictures
of a label CSV, as the leaderboard with paraphrase robustness and the plots `eval --plot` writes.

The same core as `embedder eval`: the pictures are indexed into a throw-away store of their own
(the app's collection is never touched), with the app's loaded model, then each other model is
loaded in turn. A split (`--split`) measures only pictures a tuned model never trained on.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from embedder.evaluation.evaluate import evaluate_in_scratch, overlap_k
from embedder.evaluation.leaderboard import leaderboard_rows
from embedder.evaluation.plots import evaluation_figures, png
from embedder.evaluation.robustness import least_robust, summary
from embedder.evaluation.splits import SPLITS, labelled
from embedder.paths import typed_path
from embedder.query.terms import DEFAULT_TEMPLATE
from embedder_ui import resources, widgets
from embedder_ui.format import literal
from embedder_ui.pages.label import SAVED

RESULT = "evaluate_result"
KS = (1, 5, 10)
ALL = "all pictures"
PLOT_TITLES = {
    "leaderboard.png": "Leaderboard",
    "precision_at_k.png": "Precision at K",
    "recall_at_k.png": "Recall at K",
    "per_query_ap.png": "Average precision per query",
    "paraphrase_spread.png": "Paraphrase spread",
}


def _measure(engine, source: str, split: str | None, seed: int, models: list[str], templates: bool) -> dict:
    """Every model on the dataset (the app's first, with its loaded encoder); what the page shows."""
    dataset = labelled(typed_path(source), split, seed)
    wordings = [None, DEFAULT_TEMPLATE] if templates else [None]
    measured = [evaluate_in_scratch(engine.settings, dataset, KS, wordings, split=split, encoder=engine.encoder)]
    for model in models:
        measured.append(evaluate_in_scratch(replace(engine.settings, model=model), dataset, KS, wordings, split=split))
    evaluations = [e for m in measured for e in m.evaluations]
    failed = {f.path: f.reason for m in measured for f in m.report.failed}
    figures = evaluation_figures(evaluations, measured[0].templates)  # drawn once, not on every rerun
    return {
        "dataset": str(dataset.source or dataset.root), "split": split, "images": len(dataset.labels),
        "evaluations": evaluations, "templates": {m.evaluations[0].model: m.templates for m in measured if m.templates},
        "failed": failed, "plots": {name: png(figure) for name, figure in figures.items()},
    }


def _show(result: dict) -> None:
    evaluations = result["evaluations"]
    part = f", {result['split']} split" if result["split"] else ""
    st.subheader("Leaderboard", anchor=False)
    st.caption(f"{result['images']} pictures{part} of {literal(result['dataset'])}")
    rows = leaderboard_rows(evaluations)
    numeric = {name for row in rows for name, value in row.items() if isinstance(value, float)}
    st.dataframe(rows, hide_index=True, width="stretch", column_config={
        name: st.column_config.NumberColumn(format="%.1f" if name in ("images/s", "ms/query") else "%.3f")
        for name in numeric
    })
    for path, reason in result["failed"].items():
        st.warning(literal(f"skipped: {path}: {reason}"), icon=":material/warning:")
    k = overlap_k(KS)
    for model, groups in result["templates"].items():
        robustness = summary(groups)
        st.caption(
            f"Prompt templates as paraphrases, {literal(model)}: AP spread {robustness['AP spread']:.3f}, "
            f"top-{k} overlap {robustness[f'overlap@{k}']:.3f} over {robustness['groups']} labels"
        )
    robust = [e for e in evaluations if e.paraphrases]
    if robust:
        st.subheader("Least robust paraphrases", anchor=False)
        for ev in robust:
            st.caption(literal(f"{ev.model}, template {ev.template or '—'}"))
            st.dataframe(
                [{**g.as_dict(), "queries": "; ".join(g.queries), "AP": "; ".join(f"{a:.2f}" for a in g.average_precisions)}
                 for g in least_robust(ev.paraphrases, 10)],
                hide_index=True, width="stretch",
            )
    st.subheader("Plots", anchor=False)
    plots = list(result["plots"].items())
    for start in range(0, len(plots), 2):
        for column, (name, picture) in zip(st.columns(2), plots[start : start + 2]):
            column.image(picture, caption=PLOT_TITLES.get(name, name), width="stretch")


def render() -> None:
    st.title("Evaluate", anchor=False)
    st.caption(
        "How well the model finds your labelled pictures: precision and recall at K, mAP, and how much the "
        "wording matters (captions in one paraphrase group, prompt templates). Compare a tuned model with the "
        "base on the test split: pictures it never trained on."
    )
    engine = resources.get_engine()
    settings = engine.settings
    resources.sidebar_info(engine)

    if SAVED in st.session_state and "evaluate-dataset" not in st.session_state:
        st.session_state["evaluate-dataset"] = st.session_state[SAVED]
    with st.form("evaluate-form", border=False):
        source = st.text_input(
            "Labelled pictures", key="evaluate-dataset", placeholder="/home/me/Pictures/family/labels.csv",
            help="A label CSV (path,caption[,group]; the Label page writes one) or a folder of class folders.",
        )
        split_col, seed_col = st.columns(2)
        split = split_col.selectbox(
            "Pictures to measure on", [ALL, *SPLITS], key="evaluate-split",
            help="A split is made once, beside the dataset, and shared with embedder tune.",
        )
        seed = seed_col.number_input("Split seed", 0, 2**31 - 1, 0, key="evaluate-seed")
        models = st.text_area(
            "Other models to compare, one a line", key="evaluate-models", height=68,
            placeholder="/home/me/models/family-tuned",
            help="A model name or folder (e.g. what embedder tune wrote). The app's model "
            f"({literal(settings.model)}) comes first.",
        )
        templates = st.checkbox(
            f'Prompt templates as paraphrases (also "{DEFAULT_TEMPLATE}")', key="evaluate-templates",
        )
        go = st.form_submit_button("Evaluate", type="primary", icon=":material/leaderboard:", key="evaluate-button")
    if go:
        if not source.strip():
            st.warning("Enter a label CSV or a folder of class folders first.")
        else:
            others = [line.strip() for line in models.splitlines() if line.strip()]
            with st.spinner("Indexing the pictures and searching with every caption…"), widgets.errors_as_messages(settings):
                st.session_state[RESULT] = _measure(
                    engine, source.strip(), None if split == ALL else split, int(seed), others, templates,
                )
    if RESULT in st.session_state:
        _show(st.session_state[RESULT])
