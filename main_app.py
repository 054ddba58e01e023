"""The Streamlit app: `streamlit run main_app.py` serves Search (the default page), Duplicates and Index.

Pages are thin: everything they do goes through the one cached Engine (see webui.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import streamlit as st

import webui
from embedder.duplicates import Collapser, near_duplicate_groups
from embedder.engine import Engine
from embedder.errors import ImageError, QueryError
from embedder.images import bytes_hash, decode
from embedder.pager import ResultPages
from embedder.search import DEFAULT_TEMPLATE, Result, Term, apply_template, describe_query, file_types, make_filter
from embedder.store import SearchFilter

PAGE_SIZES = [4, 8, 12, 16, 20, 24, 32, 40, 48, 64]
MAX_WEIGHT = 3.0
TERMS = "search_terms"  # the query: [(uid, Term)], in the order they were added
RESULTS = "search_results"  # the pages of hits for the query as it is, and what they were made for
PAGES = "search_pages"  # how many pages "Show more" has asked for
SEEN_UPLOADS = "search_seen_uploads"  # uploader key → the image already turned into a term
DUPLICATES = "duplicate_groups"  # the last near-duplicate scan and what it was made for
GROUPS_SHOWN = "duplicate_groups_shown"
GROUPS_PER_PAGE = 20
FILTER_KEYS = ("filter-folder", "filter-types", "filter-dates", "filter-min-width", "filter-min-height")
ADD_WORDS = "search-add-text"  # the "Add words" box
NEXT_UID = "search_next_uid"  # terms are numbered, so each keeps its own weight slider
KEEP = "session"  # inputs keep their values while the person is on another page


# --------------------------------------------------------------------------------------------
# The query: terms added, weighted and removed


def _terms() -> list[tuple[int, Term]]:
    return st.session_state.setdefault(TERMS, [])


def _uid() -> int:
    uid = st.session_state.get(NEXT_UID, 1)
    st.session_state[NEXT_UID] = uid + 1
    return uid


def _new_query(term: Term) -> None:
    st.session_state[TERMS] = [(_uid(), term)]
    st.session_state[PAGES] = 1


def _add_term(term: Term) -> None:
    st.session_state[TERMS] = [*_terms(), (_uid(), term)]
    st.session_state[PAGES] = 1


def _add_words(weight: float) -> None:
    words = st.session_state.get(ADD_WORDS, "").strip()
    if words:
        _add_term(Term(text=words, weight=weight))


def _remove_term(uid: int) -> None:
    st.session_state[TERMS] = [(u, t) for u, t in _terms() if u != uid]


def _more_like(result: Result) -> None:
    _new_query(Term(point_id=result.id, label=result.name))


def _add_like(result: Result) -> None:
    _add_term(Term(point_id=result.id, label=result.name))


def _exclude_like(result: Result) -> None:
    _add_term(Term(point_id=result.id, label=result.name, weight=-1.0))


def _show_more() -> None:
    st.session_state[PAGES] = st.session_state.get(PAGES, 1) + 1


def _clear() -> None:
    st.session_state.pop(TERMS, None)
    st.session_state.pop(RESULTS, None)


CARD_ACTIONS = (
    webui.CardAction("like", "Similar", ":material/image_search:", "More like this: a new search with this image", _more_like),
    webui.CardAction("add", "Add", ":material/add_circle:", "Add this image to the query", _add_like),
    webui.CardAction("exclude", "Exclude", ":material/remove_circle:", "Push images like this one down", _exclude_like),
)


def _uploaded_term(engine: Engine, key: str, label: str) -> Term | None:
    """An uploader whose picture becomes a query term, once per picture (None until then)."""
    upload = st.file_uploader(label, type=webui.UPLOAD_TYPES, key=key, max_upload_size=engine.settings.max_upload_mb)
    seen = st.session_state.setdefault(SEEN_UPLOADS, {})
    if upload is None:
        seen.pop(key, None)  # the same picture again is a new term
        return None
    data = upload.getvalue()
    digest = bytes_hash(data)
    if seen.get(key) == digest:
        return None
    try:
        decoded = decode(data, engine.settings.max_image_pixels, min_side=engine.encoder.image_size)
    except ImageError as exc:
        st.error(webui.literal(f"{upload.name} cannot be used: {exc}"), icon=":material/broken_image:")
        return None
    seen[key] = digest
    with webui.errors_as_messages(engine.settings):
        vector = engine.searcher.compose([Term(image=decoded.image)])
    return Term(vector=vector, label=upload.name)


def _query_inputs(engine: Engine) -> None:
    """The text box (Enter searches) and the example-image uploader; either starts a new query."""
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
                _new_query(Term(text=text.strip()))
            else:
                st.warning("Type what you are looking for first.")
    with by_image:
        term = _uploaded_term(engine, "search-image", "An example image: find pictures that look like it")
        if term is not None:
            _new_query(term)


def _term_label(term: Term) -> str:
    if term.text is not None:
        return f":material/text_fields: {webui.literal(term.text)}"
    if term.point_id is not None:
        return f":material/image: like {webui.literal(term.label)}"
    return f":material/upload: your picture {webui.literal(term.label)}"


def _query_editor(engine: Engine) -> None:
    """The query's terms, each with a weight (below 0 pushes away) and a remove button; then ways
    to add words or an image. No syntax to learn: `beach` + 2× `sunset` − `people` is three rows."""
    with st.container(border=True):
        st.markdown("**Your query** · weights above 0 pull results towards a term, below 0 push them away")
        rows = st.container()  # filled last, so a term added below shows in this same run
        with st.form("add-words-form", border=False, clear_on_submit=True):
            text_col, add_col, exclude_col = st.columns([5, 1, 1], vertical_alignment="bottom")
            text_col.text_input("Add words", key=ADD_WORDS, placeholder="at sunset · people (to exclude)")
            add_col.form_submit_button(
                "Add", icon=":material/add:", width="stretch", on_click=_add_words, args=(1.0,)
            )
            exclude_col.form_submit_button(
                "Exclude", icon=":material/remove:", width="stretch", on_click=_add_words, args=(-1.0,)
            )
        with st.expander("Add an example image"):
            term = _uploaded_term(engine, "search-add-image", "A picture whose look the results should share")
            if term is not None:
                _add_term(term)
        with rows:
            for uid, term in _terms():
                _term_row(uid, term)


def _term_row(uid: int, term: Term) -> None:
    """One term: what it is, its weight, and a button that removes it."""
    label_col, weight_col, remove_col = st.columns([5, 4, 1], vertical_alignment="center")
    label_col.markdown(_term_label(term))
    weight = weight_col.slider(
        "Weight", -MAX_WEIGHT, MAX_WEIGHT, float(term.weight), 0.25,
        key=f"term-weight-{uid}", label_visibility="collapsed", format="%+.2f",
    )
    if weight != term.weight:
        st.session_state[TERMS] = [(u, replace(t, weight=weight) if u == uid else t) for u, t in _terms()]
    remove_col.button(
        "", key=f"term-remove-{uid}", icon=":material/close:", help="Remove this term",
        on_click=_remove_term, args=(uid,), type="tertiary",
    )


# --------------------------------------------------------------------------------------------
# Options and filters, in the sidebar


def _options(engine: Engine) -> tuple[int, float | None, str | None, float | None]:
    """Page size, minimum score, prompt template and the near-duplicate collapse threshold (None: off)."""
    with st.sidebar:
        st.header("Search options")
        top_k = st.select_slider("Results per page", PAGE_SIZES, value=12, key="search-top-k", persist_state=KEEP)
        min_score = st.slider(
            "Minimum score", 0.0, 1.0, 0.0, 0.01, key="search-min-score", persist_state=KEEP,
            help="Hide images whose cosine similarity to the query is lower. 0 shows everything.",
        )
        use_template = st.toggle(
            "Prompt template", value=True, key="search-use-template", persist_state=KEEP,
            help="Wrap text queries in a sentence, as CLIP was trained on captions: `dog` → `a photo of dog`.",
        )
        template = st.text_input(
            "Template", DEFAULT_TEMPLATE, key="search-template", disabled=not use_template,
            help="`{}` is your query.", persist_state=KEEP,
        )
        collapse = st.toggle(
            "Hide near-duplicates", value=False, key="search-collapse", persist_state=KEEP,
            help="Show only the best of each set of near-identical images (resized, re-encoded, cropped copies).",
        )
        threshold = _threshold_slider("search-duplicate-threshold", engine, disabled=not collapse)
        st.divider()
    return top_k, (min_score or None), (template.strip() or None) if use_template else None, (
        threshold if collapse else None
    )


def _threshold_slider(key: str, engine: Engine, disabled: bool = False) -> float:
    return st.slider(
        "Near-duplicate similarity", 0.80, 1.0, engine.settings.duplicate_threshold, 0.001, format="%.3f",
        key=key, disabled=disabled, persist_state=KEEP,
        help="Images at least this similar (cosine) count as near-duplicates. DUPLICATE_THRESHOLD sets the default.",
    )


def _clear_filters() -> None:
    for key in FILTER_KEYS:
        st.session_state.pop(key, None)


def _filters(engine: Engine, count: int) -> SearchFilter:
    """Folder, file type, date and size filters, applied inside Qdrant."""
    with st.sidebar:
        st.header("Filters")
        folder = st.selectbox(
            "Folder", webui.indexed_folders(engine, count), index=None, key="filter-folder", persist_state=KEEP,
            placeholder="Every folder", accept_new_options=True,
            help="Only images in this folder or below it. Pick one or type a path.",
        )
        types = st.multiselect(
            "File type", file_types(), key="filter-types", placeholder="Every type", persist_state=KEEP
        )
        dates = st.date_input(
            "Taken between", value=(), min_value=date(1900, 1, 1), key="filter-dates", persist_state=KEEP,
            help="The date in the photo's EXIF data, else the file's modification date. Both days count.",
        )
        width_col, height_col = st.columns(2)
        min_width = width_col.number_input(
            "Min width (px)", 0, 100_000, 0, 100, key="filter-min-width", persist_state=KEEP
        )
        min_height = height_col.number_input(
            "Min height (px)", 0, 100_000, 0, 100, key="filter-min-height", persist_state=KEEP
        )
        after, before = (*dates, None, None)[:2]  # a range: no date, only a start, or both
        where = make_filter(folder, types, after, before, int(min_width), int(min_height))
        if not where.is_empty():
            st.button("Clear filters", key="filter-clear", on_click=_clear_filters, icon=":material/filter_alt_off:")
        st.divider()
    return where


# --------------------------------------------------------------------------------------------
# Results


def _results(
    engine: Engine,
    top_k: int,
    min_score: float | None,
    template: str | None,
    threshold: float | None,
    where: SearchFilter,
    count: int,
) -> tuple[list[Result], bool, int]:
    """The hits for the query: the first page, then one more page per "Show more"; with how many
    near-duplicates were hidden. Kept while nothing changes; any change starts over."""
    terms = [t for _, t in _terms()]
    uses_text = any(t.text is not None for t in terms)
    signature = (
        tuple((uid, t.weight) for uid, t in _terms()), top_k, min_score, template if uses_text else None,
        threshold, where, count,
    )
    state = st.session_state.get(RESULTS)
    if state is None or state["signature"] != signature:
        vector, query_filter = engine.searcher.plan(terms, template, where)

        def fetch(limit: int, offset: int) -> list[Result]:
            return engine.searcher.by_vector(vector, limit, offset, min_score, query_filter)

        collapser = Collapser(engine.store, threshold) if threshold else None
        state = {"signature": signature, "pages": ResultPages(fetch, collapser)}
        st.session_state[RESULTS] = state
        st.session_state[PAGES] = 1
    pages: ResultPages = state["pages"]
    hits, more = pages.first(st.session_state.get(PAGES, 1) * top_k)
    return hits, more, pages.hidden


def _describe(template: str | None, shown: int, hidden: int) -> None:
    terms = [t for _, t in _terms()]
    what = describe_query(terms)
    texts = [t.text for t in terms if t.text is not None and t.weight]
    note = ""
    if len(texts) == 1 and apply_template(texts[0], template) != texts[0]:
        note = f" · searched as “{apply_template(texts[0], template)}”"
    elif texts and template:
        note = f" · words searched as “{apply_template('…', template)}”"
    head, clear = st.columns([6, 1], vertical_alignment="center")
    head.markdown(f"**{shown} result{'s' if shown != 1 else ''}** for {webui.literal(what + note)}")
    clear.button("Clear", key="search-clear", on_click=_clear, icon=":material/close:", width="stretch")
    if hidden:
        st.caption(f"{hidden} near-duplicate{'s' if hidden != 1 else ''} hidden")


def _nothing_found(min_score: float | None, where: SearchFilter) -> None:
    if not where.is_empty():
        st.info("No images match the filters. Loosen them in the sidebar.", icon=":material/filter_alt:")
    elif min_score:
        st.info(
            f"No image scores above the minimum score of {min_score:.2f}. Lower it in the sidebar.",
            icon=":material/search_off:",
        )
    else:
        st.info("No images found.", icon=":material/search_off:")


def search_page() -> None:
    st.title("Search your images", anchor=False)
    engine = webui.get_engine()
    info = webui.index_info(engine)
    if info["images"] == 0:
        webui.sidebar_info(engine, info)
        st.info(
            "Nothing is indexed yet. Add some images first, then come back to search them.", icon=":material/inbox:"
        )
        st.page_link(INDEX_PAGE, label="Go to the Index page", icon=":material/add_photo_alternate:")
        return

    where = _filters(engine, info["images"])  # the sidebar: filters first, then options, then the index
    top_k, min_score, template, threshold = _options(engine)
    webui.sidebar_info(engine, info)
    _query_inputs(engine)
    if not _terms():
        st.caption(
            f"{info['images']:,} images are ready. Describe a picture in a few words and press Enter, "
            "or search with an example image."
        )
        return

    _query_editor(engine)
    with webui.errors_as_messages(engine.settings):
        try:
            hits, more, hidden = _results(engine, top_k, min_score, template, threshold, where, info["images"])
        except QueryError as exc:
            st.warning(f"This query cannot be searched: {webui.literal(str(exc))}.", icon=":material/tune:")
            return
    _describe(template, len(hits), hidden)
    if not hits:
        _nothing_found(min_score, where)
        return
    webui.result_grid(hits, engine.settings.max_image_pixels, CARD_ACTIONS)
    if more:
        st.button("Show more", key="search-more", on_click=_show_more, icon=":material/expand_more:")


# --------------------------------------------------------------------------------------------
# Duplicates


def _show_more_groups() -> None:
    st.session_state[GROUPS_SHOWN] = st.session_state.get(GROUPS_SHOWN, GROUPS_PER_PAGE) + GROUPS_PER_PAGE


def duplicates_page() -> None:
    """Groups of near-identical images (re-encoded, resized, lightly edited copies), with every path."""
    st.title("Near-duplicates", anchor=False)
    engine = webui.get_engine()
    info = webui.sidebar_info(engine)
    if info["images"] == 0:
        st.info("Nothing is indexed yet. Add some images first.", icon=":material/inbox:")
        st.page_link(INDEX_PAGE, label="Go to the Index page", icon=":material/add_photo_alternate:")
        return
    st.caption(
        "Identical files are already one image. This finds images that look the same but are different "
        "files: resized, re-encoded or slightly edited copies."
    )
    with st.columns([2, 3])[0]:
        threshold = _threshold_slider("duplicates-threshold", engine)
    if st.button("Find near-duplicates", key="duplicates-find", type="primary", icon=":material/content_copy:"):
        with st.spinner(f"Comparing {info['images']:,} images…"), webui.errors_as_messages(engine.settings):
            groups = near_duplicate_groups(engine.store, threshold)
        st.session_state[DUPLICATES] = {"threshold": threshold, "count": info["images"], "groups": groups}
        st.session_state[GROUPS_SHOWN] = GROUPS_PER_PAGE
    scan = st.session_state.get(DUPLICATES)
    if scan is None:
        return
    if (scan["threshold"], scan["count"]) != (threshold, info["images"]):
        st.caption("The similarity or the index has changed since: find them again to update the list.")
    groups = scan["groups"]
    if not groups:
        st.success(f"No near-duplicates at similarity ≥ {scan['threshold']:.3f}.", icon=":material/check_circle:")
        return
    images = sum(len(g.ids) for g in groups)
    st.markdown(f"**{len(groups)} group{'s' if len(groups) != 1 else ''}** · {images} images")
    shown = st.session_state.get(GROUPS_SHOWN, GROUPS_PER_PAGE)
    for number, group in enumerate(groups[:shown], 1):
        with st.container(border=True):
            st.markdown(f"**Group {number}** · {len(group.ids)} images · similarity ≥ {group.score:.3f}")
            cells = st.columns(webui.GRID_COLUMNS)
            for i, payload in enumerate(group.payloads):
                with cells[i % webui.GRID_COLUMNS]:
                    path = (payload.get("paths") or [""])[0]
                    picture = webui.thumbnail(path, engine.settings.max_image_pixels)
                    if isinstance(picture, bytes):
                        st.image(picture, width="stretch")
                    st.caption(
                        f"{webui.literal(payload.get('name') or path)} · "
                        f"{payload.get('width', '?')}×{payload.get('height', '?')}"
                    )
            st.code("\n".join(p for payload in group.payloads for p in payload.get("paths", [])), language=None)
    if len(groups) > shown:
        st.button("Show more groups", key="duplicates-more", on_click=_show_more_groups, icon=":material/expand_more:")


st.set_page_config(page_title=webui.APP_TITLE, page_icon=":material/image_search:", layout="wide")
SEARCH_PAGE = st.Page(search_page, title="Search", icon=":material/search:", url_path="search", default=True)
DUPLICATES_PAGE = st.Page(duplicates_page, title="Duplicates", icon=":material/content_copy:", url_path="duplicates")
INDEX_PAGE = st.Page("main_qdrant.py", title="Index", icon=":material/add_photo_alternate:", url_path="index")
st.navigation([SEARCH_PAGE, DUPLICATES_PAGE, INDEX_PAGE]).run()
