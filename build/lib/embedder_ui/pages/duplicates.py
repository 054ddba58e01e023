"""The Duplicates page: groups of near-identical images (re-encoded, resized, lightly edited copies)."""

from __future__ import annotations

import streamlit as st

from embedder.duplicates import near_duplicate_groups
from embedder_ui import navigation, resources, widgets

DUPLICATES = "duplicate_groups"  # the last near-duplicate scan and what it was made for
GROUPS_SHOWN = "duplicate_groups_shown"
GROUPS_PER_PAGE = 20


def _show_more_groups() -> None:
    st.session_state[GROUPS_SHOWN] = st.session_state.get(GROUPS_SHOWN, GROUPS_PER_PAGE) + GROUPS_PER_PAGE


def render() -> None:
    """Groups of near-identical images (re-encoded, resized, lightly edited copies), with every path."""
    st.title("Near-duplicates", anchor=False)
    engine = resources.get_engine()
    info = resources.sidebar_info(engine)
    if info["images"] == 0:
        st.info("Nothing is indexed yet. Add some images first.", icon=":material/inbox:")
        st.page_link(navigation.page("index"), label="Go to the Index page", icon=":material/add_photo_alternate:")
        return
    st.caption(
        "Identical files are already one image. This finds images that look the same but are different "
        "files: resized, re-encoded or slightly edited copies."
    )
    with st.columns([2, 3])[0]:
        threshold = widgets.threshold_slider("duplicates-threshold", engine.settings)
    if st.button("Find near-duplicates", key="duplicates-find", type="primary", icon=":material/content_copy:"):
        with st.spinner(f"Comparing {info['images']:,} images…"), widgets.errors_as_messages(engine.settings):
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
            cells = st.columns(widgets.GRID_COLUMNS)
            for i, payload in enumerate(group.payloads):
                with cells[i % widgets.GRID_COLUMNS]:
                    path = (payload.get("paths") or [""])[0]
                    picture = widgets.thumbnail(path, engine.settings.max_image_pixels)
                    if isinstance(picture, bytes):
                        st.image(picture, width="stretch")
                    st.caption(
                        f"{widgets.literal(payload.get('name') or path)} · "
                        f"{payload.get('width', '?')}×{payload.get('height', '?')}"
                    )
            st.code("\n".join(p for payload in group.payloads for p in payload.get("paths", [])), language=None)
    if len(groups) > shown:
        st.button("Show more groups", key="duplicates-more", on_click=_show_more_groups, icon=":material/expand_more:")
