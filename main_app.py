"""The Streamlit app: `streamlit run main_app.py` serves Search (the default page), Duplicates and Index.

The pages live in the `embedder_ui` package; everything they do goes through the process's one Engine.
"""

from embedder_ui import navigation

navigation.run()
