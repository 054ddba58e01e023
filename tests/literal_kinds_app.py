"""A Streamlit script for test_browser_privacy.py: user text in every kind of element the pages use.

Each text of PROBE_TEXTS (JSON) is shown in each widget kind, in a container keyed
`kind-<kind>-<n>`: through `format.literal` where Streamlit renders Markdown, as it is where it
shows plain text. `?raw=1` shows the texts without `literal` in a caption (the test's control).
"""

import json
import os

import streamlit as st

from embedder_ui.format import literal

TEXTS = json.loads(os.environ["PROBE_TEXTS"])
RAW = st.query_params.get("raw") == "1"

st.set_page_config(page_title="literal kinds")
for n, text in enumerate(TEXTS):
    shown = text if RAW else literal(text)
    if RAW:
        with st.container(key=f"kind-raw-{n}"):
            st.caption(shown)
        continue
    markdown_kinds = {
        "markdown": lambda: st.markdown(shown),
        "caption": lambda: st.caption(shown),
        "write": lambda: st.write(shown),
        "info": lambda: st.info(shown),
        "warning": lambda: st.warning(shown),
        "error": lambda: st.error(shown),
        "success": lambda: st.success(shown),
        "subheader": lambda: st.subheader(shown, anchor=False),
        "metric": lambda: st.metric(shown, shown),
        "progress": lambda: st.progress(0.5, text=shown),
        "radio": lambda: st.radio(shown, [0], format_func=lambda _: shown, key=f"radio-{n}"),
        "checkbox": lambda: st.checkbox(shown, key=f"checkbox-{n}"),
        "toggle": lambda: st.toggle(shown, key=f"toggle-{n}"),
        "button": lambda: st.button(shown, key=f"button-{n}"),
        "download": lambda: st.download_button(shown, b"x", key=f"download-{n}", on_click="ignore"),
        "expander": lambda: st.expander(shown).write("inside"),
        "tabs": lambda: st.tabs([shown, "other"]),
        "popover": lambda: st.popover(shown).write("inside"),
        "status": lambda: st.status(shown, state="complete").write("inside"),
        "select_slider": lambda: st.select_slider("s", [0, 1], format_func=lambda _: shown, key=f"ss-{n}"),
        "pills": lambda: st.pills("p", [0], format_func=lambda _: shown, key=f"pills-{n}"),
        "segmented": lambda: st.segmented_control("c", [0], format_func=lambda _: shown, key=f"seg-{n}"),
        "text_input_label": lambda: st.text_input(shown, key=f"label-{n}"),
        "uploader_label": lambda: st.file_uploader(shown, key=f"upload-{n}"),
        "help": lambda: st.button(f"help-{n}", help=shown, key=f"help-{n}"),
    }
    plain_kinds = {  # shown as plain text by Streamlit: given as it is
        "selectbox": lambda: st.selectbox("s", [0], format_func=lambda _: text, key=f"selectbox-{n}"),
        "multiselect": lambda: st.multiselect("m", [0, 1], default=[0], format_func=lambda i: f"{text} {i}" if i else text, key=f"ms-{n}"),
        "text_input_value": lambda: st.text_input("value", text, key=f"value-{n}"),
        "code": lambda: st.code(text, language=None),
        "text": lambda: st.text(text),
    }
    for kind, draw in {**markdown_kinds, **plain_kinds}.items():
        with st.container(key=f"kind-{kind}-{n}"):
            draw()
    if st.button(f"dialog-{n}", key=f"dialog-{n}"):
        st.dialog(shown)(lambda: st.write("inside"))()
    if st.button(f"toast-{n}", key=f"toast-{n}"):
        st.toast(shown)
