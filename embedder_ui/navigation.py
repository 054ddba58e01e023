"""The app's pages and the navigation between them (`main_app.py` runs this)."""

from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from embedder_ui import widgets

_PAGES: dict[str, StreamlitPage] = {}


def page(name: str) -> StreamlitPage:
    """A page by name ("search", "duplicates", "index", "label", "evaluate"), for links between pages."""
    return _PAGES[name]


def run() -> None:
    """Draw the page the browser asked for; Search is the default."""
    from embedder_ui.pages import duplicates, evaluate, index, label, search

    st.set_page_config(page_title=widgets.APP_TITLE, page_icon=":material/image_search:", layout="wide")
    _PAGES.update(
        search=st.Page(search.render, title="Search", icon=":material/search:", url_path="search", default=True),
        duplicates=st.Page(duplicates.render, title="Duplicates", icon=":material/content_copy:", url_path="duplicates"),
        index=st.Page(index.render, title="Index", icon=":material/add_photo_alternate:", url_path="index"),
        label=st.Page(label.render, title="Label", icon=":material/edit_note:", url_path="label"),
        evaluate=st.Page(evaluate.render, title="Evaluate", icon=":material/leaderboard:", url_path="evaluate"),
    )
    st.navigation(list(_PAGES.values())).run()
