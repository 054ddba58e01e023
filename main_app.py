"""The Streamlit app: `streamlit run main_app.py` serves Search (the default page) and Index.

Pages are thin: everything they do goes through the one cached Engine (see webui.py).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import webui
from embedder.engine import Engine
from embedder.errors import ImageError
from embedder.images import bytes_hash, decode
from embedder.search import DEFAULT_TEMPLATE, Result, Term, apply_template

PAGE_SIZES = [4, 8, 12, 16, 20, 24, 32, 40, 48, 64]
QUERY = "search_query"  # what is being searched: text, an example image or a stored image
RESULTS = "search_results"  # the hits shown for it, and whether there are more
PAGES = "search_pages"  # how many pages "Show more" has asked for
SEEN_UPLOAD = "search_seen_upload"  # the example image already turned into a query
KEEP = "session"  # inputs keep their values while the person is on another page


def _set_query(**query: Any) -> None:
    st.session_state[QUERY] = query
    st.session_state[PAGES] = 1


def _more_like(result: Result) -> None:
    _set_query(kind="like", point_id=result.id, label=result.name, key=("like", result.id))


def _show_more() -> None:
    st.session_state[PAGES] = st.session_state.get(PAGES, 1) + 1


def _clear() -> None:
    st.session_state.pop(QUERY, None)
    st.session_state.pop(RESULTS, None)


def _options() -> tuple[int, float | None, str | None]:
    """Search options, in the sidebar: page size, minimum score, prompt template."""
    with st.sidebar:
        st.header("Search options")
        top_k = st.select_slider("Results per page", PAGE_SIZES, value=12, key="search-top-k", persist_state=KEEP)
        min_score = st.slider(
            "Minimum score",
            0.0,
            1.0,
            0.0,
            0.01,
            key="search-min-score",
            help="Hide images whose cosine similarity to the query is lower. 0 shows everything.",
            persist_state=KEEP,
        )
        use_template = st.toggle(
            "Prompt template",
            value=True,
            key="search-use-template",
            help="Wrap text queries in a sentence, as CLIP was trained on captions: `dog` → `a photo of dog`.",
            persist_state=KEEP,
        )
        template = st.text_input(
            "Template",
            DEFAULT_TEMPLATE,
            key="search-template",
            disabled=not use_template,
            help="`{}` is your query.",
            persist_state=KEEP,
        )
        st.divider()
    return top_k, (min_score or None), (template.strip() or None) if use_template else None


def _fetch(
    engine: Engine, query: dict, limit: int, offset: int, min_score: float | None, template: str | None
) -> list[Result]:
    searcher = engine.searcher
    if query["kind"] == "text":
        return searcher.by_text(query["text"], limit=limit, offset=offset, min_score=min_score, template=template)
    if query["kind"] == "like":
        return searcher.like(query["point_id"], limit=limit, offset=offset, min_score=min_score)
    return searcher.by_vector(query["vector"], limit=limit, offset=offset, min_score=min_score)


def _results(
    engine: Engine, query: dict, top_k: int, min_score: float | None, template: str | None, count: int
) -> tuple[list[Result], bool]:
    """The hits for `query`: the first page, then one more page per "Show more" (by offset).

    Kept in the session while nothing changes; a new query, option or index size starts over.
    """
    signature = (query["key"], top_k, min_score, template if query["kind"] == "text" else None, count)
    state = st.session_state.get(RESULTS)
    if state is None or state["signature"] != signature:
        hits = _fetch(engine, query, top_k, 0, min_score, template)
        state = {"signature": signature, "hits": hits, "more": len(hits) == top_k}
        st.session_state[RESULTS] = state
        st.session_state[PAGES] = 1
    wanted = st.session_state.get(PAGES, 1) * top_k
    if state["more"] and len(state["hits"]) < wanted:
        missing = wanted - len(state["hits"])
        page = _fetch(engine, query, missing, len(state["hits"]), min_score, template)
        state["more"] = len(page) == missing
        state["hits"] = state["hits"] + page
    return state["hits"][:wanted], state["more"] or len(state["hits"]) > wanted


def _query_inputs(engine: Engine) -> None:
    """The text box (Enter searches) and the example-image uploader; either sets the query."""
    by_text, by_image = st.tabs(["Describe it", "Search with an image"])
    with by_text:
        with st.form("search-form", border=False):
            text_col, button_col = st.columns([6, 1], vertical_alignment="bottom")
            text = text_col.text_input(
                "What are you looking for?",
                key="search-text",
                persist_state=KEEP,
                placeholder="a red bicycle against a wall · a dog on the beach · a small blue square",
            )
            submitted = button_col.form_submit_button(
                "Search", type="primary", icon=":material/search:", width="stretch"
            )
        if submitted:
            if text.strip():
                _set_query(kind="text", text=text.strip(), label=text.strip(), key=("text", text.strip()))
            else:
                st.warning("Type what you are looking for first.")
    with by_image:
        upload = st.file_uploader(
            "An example image: find pictures that look like it",
            type=webui.UPLOAD_TYPES,
            key="search-image",
            max_upload_size=engine.settings.max_upload_mb,
        )
        if upload is None:
            st.session_state.pop(SEEN_UPLOAD, None)  # the same picture again is a new search
        else:
            data = upload.getvalue()
            digest = bytes_hash(data)
            if st.session_state.get(SEEN_UPLOAD) != digest:
                try:
                    decoded = decode(data, engine.settings.max_image_pixels, min_side=engine.encoder.image_size)
                except ImageError as exc:
                    st.error(webui.literal(f"{upload.name} cannot be used: {exc}"), icon=":material/broken_image:")
                else:
                    st.session_state[SEEN_UPLOAD] = digest
                    with webui.errors_as_messages(engine.settings):
                        vector = engine.searcher.compose([Term(image=decoded.image)])
                    _set_query(kind="image", vector=vector, label=upload.name, key=("image", digest))


def _describe(query: dict, template: str | None, shown: int) -> None:
    if query["kind"] == "text":
        what = f"“{webui.literal(query['text'])}”"
        searched = apply_template(query["text"], template)
        note = f" · searched as “{webui.literal(searched)}”" if searched != query["text"] else ""
    elif query["kind"] == "like":
        what, note = f"images like {webui.literal(query['label'])}", ""
    else:
        what, note = f"images like your picture {webui.literal(query['label'])}", ""
    head, clear = st.columns([6, 1], vertical_alignment="center")
    head.markdown(f"**{shown} result{'s' if shown != 1 else ''}** for {what}{note}")
    clear.button("Clear", key="search-clear", on_click=_clear, icon=":material/close:", width="stretch")


def search_page() -> None:
    st.title("Search your images", anchor=False)
    engine = webui.get_engine()
    top_k, min_score, template = _options()
    info = webui.sidebar_info(engine)

    if info["images"] == 0:
        st.info(
            "Nothing is indexed yet. Add some images first, then come back to search them.", icon=":material/inbox:"
        )
        st.page_link(INDEX_PAGE, label="Go to the Index page", icon=":material/add_photo_alternate:")
        return

    _query_inputs(engine)
    query = st.session_state.get(QUERY)
    if query is None:
        st.caption(
            f"{info['images']:,} images are ready. Describe a picture in a few words and press Enter, "
            "or search with an example image."
        )
        return

    with webui.errors_as_messages(engine.settings):
        hits, more = _results(engine, query, top_k, min_score, template, info["images"])
    _describe(query, template, len(hits))
    if not hits:
        if min_score:
            st.info(
                f"No image scores above the minimum score of {min_score:.2f}. Lower it in the sidebar.",
                icon=":material/search_off:",
            )
        else:
            st.info("No images found.", icon=":material/search_off:")
        return
    webui.result_grid(hits, engine.settings.max_image_pixels, on_like=_more_like)
    if more:
        st.button("Show more", key="search-more", on_click=_show_more, icon=":material/expand_more:")


st.set_page_config(page_title=webui.APP_TITLE, page_icon=":material/image_search:", layout="wide")
SEARCH_PAGE = st.Page(search_page, title="Search", icon=":material/search:", url_path="search", default=True)
INDEX_PAGE = st.Page("main_qdrant.py", title="Index", icon=":material/add_photo_alternate:", url_path="index")
st.navigation([SEARCH_PAGE, INDEX_PAGE]).run()
