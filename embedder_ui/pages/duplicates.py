"""The Duplicates page: groups of near-identical images (re-encoded, resized, lightly edited copies)."""

from __future__ import annotations

import streamlit as st

from embedder.engine import Engine
from embedder.errors import EmbedderError
from embedder.jobs.runner import JobRequest
from embedder.paths import typed_path
from embedder.query.duplicates import (
    DuplicateGroup, Move, copies_bytes, forget_others, keeper, move_back, move_others, near_duplicate_groups, others_paths,
    others_sent_names,
)
from embedder.media.thumbnails import shared_cache
from embedder_ui import links, resources, widgets
from embedder_ui.format import file_size, literal

DUPLICATES = "duplicate_groups"  # the last near-duplicate scan and what it was made for
GROUPS_SHOWN = "duplicate_groups_shown"
GROUPS_PER_PAGE = 20
MOVE_TO = "duplicates-move-to"  # the folder "move the others" moves files into
PENDING = "duplicates_pending"  # the group number and action ("move", "forget") waiting to be confirmed
DONE = "duplicates_done"  # what the last action did: a message, for a move every file's fate, how to undo it
HANDFUL = 5  # forgetting more images than this at once asks first (moving files always asks)


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
        st.session_state.pop(PENDING, None)  # the groups are numbered anew
    scan = st.session_state.get(DUPLICATES)
    if scan is None:
        return
    _last_action(engine)
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
        help="A whole path on the machine running the app; files are moved there, never deleted or overwritten, "
        "and stay in the index at their new place.",
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
        on_click=_ask_or_forget, args=(engine, number, group, keep), width="stretch",
        help="Remove the others from the index only; their files stay where they are.",
    )
    move_col.button(
        "Move the others…", key=f"duplicates-move-{number}", icon=":material/drive_file_move:", width="stretch",
        on_click=_ask, args=(number, "move"),
        help="Move their files into the folder typed above; they stay in the index at their new place.",
    )
    pending = st.session_state.get(PENDING)
    if pending and pending["group"] == number:
        _confirmation(engine, number, group, keep, pending["action"])


def _ask(number: int, action: str) -> None:
    st.session_state[PENDING] = {"group": number, "action": action}


def _ask_or_forget(engine: Engine, number: int, group: DuplicateGroup, keep: int) -> None:
    """Forget a handful at once; ask first about more."""
    if len(group.ids) - 1 > HANDFUL:
        _ask(number, "forget")
    else:
        _forget(engine, number, group, keep)


def _confirmation(engine: Engine, number: int, group: DuplicateGroup, keep: int, action: str) -> None:
    """What the action will do, in numbers, with a button that does it and one that does not."""
    if action == "forget":
        images = len(group.ids) - 1
        st.warning(
            f"Forget {images:,} images from the index? Their files stay where they are. You can undo it "
            "right after, and the next index of their folders adds them back too.",
            icon=":material/playlist_remove:",
        )
        do, label = _forget, "Forget them"
        args: tuple = (engine, number, group, keep)
    else:
        target = st.session_state.get(MOVE_TO, "").strip()
        if not target:
            st.warning("Type the folder to move them to first (above the groups).", icon=":material/folder_open:")
            st.button("Cancel", key=f"duplicates-cancel-{number}", on_click=_cancel)
            return
        paths, sent = others_paths(group, keep), others_sent_names(group, keep)
        uploads = (f" Uploads go by the names they were sent as ({literal(', '.join(sorted(set(sent.values()))[:3]))}"
                   f"{', …' if len(set(sent.values())) > 3 else ''}), not their stored hash names." if sent else "")
        st.warning(
            f"Move {len(paths):,} file{'s' if len(paths) != 1 else ''} to {literal(target)}? "
            "They stay in the index at their new place (the index follows them; nothing is encoded again)."
            f"{uploads} Nothing is deleted or overwritten: a name already taken there gets a number. "
            "You can move them back right after.",
            icon=":material/drive_file_move:",
        )
        do, label, args = _move, "Move them", (engine, number, group, keep, target)
    yes, no = st.columns(2)
    yes.button(label, key=f"duplicates-confirm-{number}", type="primary", width="stretch", on_click=do, args=args)
    no.button("Cancel", key=f"duplicates-cancel-{number}", width="stretch", on_click=_cancel)


def _cancel() -> None:
    st.session_state.pop(PENDING, None)


def _settled(engine: Engine, number: int, done: dict) -> None:
    """The group is dealt with: take it off the list and say what happened (`done`: the message,
    every file's fate for a move, and what Undo does)."""
    scan = st.session_state[DUPLICATES]
    scan["groups"] = [g for i, g in enumerate(scan["groups"], 1) if i != number]
    scan["count"] = engine.store.count()  # the index changed by this action only: the list stays current
    st.session_state.pop(PENDING, None)
    st.session_state[DONE] = {"moves": None, "undo": None, **done}


def _forget(engine: Engine, number: int, group: DuplicateGroup, keep: int) -> None:
    paths, sent = others_paths(group, keep), others_sent_names(group, keep)
    try:
        gone = forget_others(engine.store, group, keep)
    except EmbedderError as exc:
        st.session_state[DONE] = {"message": str(exc), "failed": True, "moves": None, "undo": None}
        return
    images = f"{len(gone):,} image{'s' if len(gone) != 1 else ''}"
    _settled(engine, number, {
        "message": f"Group {number}: {images} forgotten (their files are untouched). "
        "Undo adds them back; so does the next index of their folders.",
        "undo": {"kind": "forget", "paths": paths, "names": sent, "images": len(gone)},
    })


def _move(engine: Engine, number: int, group: DuplicateGroup, keep: int, target: str) -> None:
    try:
        moves = move_others(group, keep, typed_path(target))
    except EmbedderError as exc:
        st.session_state[DONE] = {"message": str(exc), "failed": True, "moves": None, "undo": None}
        return
    moved = [m for m in moves if m.to]
    followed = _follow(engine, moved, f"Moved near-duplicates: {len(moved)} file{'s' if len(moved) != 1 else ''} to {target}")
    _settled(engine, number, {
        "message": f"Group {number}: {len(moved)} of {len(moves)} files moved to {target}. {followed}",
        "moves": moves,
        "undo": {"kind": "move", "moves": moved, "names": others_sent_names(group, keep)} if moved else None,
    })


def _follow(engine: Engine, moves: list[Move], label: str, sent: dict[str, str] | None = None) -> str:
    """Queue the index job that records the moved files at their new places (uploads moved back
    into the uploads folder under the names in `sent`); what to tell people."""
    if not moves:
        return ""
    names = {m.to: (sent[m.to],) for m in moves if sent and m.to in sent}
    try:
        engine.jobs.submit(JobRequest("index", tuple(m.to for m in moves), label, names=names))
    except EmbedderError as exc:
        return f"The index could not follow them ({exc}): index {moves[0].to} and its neighbours to update it."
    return "The index follows them (a job on the Index page records their new places)."


def _undo(engine: Engine) -> None:
    """Undo the last forget (index the forgotten files again) or move (move the files back)."""
    done = st.session_state.get(DONE) or {}
    undo = done.get("undo")
    if not undo:
        return
    try:
        if undo["kind"] == "forget":
            names = {path: (name,) for path, name in undo["names"].items()}
            count = undo["images"]
            engine.jobs.submit(JobRequest(
                "index", tuple(undo["paths"]), f"Undo: add back {count} forgotten near-duplicate{'s' if count != 1 else ''}",
                names=names,
            ))
            message = (f"Undone: the {count:,} forgotten image{'s' if count != 1 else ''} are being indexed again "
                       "(see the Index page).")
            moves = None
        else:
            moves = move_back(undo["moves"])
            back = [m for m in moves if m.to]
            message = f"Undone: {len(back)} of {len(undo['moves'])} files moved back. " + _follow(
                engine, back, f"Moved back: {len(back)} near-duplicate file{'s' if len(back) != 1 else ''}",
                undo["names"])
    except EmbedderError as exc:
        message, moves = f"Could not undo: {exc}", None
    st.session_state[DONE] = {"message": message, "moves": moves, "undo": None}


def _last_action(engine: Engine) -> None:
    done = st.session_state.get(DONE)
    if not done:
        return
    if done.get("failed"):
        st.error(literal(done["message"]), icon=":material/error:")
    else:
        st.success(literal(done["message"]), icon=":material/check_circle:")
    if done["undo"]:
        st.button("Move them back" if done["undo"]["kind"] == "move" else "Undo: add them back",
                  key="duplicates-undo", icon=":material/undo:", on_click=_undo, args=(engine,))
    if done["moves"]:
        st.dataframe(
            [{"file": m.source, "moved to": m.to or "", "left because": m.reason} for m in done["moves"]],
            hide_index=True, width="stretch",
        )
