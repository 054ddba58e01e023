"""Switching the app between collections (a tuned model's and the old one), on the Index page.

The same core as `embedder collections` and `embedder use` (`store.catalog`, `store.switching`):
the settings file is pointed at the chosen collection and the model that made it, and the app
reopens with them; switching back is one click. Nothing is deleted or re-indexed.
"""

from __future__ import annotations

import streamlit as st

from embedder.engine import Engine
from embedder.errors import EmbedderError
from embedder.store.catalog import list_collections
from embedder.store.switching import switch_collection
from embedder_ui.format import literal

SWITCHED = "switcher_last"  # what the last switch in this session wrote: {"previous", "collection", "file", "overridden"}


def _switch(engine: Engine, collection: str, model: str | None) -> None:
    done = switch_collection(engine.settings, collection, model)
    st.session_state[SWITCHED] = {
        "previous": done.previous, "collection": done.collection, "file": str(done.settings_file),
        "overridden": list(done.overridden),
    }


def _switched(engine: Engine, collection: str, model: str | None) -> bool:
    """Switch, or say in one line why not (the rest of the Index page is still drawn)."""
    try:
        _switch(engine, collection, model)
    except EmbedderError as exc:
        st.error(literal(str(exc)), icon=":material/error:")
        return False
    return True


def collections_panel(engine: Engine) -> None:
    """The store's collections (name · model · images, the one in use marked), a switch to another
    one, and back."""
    settings = engine.settings
    try:
        found = list_collections(settings, engine.store)
    except EmbedderError as exc:  # the Index page goes on: its jobs panel comes after this section
        st.warning(literal(str(exc)), icon=":material/warning:")
        return
    for c in found:  # lines, not a table: the Index page's tables are its reports
        line = f"{literal(c.name)} · {literal(c.model or '—')} · {c.images:,} images"
        st.caption(line + " · **in use**" if c.current else line)
    last = st.session_state.get(SWITCHED)
    if last and last["collection"] == settings.collection and last["previous"] != settings.collection:
        st.success(
            f"Now using {literal(last['collection'])} (written to {literal(last['file'])}); "
            f"switch back to {literal(last['previous'])} with the button below.",
            icon=":material/swap_horiz:",
        )
        for var in last["overridden"]:
            st.warning(f"{var} is set in the environment, which wins over the settings file: unset it.")
        if st.button("Switch back", key="switch-back", icon=":material/undo:") and _switched(engine, last["previous"], None):
            st.rerun()
    others = [c.name for c in found if not c.current]
    with st.form("switch-form", border=False):
        choice_col, new_col, model_col = st.columns(3)
        chosen = choice_col.selectbox(
            "Collection", others, key="switch-collection", index=None, placeholder="Choose one",
        )
        new = new_col.text_input(
            "Or a new collection", key="switch-new", placeholder="family-tuned",
            help="Index into a new collection with a tuned model: name it and the model's folder, switch, then "
            "index. The collection in use now stays as it is.",
        )
        model = model_col.text_input(
            "Model (for a new collection or a model folder)", key="switch-model",
            placeholder="/home/me/models/family-tuned",
        )
        go = st.form_submit_button("Use this collection", icon=":material/swap_horiz:", key="switch-button")
    choice = new.strip() or chosen
    if go:
        if not choice:
            st.warning("Choose the collection to use first.")
        elif _switched(engine, choice, model.strip() or None):
            st.rerun()
