"""The app's pages by name, for links between them (`st.page_link(links.page("index"))`).

`navigation` makes the pages and registers them here; the pages only look them up, so neither
imports the other.
"""

from __future__ import annotations

from streamlit.navigation.page import StreamlitPage

_PAGES: dict[str, StreamlitPage] = {}


def register(pages: dict[str, StreamlitPage]) -> list[StreamlitPage]:
    """Make `pages` ("search", "duplicates", "index" → page) the ones links go to; returns them in order."""
    _PAGES.clear()
    _PAGES.update(pages)
    return list(_PAGES.values())


def page(name: str) -> StreamlitPage:
    """A page by name ("search", "duplicates", "index"), for links between pages."""
    return _PAGES[name]
