"""The Duplicates page: groups of near-identical images (re-encoded, resized, lightly edited copies)."""

from __future__ import annotations

import streamlit as st

from pathlib import Path

from embedder.query.duplicates import DuplicateGroup, copies_bytes, forget_others, keeper, move_others, near_duplicate_groups
from embedder.engine import Engine
from embedder.media.thumbnails import shared_cache
from embedder_ui import links, resources, widgets
from embedder_ui.format import file_size, literal

DUPLICATES = "duplicate_groups"  # the last near-duplicate scan and what it was made for
GROUPS_SHOWN = "duplicate_groups_shown"
GROUPS_PER_PAGE = 20
MOVE_TO = "duplicates-move-to"  # the folder "move the others" moves files into
PENDING_MOVE = "duplicates_pending_move"  # the group number waiting for the move to be confirmed
DONE = "duplicates_done"  # what the last action did: a message and, for a move, every file's fate


def _show_more_groups() -> None:
    st.session_state[GROUPS_SHOWN] = st.session_state.get(GROUPS_SHOWN, GROUPS_PER_PAGE) + GROUPS_PER_PAGE


def render() -> None:
    """Groups of near-identical images (re-encoded, resized, lightly edited copies), with every path."""
    st.title("Near-duplicates", anchor=False)
    engine = resources.get_engine()
    info = resources.sidebar_info(engine)
    if info["images"] == 0:
        st.info("Nothing is indexed yet. Add some images first.", icon=":material/inbox:")
        st.page_link(links.page("index"), label="Go to the Index page", icon=":material/add_photo_alternate:")
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
        st.session_state.pop(DONE, None)
    scan = st.session_state.get(DUPLICATES)
    if scan is None:
        return
    _last_action()
    if (scan["threshold"], scan["count"]) != (threshold, info["images"]):
        st.caption("The similarity or the index has changed since: find them again to update the list.")
    groups = scan["groups"]
    if not groups:
        st.success(f"No near-duplicates at similarity ≥ {scan['threshold']:.3f}.", icon=":material/check_circle:")
        return
    images = sum(len(g.ids) for g in groups)
    st.markdown(f"**{len(groups)} group{'s' if len(groups) != 1 else ''}** · {images} images")
    st.caption(
        f"Whole library: the copies (every image but the one each group keeps) take "
        f"{file_size(copies_bytes(groups))}."
    )
    st.text_input(
        "Move the others to", key=MOVE_TO, persist_state="session", placeholder="/home/me/Pictures/duplicates",
        help="A folder on the machine running the app; files are moved there, never deleted or overwritten.",
    )
    shown = st.session_state.get(GROUPS_SHOWN, GROUPS_PER_PAGE)
    for number, group in enumerate(groups[:shown], 1):
        with st.container(border=True):
            _group(engine, number, group)
    if len(groups) > shown:
        st.button("Show more groups", key="duplicates-more", on_click=_show_more_groups, icon=":material/expand_more:")


def _group(engine: Engine, number: int, group: DuplicateGroup) -> None:
    """A group's images with every path, which one to keep, and what to do with the others."""
    st.markdown(f"**Group {number}** · {len(group.ids)} images · similarity ≥ {group.score:.3f}")
    cells = st.columns(widgets.GRID_COLUMNS)
    for i, payload in enumerate(group.payloads):
        with cells[i % widgets.GRID_COLUMNS]:
            path = (payload.get("paths") or [""])[0]
            picture = widgets.thumbnail(
                path, engine.settings.max_image_pixels, sha256=payload.get("sha256"),
                cache=shared_cache(engine.settings),
            )
            if isinstance(picture, bytes):
                st.image(picture, width="stretch")
            st.caption(
                f"{literal(payload.get('name') or path)} · "
                f"{payload.get('width', '?')}×{payload.get('height', '?')} · "
                f"{file_size(payload.get('bytes'))}"
            )
    st.code("\n".join(p for payload in group.payloads for p in payload.get("paths", [])), language=None)
    names = [f"{i + 1}. {literal(p.get('name') or (p.get('paths') or ['?'])[0])}" for i, p in enumerate(group.payloads)]
    keep = st.radio(
        "Keep", range(len(names)), index=keeper(group), format_func=lambda i: names[i], horizontal=True,
        key=f"duplicates-keep-{group.ids[0]}",
        help="By default the one with the most pixels, then the largest, then the oldest.",
    )
    forget_col, move_col = st.columns(2)
    forget_col.button(
        "Forget the others", key=f"duplicates-forget-{number}", icon=":material/playlist_remove:",
        on_click=_forget, args=(engine, number, group, keep), width="stretch",
        help="Remove the others from the index only; their files stay where they are.",
    )
    move_col.button(
        "Move the others…", key=f"duplicates-move-{number}", icon=":material/drive_file_move:", width="stretch",
        on_click=lambda: st.session_state.update({PENDING_MOVE: number}),
    )
    if st.session_state.get(PENDING_MOVE) == number:
        target = st.session_state.get(MOVE_TO, "").strip()
        files = sum(len(p.get("paths", [])) for i, p in enumerate(group.payloads) if i != keep)
        if not target:
            st.warning("Type the folder to move them to first (above the groups).", icon=":material/folder_open:")
            return
        st.warning(f"Move {files} file{'s' if files != 1 else ''} to {literal(target)}? Nothing is deleted.",
                   icon=":material/drive_file_move:")
        yes, no = st.columns(2)
        yes.button("Move them", key=f"duplicates-confirm-{number}", type="primary", width="stretch",
                   on_click=_move, args=(engine, number, group, keep, target))
        no.button("Cancel", key=f"duplicates-cancel-{number}", width="stretch",
                  on_click=lambda: st.session_state.pop(PENDING_MOVE, None))


def _settled(engine: Engine, number: int, message: str, moves: list | None = None) -> None:
    """The group is dealt with: take it off the list and say what happened."""
    scan = st.session_state[DUPLICATES]
    scan["groups"] = [g for i, g in enumerate(scan["groups"], 1) if i != number]
    scan["count"] = engine.store.count()  # the index changed by this action only: the list stays current
    st.session_state.pop(PENDING_MOVE, None)
    st.session_state[DONE] = {"message": message, "moves": moves}


def _forget(engine: Engine, number: int, group: DuplicateGroup, keep: int) -> None:
    with widgets.errors_as_messages(engine.settings):
        gone = forget_others(engine.store, group, keep)
    _settled(engine, number, f"Group {number}: {len(gone)} image{'s' if len(gone) != 1 else ''} forgotten "
                     "(their files are untouched).")


def _move(engine: Engine, number: int, group: DuplicateGroup, keep: int, target: str) -> None:
    with widgets.errors_as_messages(engine.settings):
        moves = move_others(engine.store, group, keep, Path(target))
    moved = sum(1 for m in moves if m.to)
    _settled(engine, number, f"Group {number}: {moved} of {len(moves)} files moved to {target}.", moves)


def _last_action() -> None:
    done = st.session_state.get(DONE)
    if not done:
        return
    st.success(literal(done["message"]), icon=":material/check_circle:")
    if done["moves"]:
        st.dataframe(
            [{"file": m.source, "moved to": m.to or "", "left because": m.reason} for m in done["moves"]],
            hide_index=True, width="stretch",
        )
