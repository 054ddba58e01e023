"""The app's pages and the navigation between them (`main_app.py` runs this)."""

from __future__ import annotations

import streamlit as st

from embedder_ui import links, widgets
from embedder_ui.pages import duplicates, evaluate, index, label, search


def run() -> None:
    """Draw the page the browser asked for; Search is the default."""
    widgets.page_config(widgets.APP_TITLE)
    pages = links.register({
        "search": st.Page(search.render, title="Search", icon=":material/search:", url_path="search", default=True),
        "duplicates": st.Page(
            duplicates.render, title="Duplicates", icon=":material/content_copy:", url_path="duplicates"
        ),
        "index": st.Page(index.render, title="Index", icon=":material/add_photo_alternate:", url_path="index"),
        "label": st.Page(label.render, title="Label", icon=":material/edit_note:", url_path="label"),
        "evaluate": st.Page(evaluate.render, title="Evaluate", icon=":material/leaderboard:", url_path="evaluate"),
    })
    st.navigation(pages).run()
