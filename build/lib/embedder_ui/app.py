"""The app's script for `streamlit run` when installed (`embedder app`); `main_app.py` is the same in a checkout."""

from embedder_ui import navigation

navigation.run()
