"""The Index page on its own: `streamlit run main_qdrant.py` (in the app it is one of three pages)."""

import streamlit as st

from embedder_ui import widgets
from embedder_ui.pages import index

st.set_page_config(page_title=f"Index · {widgets.APP_TITLE}", page_icon=":material/add_photo_alternate:", layout="wide")
index.render()
