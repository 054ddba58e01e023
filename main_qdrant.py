"""The Index page on its own: `streamlit run main_qdrant.py` (in the app it is one of three pages)."""

from embedder_ui import widgets
from embedder_ui.pages import index

widgets.page_config(f"Index · {widgets.APP_TITLE}")
index.render()
