"""The Label page: a folder's pictures in a grid, each with captions drafted from what the index knows
(tags, recognised text, the file name) for a person to correct, saved as the label CSV that `eval`,
the Evaluate page and `tune` read. The same core as `embedder label` (`evaluation.labels`).

The captions are one form: typing (Tab moves from one picture's captions to the next) redraws
nothing until Save, which writes the whole CSV at once, or nothing and says why.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from embedder.evaluation.datasets import write_labels
from embedder.evaluation.labels import Draft, Edited, draft_labels, edited_rows
from embedder.media.excludes import Excludes
from embedder.paths import typed_path
from embedder_ui import resources, widgets
from embedder_ui.format import literal

DRAFTS = "label_drafts"  # {"folder": str, "drafts": [Draft], "generation": int}
SAVED = "label_saved"  # the CSV this session saved last (the Evaluate page starts from it)
MAX_PICTURES = 300  # drawn at once; a larger folder is labelled with `embedder label`, then edited as a CSV
CSV_NAME = "labels.csv"


def _draft(engine, folder: Path) -> None:
    """Draft every picture of `folder` (the index's tags and text where it knows the picture)."""
    drafts = draft_labels(folder, engine.store, Excludes(engine.settings.exclude))
    generation = st.session_state.get(DRAFTS, {}).get("generation", 0) + 1  # fresh widgets for fresh drafts
    st.session_state[DRAFTS] = {"folder": str(folder), "drafts": drafts, "generation": generation}


def _picture(draft: Draft, i: int, generation: int, max_pixels: int) -> None:
    """One picture: its thumbnail and name, its captions (one a line) and their group."""
    with st.container(border=True):
        picture = widgets.thumbnail(draft.path, max_pixels)
        if isinstance(picture, bytes):
            st.image(picture, width="stretch")
        else:
            st.warning(f"No preview: {literal(picture)}", icon=":material/broken_image:")
        st.caption(literal(Path(draft.path).name) + ("" if draft.indexed else " · not indexed yet"))
        st.text_area(
            "Captions, one a line", "\n".join(draft.captions), key=f"label-captions-{generation}-{i}", height=90,
            help="Each line is one caption (a query that should find this picture). Leave it empty to skip the picture.",
        )
        st.text_input(
            "Paraphrase group", key=f"label-group-{generation}-{i}", placeholder="optional",
            help="Captions that say the same thing in other words share a group name: eval measures how much "
            "the wording matters for each group.",
        )


def _edited(drafts: list[Draft], generation: int) -> list[Edited]:
    state = st.session_state
    return [
        Edited(d.path, state.get(f"label-captions-{generation}-{i}", ""), state.get(f"label-group-{generation}-{i}", ""))
        for i, d in enumerate(drafts)
    ]


def render() -> None:
    st.title("Label pictures", anchor=False)
    st.caption(
        "Write what each picture shows, the way you would search for it: these captions measure how well the "
        "model finds your pictures (Evaluate) and teach it your own words (embedder tune). Drafts come from the "
        "tags and text the index found and from the file names; correct them, add other wordings on new lines."
    )
    engine = resources.get_engine()
    settings = engine.settings
    resources.sidebar_info(engine)

    typed = st.text_input(
        "Folder of pictures", key="label-folder", persist_state="session", placeholder="/home/me/Pictures/family",
        help="A folder on the machine running the app (with its subfolders). Index it first for better drafts.",
    )
    if st.button("Draft captions", key="label-draft", icon=":material/edit_note:", type="primary"):
        folder = typed_path(typed.strip()) if typed.strip() else None
        if folder is None or not folder.is_dir():
            st.warning("Enter the folder of pictures to label: " + (literal(typed) if typed.strip() else "none yet"))
        else:
            with widgets.errors_as_messages(settings):
                _draft(engine, folder)

    drafted = st.session_state.get(DRAFTS)
    if not drafted:
        return
    drafts: list[Draft] = drafted["drafts"]
    folder = Path(drafted["folder"])
    if not drafts:
        st.info(f"{literal(drafted['folder'])} holds no pictures to label.")
        return
    if len(drafts) > MAX_PICTURES:
        st.warning(
            f"{len(drafts):,} pictures: the first {MAX_PICTURES} are shown and saved. For the whole folder, "
            f"draft a CSV with `embedder label FOLDER --out labels.csv` and edit it in a spreadsheet."
        )
        drafts = drafts[:MAX_PICTURES]
    unknown = sum(not d.indexed for d in drafts)
    st.caption(
        f"{len(drafts)} pictures in {literal(drafted['folder'])}"
        + (f"; {unknown} not in the index yet (drafted from their names only)" if unknown else "")
    )
    generation = drafted["generation"]
    with st.form("label-form", border=False, enter_to_submit=False):
        for start in range(0, len(drafts), widgets.GRID_COLUMNS):
            for offset, column in enumerate(st.columns(widgets.GRID_COLUMNS)):
                if start + offset < len(drafts):
                    with column:
                        _picture(drafts[start + offset], start + offset, generation, settings.max_image_pixels)
        out = st.text_input(
            "Save as", str(folder / CSV_NAME), key=f"label-out-{generation}",
            help="The label CSV (path,caption,group), paths relative to it.",
        )
        force = st.checkbox("Replace that file if it exists", key=f"label-force-{generation}")
        save = st.form_submit_button("Save labels", type="primary", icon=":material/save:", key="label-save")
    if save:
        with widgets.errors_as_messages(settings):
            target = typed_path(out.strip() or str(folder / CSV_NAME))
            rows = edited_rows(_edited(drafts, generation), target)
            written = write_labels(target, rows, force=force)
        st.session_state[SAVED] = str(written)
        captioned = sum(1 for r in rows if r.caption)
        st.success(f"Saved {captioned} captions of {len(drafts)} pictures.", icon=":material/check_circle:")
        st.code(str(written), language=None)
        st.caption("Next: the Evaluate page measures the model on them (it starts from this file).")
