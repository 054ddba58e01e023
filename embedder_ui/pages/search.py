"""The Search page: describe a picture or show an example, weigh the terms, filter, page through results.

The query and its pages live in a `SearchState` (one per browser session); this module only draws
it and turns clicks into its methods.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date
from pathlib import Path

import streamlit as st

from embedder.engine import Engine
from embedder.errors import ImageError, QueryError
from embedder.media.images import bytes_hash, decode
from embedder.query.terms import DEFAULT_TEMPLATE, Term, apply_template, describe_query
from embedder.query.pager import SORTS, Result
from embedder.query.filters import file_types, make_filter
from embedder.store import SearchFilter
from embedder.media.thumbnails import shared_cache
from embedder_ui import links, resources, widgets
from embedder_ui.pages import search_url
from embedder_ui.format import distinct_tails, literal, month_taken, shorten
from embedder_ui.pages.search_state import DateChip, Options, SearchState

PAGE_SIZES = [4, 8, 12, 16, 20, 24, 32, 40, 48, 64]
MAX_WEIGHT = 3.0
STATE = "search_state"  # the session's SearchState
SEEN_UPLOADS = "search_seen_uploads"  # uploader key → the image already turned into a term
# Each filter widget and its "no filter" value; Clear filters sets these (popping a key is not enough:
# the browser would keep showing, and send back, the old value). The widgets are made without a
# default of their own (their "no filter" is Streamlit's default), so setting them here is their only
# source of a value and Streamlit has nothing to warn about.
FOLDER = "filter-folder"  # the folder filter's widget, and its URL parameter
FILTER_DEFAULTS = {
    FOLDER: None,
    "filter-types": [],
    "filter-tags": [],
    "filter-after": None,
    "filter-before": None,
    "filter-min-width": 0,
    "filter-min-height": 0,
}
ADD_WORDS = "search-add-text"  # the "Add words" box
SEARCH_TEXT = "search-text"  # the "What are you looking for?" box
QUERY_THUMB_SIDE = 160  # the query's own images, above the results
KEEP = "session"  # inputs keep their values while the person is on another page
URL = "query-params"  # filters live in the URL too (shareable searches)
URL_TERMS = "q"  # the URL parameter holding each text term as `weight:text`
MAX_SIDE_PX = 100_000  # the size filters' upper bound
SORT = "sort"  # the Sort box, and its URL parameter
ADDRESS_PROBLEMS = "search_address_problems"  # what was left out of the address, said after the rerun
# What the filters bound to the URL accept from it (search_url.py); the rest is left out and said.
URL_CHECKS = {
    "filter-folder": search_url.folder(),
    "filter-types": search_url.one_of("the file type", file_types()),
    "filter-tags": search_url.tags(),
    "filter-after": search_url.day("Taken from"),
    "filter-before": search_url.day("Taken until"),
    "filter-min-width": search_url.whole_number("minimum width", 0, MAX_SIDE_PX),
    "filter-min-height": search_url.whole_number("minimum height", 0, MAX_SIDE_PX),
    SORT: search_url.one_of("the sort", SORTS),
}


def state() -> SearchState:
    """The session's SearchState; a new session starts from the text terms in the URL (a bookmark),
    the search box showing the first of them."""
    if STATE not in st.session_state:
        search = SearchState()
        for term in search_url.terms_from_url(st.query_params.get_all(URL_TERMS))[0]:
            search.add(term)
        st.session_state[STATE] = search
        first = next((t.text for _, t in search.terms if t.text and t.weight > 0), None)
        if first:
            st.session_state.setdefault(SEARCH_TEXT, first)  # before the box is drawn (render calls this first)
    return st.session_state[STATE]


def _terms_to_url() -> None:
    """Keep the query's text terms in the URL as `weight:text` (the CLI's syntax), so a reload or a
    bookmark brings the search back; filters are bound to the URL by their widgets. Pictures stay out."""
    shared = [  # no more than the page reads back (a longer address may not even reach the app)
        f"{t.weight:g}:{t.text[:search_url.MAX_TERM_CHARS]}" for _, t in state().terms if t.text is not None
    ][: search_url.MAX_URL_TERMS]
    if shared:
        st.query_params[URL_TERMS] = shared
    elif URL_TERMS in st.query_params:
        del st.query_params[URL_TERMS]


# --------------------------------------------------------------------------------------------
# The query: terms added, weighted and removed


def _add_words(weight: float) -> None:
    words = st.session_state.get(ADD_WORDS, "").strip()
    if words:
        state().add(Term(text=words, weight=weight))


def _more_like(result: Result) -> None:
    state().new_query(Term(point_id=result.id, label=result.name))


def _add_like(result: Result) -> None:
    state().add(Term(point_id=result.id, label=result.name))


def _exclude_like(result: Result) -> None:
    state().add(Term(point_id=result.id, label=result.name, weight=-1.0))


CARD_ACTIONS = (
    widgets.CardAction("like", "Similar", ":material/image_search:", "More like this: a new search with this image", _more_like),
    widgets.CardAction("add", "Add", ":material/add_circle:", "Add this image to the query", _add_like),
    widgets.CardAction("exclude", "Exclude", ":material/remove_circle:", "Push images like this one down", _exclude_like),
)


def _uploaded_term(engine: Engine, key: str, label: str) -> Term | None:
    """An uploader whose picture becomes a query term, once per picture (None until then)."""
    upload = st.file_uploader(label, type=widgets.UPLOAD_TYPES, key=key, max_upload_size=engine.settings.max_upload_mb)
    seen = st.session_state.setdefault(SEEN_UPLOADS, {})
    if upload is None:
        seen.pop(key, None)  # the same picture again is a new term
        return None
    data = upload.getvalue()
    digest = bytes_hash(data)
    if seen.get(key) == digest:
        return None
    try:
        decoded = decode(data, engine.settings.max_image_pixels, min_side=engine.searcher.min_side, name=upload.name)
    except ImageError as exc:
        st.error(literal(f"{upload.name} cannot be used: {exc}"), icon=":material/broken_image:")
        return None
    seen[key] = digest
    with widgets.errors_as_messages(engine.settings):
        vector = engine.searcher.compose([Term(image=decoded.image)])
        visual = engine.searcher.visual_vector(decoded.image)  # None without EMBEDDER_VISUAL_MODEL
    shown = widgets.letterboxed(decoded.image, QUERY_THUMB_SIDE)  # drawn above the results; the vectors search
    return Term(image=shown, vector=vector, label=upload.name, visual=visual)


def _query_inputs() -> st.delta_generator.DeltaGenerator:
    """The text box (Enter searches), which needs no model, so it is drawn while the model loads;
    returns the tab the example-image uploader goes into once it has (see `_image_input`)."""
    by_text, by_image = st.tabs(["Describe it", "Search with an image"])
    with by_text:
        with st.form("search-form", border=False):
            text_col, button_col = st.columns([6, 1], vertical_alignment="bottom")
            text = text_col.text_input(
                "What are you looking for?",
                key=SEARCH_TEXT,
                persist_state=KEEP,
                placeholder="a red bicycle against a wall · a dog on the beach · a small blue square",
            )
            submitted = button_col.form_submit_button(
                "Search", type="primary", icon=":material/search:", width="stretch"
            )
        if submitted:
            if text.strip():
                state().new_query(Term(text=text.strip()))
            else:
                st.warning("Type what you are looking for first.")
    return by_image


def _image_input(engine: Engine, tab: st.delta_generator.DeltaGenerator) -> None:
    """The example-image uploader: its picture starts a new query."""
    with tab:
        term = _uploaded_term(engine, "search-image", "An example image: find pictures that look like it")
        if term is not None:
            state().new_query(term)


def _term_label(term: Term) -> str:
    if term.text is not None:
        return f":material/text_fields: {literal(shorten(term.text))}"
    if term.point_id is not None:
        return f":material/image: like {literal(term.label)}"
    return f":material/upload: your picture {literal(term.label)}"


def _query_editor(engine: Engine) -> None:
    """The query's terms, each with a weight (below 0 pushes away) and a remove button; then ways
    to add words or an image. No syntax to learn: `beach` + 2× `sunset` − `people` is three rows."""
    terms = [t for _, t in state().terms]
    title = shorten(describe_query(terms), 60)
    # Folded while the query is one term (the box above shows it), so results start high on a phone.
    with st.expander(f"Your query: {literal(title)}", expanded=len(terms) > 1, icon=":material/tune:"):
        st.caption("Weights above 0 pull results towards a term, below 0 push them away.")
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
                state().add(term)
        with rows:
            for uid, term in state().terms:
                _term_row(uid, term)


def _term_row(uid: int, term: Term) -> None:
    """One term: what it is, its weight, and a button that removes it."""
    label_col, weight_col, remove_col = st.columns([5, 4, 1], vertical_alignment="center")
    label_col.markdown(_term_label(term))
    key = f"term-weight-{uid}"
    weight_col.slider(  # a callback, so the weight is the query's before the page (and the URL) is drawn
        "Weight", -MAX_WEIGHT, MAX_WEIGHT, float(term.weight), 0.25,
        key=key, label_visibility="collapsed", format="%+.2f",
        on_change=lambda: state().set_weight(uid, st.session_state[key]),
    )
    remove_col.button(
        "", key=f"term-remove-{uid}", icon=":material/close:", help="Remove this term",
        on_click=lambda: state().remove(uid), type="tertiary",
    )


# --------------------------------------------------------------------------------------------
# Options and filters, in the sidebar


def _options(engine: Engine) -> Options:
    """Page size, minimum score, prompt template and the near-duplicate collapse threshold (None: off)."""
    with st.sidebar:
        st.header("Search options")
        per_page = st.select_slider("Results per page", PAGE_SIZES, value=12, key="search-top-k", persist_state=KEEP)
        min_score = st.slider(
            "Minimum score", 0.0, 1.0, 0.0, 0.01, key="search-min-score", persist_state=KEEP,
            help="Hide images whose cosine similarity to the query is lower. 0 shows everything. A picture whose "
            "words (text in it, its name, its tags) hold the query's scores above 1 and always shows.",
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
        threshold = widgets.threshold_slider("search-duplicate-threshold", engine.settings, disabled=not collapse)
        st.divider()
    return Options(
        per_page=per_page,
        min_score=min_score or None,
        template=(template.strip() or None) if use_template else None,
        collapse=threshold if collapse else None,
    )


def _clear_filters() -> None:
    for key, value in FILTER_DEFAULTS.items():
        st.session_state[key] = value


def _folder_labels(folders: list[str], upload_dir: Path | None) -> dict[str, str]:
    """How the folder list reads: the part that tells folders apart first (a long path is cut off
    at its end), then the whole path; the uploads folder as "Uploaded images"."""
    tails = distinct_tails(folders)
    labels = {folder: f"{tail} · {folder}" if tail != folder else folder for folder, tail in zip(folders, tails)}
    if upload_dir is not None:
        labels[os.path.abspath(upload_dir)] = "Uploaded images"
    return labels


def _folder_filter(engine: Engine, folders: list[str]) -> str | None:
    """The folder filter: only indexed folders, told apart by their ends, narrowed as you type.

    No typed new option: Streamlit lists one first ("Add: 2019/12") and Enter would pick it over the
    matching folder. And the URL holds the folder's path (not its label, which changes as other
    folders are indexed), written here rather than bound, so a bookmark keeps working."""
    if FOLDER not in st.session_state and (shared := st.query_params.get(FOLDER)):
        st.session_state[FOLDER] = os.path.abspath(shared)  # a bookmark; not a listed folder: no filter
    labels = _folder_labels(folders, engine.settings.upload_dir)
    folder = st.selectbox(
        "Folder", folders, index=None, key=FOLDER, persist_state=KEEP,
        placeholder="Every folder", filter_mode="contains", format_func=lambda path: labels.get(path, path),
        help="Only images in this folder or below it. Type part of its name or path to narrow the list.",
    )
    if folder:
        st.query_params[FOLDER] = folder
    elif FOLDER in st.query_params:
        del st.query_params[FOLDER]
    return folder


def _filters(engine: Engine, count: int) -> SearchFilter:
    """Folder, file type, tag, date and size filters, applied inside Qdrant."""
    with st.sidebar:
        st.header("Filters")
        folder = _folder_filter(engine, resources.indexed_folders(engine, count))
        types = st.multiselect(
            "File type", file_types(), key="filter-types", placeholder="Every type", persist_state=KEEP, bind=URL
        )
        counts = resources.library_tags(engine, count)
        tags = st.multiselect(
            "Tags", list(counts), key="filter-tags", placeholder="Any tags" if counts else "No tags yet",
            persist_state=KEEP, bind=URL, accept_new_options=True,
            format_func=lambda tag: f"{tag} · {counts[tag]:,}" if tag in counts else tag,
            help="Only images with every one of these tags: labels the model saw in each picture as it was "
            "indexed (TAGS_FILE sets the labels). The number is how many images carry the tag.",
        )
        # Two single dates rather than a range: either alone is a filter (a range picker holds no end
        # without a start), and "no date" is the widget's own default, which Clear filters can set.
        after_col, before_col = st.columns(2)
        when = "The date in the photo's EXIF data, else the file's modification date; the day itself counts."
        after = after_col.date_input(
            "Taken from", value=None, min_value=date(1900, 1, 1), key="filter-after", persist_state=KEEP,
            bind=URL, help=when,
        )
        before = before_col.date_input(
            "Taken until", value=None, min_value=date(1900, 1, 1), key="filter-before", persist_state=KEEP,
            bind=URL, help=when,
        )
        width_col, height_col = st.columns(2)
        min_width = width_col.number_input(
            "Min width (px)", min_value=0, max_value=MAX_SIDE_PX, step=100, key="filter-min-width",
            persist_state=KEEP, bind=URL,
        )
        min_height = height_col.number_input(
            "Min height (px)", min_value=0, max_value=MAX_SIDE_PX, step=100, key="filter-min-height",
            persist_state=KEEP, bind=URL,
        )
        where = make_filter(folder, types, after, before, int(min_width), int(min_height), tags)
        if not where.is_empty():
            st.button("Clear filters", key="filter-clear", on_click=_clear_filters, icon=":material/filter_alt_off:")
        st.divider()
    return where


# --------------------------------------------------------------------------------------------
# Results


def _describe(template: str | None, shown: int, hidden: int) -> None:
    terms = [replace(t, text=shorten(t.text)) if t.text else t for _, t in state().terms]
    what = describe_query(terms)
    texts = [t.text for t in terms if t.text is not None and t.weight]
    note = ""
    if len(texts) == 1 and apply_template(texts[0], template) != texts[0]:
        note = f" · searched as “{shorten(apply_template(texts[0], template))}”"
    elif texts and template:
        note = f" · words searched as “{apply_template('…', template)}”"
    head, clear = st.columns([6, 1], vertical_alignment="center")
    head.markdown(f"**{shown} result{'s' if shown != 1 else ''}** for {literal(what + note)}")
    clear.button("Clear", key="search-clear", on_click=lambda: state().clear(), icon=":material/close:", width="stretch")
    if hidden:
        st.caption(f"{hidden} near-duplicate{'s' if hidden != 1 else ''} hidden")


def _too_long(engine: Engine, template: str | None) -> None:
    """Say which words the model does not read: CLIP reads a text's first 77 tokens and drops the rest."""
    limit = engine.encoder.max_text_tokens
    for _, term in state().terms:
        if term.text is None or not term.weight:
            continue
        tokens = engine.encoder.text_tokens(apply_template(term.text, template))
        if tokens > limit:
            st.warning(
                f"“{literal(shorten(term.text, 40))}” is {tokens:,} tokens long; "
                "the model reads only "
                f"the first {limit} (a few dozen words) and ignores the rest. Put what matters first, or shorten it.",
                icon=":material/short_text:",
            )


def _query_images(engine: Engine) -> None:
    """The pictures the query is made of, above its results: an example image as uploaded, a stored
    image ("Similar", Add, Exclude) as its thumbnail, saying that it is left out of the results."""
    pictures = [t for _, t in state().terms if t.weight and (t.image is not None or t.point_id is not None)]
    if not pictures:
        return
    cells = st.columns(widgets.GRID_COLUMNS * 2)
    for cell, term in zip(cells, pictures):
        with cell:
            if term.image is not None:
                st.image(term.image, width="stretch")
                note = "your example image"
            else:
                payload = engine.store.retrieve([term.point_id]).get(term.point_id) or {}
                picture = widgets.thumbnail(
                    (payload.get("paths") or [""])[0], engine.settings.max_image_pixels,
                    sha256=payload.get("sha256"), cache=shared_cache(engine.settings),
                )
                if isinstance(picture, bytes):
                    st.image(picture, width="stretch")
                note = "left out of the results" if term.weight > 0 else "pushed away"
            sign = "−" if term.weight < 0 else "query"
            st.caption(f"{sign}: {literal(term.label)} · {note}")


def _date_chips(chips: list[DateChip]) -> None:
    """Each date typed in the query as a small button that searches without it ("2019 ✕")."""
    if not chips:
        return
    with st.container(horizontal=True, gap="small", vertical_alignment="center", key="search-dates"):
        st.caption("Taken in")
        for n, chip in enumerate(chips):
            st.button(
                f"{literal(chip.when.label)} ✕", key=f"date-chip-{chip.uid}-{n}", type="secondary",
                help="The date typed in your query filters the results: search without it",
                on_click=lambda chip=chip: state().remove_date(chip),
            )


def _sort_box() -> str:
    """The order of what passed the cutoff: by relevance, or newest or oldest first (kept in the URL)."""
    return st.selectbox(  # no format_func: the URL holds the option as shown, sort=newest as in --sort newest
        "Sort", SORTS, key=SORT, persist_state=KEEP, bind=URL,
        help="Relevance: the best match first. Newest or oldest: what matched, by the date it was taken.",
    )


def _weaker_button(weaker: int) -> None:
    """What the cutoff left out: shown on request, after what passed."""
    if weaker:
        st.button(
            f"Show {weaker} weaker result{'s' if weaker != 1 else ''}", key="search-weaker",
            on_click=lambda: state().show_weaker_results(), icon=":material/unfold_more:",
            help="Results that only look a little like your query: the cutoff left them out.",
        )


def _browse_heading(shown: int, where: SearchFilter) -> None:
    head, clear = st.columns([6, 1], vertical_alignment="center")
    filtered = " that match the filters" if not where.is_empty() else ""
    head.markdown(f"**All images{filtered}**, newest first · {shown} shown")
    clear.button(
        "Close", key="search-clear", on_click=lambda: state().clear(), icon=":material/close:", width="stretch"
    )


def _match_notes(engine: Engine, hits: list[Result]) -> dict[str, str]:
    """For a query with words: "close match" or "weak match" per result found by its looks, by how much
    better it fits the words than "a photo" does (MATCH_MARGIN), and a note when nothing is close (and
    no picture's words matched). A result whose words matched says so on its card instead."""
    if not any(t.text is not None and t.weight > 0 for _, t in state().terms):
        return {}
    with widgets.errors_as_messages(engine.settings):
        margins = engine.searcher.match_margins(hits)
    threshold = engine.settings.match_margin
    by_words = any(set(hit.matched) - {"picture"} for hit in hits)  # its text, name or tags hold the words
    if margins and max(margins.values()) < threshold and not by_words:
        st.info(
            "No close match: none of these images fits your words better than “a photo” does. "
            "They are the nearest there are; try other words, or loosen the filters.",
            icon=":material/help:",
        )
    return {pid: f"{'close' if m >= threshold else 'weak'} match ({m:+.2f})" for pid, m in margins.items()}


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


def _check_address() -> None:
    """Before any widget reads the address: what it asks for that cannot be used is left out of
    it, with one sentence each. Widgets seed themselves from the address the run started with, so
    a corrected address is run again (once) before any widget reads it."""
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    if STATE in st.session_state:  # the terms are read when a session starts; after that the page writes them
        params.pop(URL_TERMS, None)
    address = search_url.read_address(params, URL_TERMS, URL_CHECKS)
    problems = st.session_state.pop(ADDRESS_PROBLEMS, None)
    if address.changes and problems is None:
        for key, keep in address.changes.items():
            if keep is None:
                del st.query_params[key]
            else:
                st.query_params[key] = keep
        st.session_state[ADDRESS_PROBLEMS] = address.problems
        st.rerun()
    for problem in address.problems if problems is None else problems:
        st.warning(problem, icon=":material/link_off:")


def render() -> None:
    st.title("Search your images", anchor=False)
    _check_address()  # before the session's state reads the terms from the address
    state()  # then: a search from the URL fills the search box before the box is drawn
    # The page first, the model behind it: the browser shows the search box and the sidebar while
    # the first run of the process loads the model (a query typed meanwhile is kept).
    by_image = _query_inputs()
    loading = st.sidebar.empty()
    loading.caption(":material/hourglass_top: Loading the model and opening the index…")
    engine = resources.get_engine(loading=loading)
    _image_input(engine, by_image)
    info = resources.index_info(engine)
    if info["images"] == 0:
        resources.sidebar_info(engine, info)
        st.info(
            "Nothing is indexed yet. Add some images first, then come back to search them.", icon=":material/inbox:"
        )
        st.page_link(links.page("index"), label="Go to the Index page", icon=":material/add_photo_alternate:")
        return

    where = _filters(engine, info["images"])  # the sidebar: filters first, then options, then the index
    options = _options(engine)
    resources.sidebar_info(engine, info)
    search = state()
    _terms_to_url()
    if not search.active:
        st.caption(
            f"{info['images']:,} images are ready. Describe a picture in a few words and press Enter, "
            "or search with an example image."
        )
        st.button("Browse all images", key="search-browse", on_click=search.browse, icon=":material/photo_library:",
                  help="Every image, newest first by the date it was taken, with the filters in the sidebar.")
        return

    if not search.browsing:
        _query_editor(engine)
        chips_col, sort_col = st.columns([4, 1], vertical_alignment="bottom")
        with chips_col:
            _date_chips(search.date_chips())
        with sort_col:
            options = replace(options, sort=_sort_box())
    with widgets.errors_as_messages(engine.settings):
        try:
            hits, more, hidden = search.results(engine.searcher, options, where, info["images"])
        except QueryError as exc:
            st.warning(f"This query cannot be searched: {literal(str(exc))}.", icon=":material/tune:")
            return
    if search.browsing:
        _browse_heading(len(hits), where)
    else:
        with widgets.errors_as_messages(engine.settings):
            _too_long(engine, options.template)
            _query_images(engine)
        _describe(options.template, len(hits), hidden)
        if search.note:
            st.caption(literal(search.note))
    if not hits:
        _nothing_found(None if search.browsing else options.min_score, where)
        if not search.browsing:
            _weaker_button(search.weaker)
        return
    notes = {} if search.browsing else _match_notes(engine, hits)
    widgets.result_grid(
        hits, engine.settings.max_image_pixels, CARD_ACTIONS, upload_dir=engine.settings.upload_dir,
        forget=lambda result: engine.forget(result.id), heading=month_taken if search.browsing else None,
        notes=notes, thumbnails=shared_cache(engine.settings), keep_order=True,
    )
    if not search.browsing:
        _weaker_button(search.weaker)
    if more:
        st.button("Show more", key="search-more", on_click=lambda: state().show_more(), icon=":material/expand_more:")
