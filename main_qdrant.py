"""Index page: add images by upload or from a folder on the server, see what the run did.

A page of `main_app.py` (its navigation), and also an app on its own: `streamlit run main_qdrant.py`.
"""

from __future__ import annotations

from dataclasses import fields

import streamlit as st

import webui
from embedder.engine import Engine
from embedder.indexer import IndexReport
from embedder.paths import typed_path

REPORT_KEY = "index_report"
UPLOADER_GENERATION = "index_uploader_generation"


def _merge(reports: list[IndexReport]) -> IndexReport:
    merged = IndexReport()
    for report in reports:
        for f in fields(IndexReport):
            if f.name == "seconds":
                merged.seconds += report.seconds
            else:
                getattr(merged, f.name).extend(getattr(report, f.name))
    return merged


def _index(engine: Engine, uploads: list, folders: list[str], prune: bool) -> tuple[IndexReport, dict[str, str]]:
    """Index the uploads, then the folders, each with a progress bar; one report for both."""
    settings = engine.settings
    reports: list[IndexReport] = []
    names: dict[str, str] = {}
    if uploads:
        files = [(f.name, f.getvalue()) for f in uploads]
        names = webui.upload_names(files, settings.upload_dir)
        bar = webui.ProgressBar(f"Uploaded files ({len(files)})")
        reports.append(engine.indexer.index_uploads(files, settings.upload_dir, on_progress=bar))
    if folders:
        label = folders[0] if len(folders) == 1 else f"{len(folders)} folders"
        bar = webui.ProgressBar(label)
        reports.append(engine.indexer.index(folders, prune=prune, on_progress=bar))
    return _merge(reports), names


def _show_report(report: IndexReport, names: dict[str, str]) -> None:
    def label(path: str) -> str:
        return names.get(path, path)

    counts = {
        "Added": report.added,
        "Unchanged": report.unchanged,
        "Renamed": report.renamed,
        "Updated": report.updated,
        "Removed": report.removed,
        "Failed": report.failed,
    }
    st.subheader("Last run", anchor=False)
    if report.failed:
        st.warning(report.summary(), icon=":material/warning:")
    else:
        st.success(report.summary(), icon=":material/check_circle:")
    for column, (name, items) in zip(st.columns(len(counts)), counts.items()):
        column.metric(name, len(items))
    if report.failed:
        st.markdown("**Files that could not be indexed**")
        st.dataframe(
            [{"file": label(f.path), "reason": f.reason} for f in report.failed],
            hide_index=True,
            width="stretch",
        )
    rows = [
        {"result": status.lower(), "file": label(path), "stored at": path}
        for status, items in counts.items()
        if status != "Failed"
        for path in items
    ]
    if rows:
        with st.expander(f"Every file in this run ({len(rows)})"):
            st.dataframe(rows, hide_index=True, width="stretch")


def render() -> None:
    st.set_page_config(
        page_title=f"Index · {webui.APP_TITLE}", page_icon=":material/add_photo_alternate:", layout="wide"
    )
    st.title("Index images", anchor=False)
    st.caption(
        "Add pictures to the search index: upload them from this computer, or index a folder that is "
        "already on the machine running the app. Images already indexed are recognised by their content and "
        "never encoded twice."
    )
    engine = webui.get_engine()
    settings = engine.settings
    webui.sidebar_info(engine)

    generation = st.session_state.setdefault(UPLOADER_GENERATION, 0)
    upload_col, folder_col = st.columns(2, gap="large")
    with upload_col:
        st.subheader("Upload", anchor=False)
        uploads = st.file_uploader(
            "Images to upload",
            type=webui.UPLOAD_TYPES,
            accept_multiple_files=True,
            key=f"index-uploads-{generation}",
            max_upload_size=settings.max_upload_mb,
            help=f"Copies are kept in {settings.upload_dir}.",
        )
    with folder_col:
        st.subheader("Folder on the server", anchor=False)
        configured = [str(p) for p in settings.image_dirs]
        chosen: list[str] = []
        if configured:
            chosen = st.multiselect(
                "Configured folders (IMAGE_DIRS)",
                configured,
                key="index-configured",
                placeholder="Choose folders",
                persist_state="session",
            )
        typed = st.text_input(
            "Folder path",
            key="index-folder",
            persist_state="session",
            placeholder="/home/me/Pictures",
            help="A folder (searched with its subfolders) or a single image file on the machine running the app.",
        )
        prune = st.checkbox(
            "Forget images whose files are gone from these folders",
            key="index-prune",
            persist_state="session",
            help="Prune: after indexing, remove index entries for files under these folders that no longer exist.",
        )

    folders = list(dict.fromkeys(chosen + ([str(typed_path(typed.strip()))] if typed.strip() else [])))
    if st.button("Index", type="primary", key="index-button", icon=":material/playlist_add:"):
        if not uploads and not folders:
            st.warning("Choose images to upload or enter a folder to index first.")
        else:
            with webui.errors_as_messages(settings):
                report, names = _index(engine, uploads or [], folders, prune)
            st.session_state[REPORT_KEY] = (report, names)
            st.session_state[UPLOADER_GENERATION] = generation + 1  # a new, empty uploader
            st.rerun()

    if REPORT_KEY in st.session_state:
        _show_report(*st.session_state[REPORT_KEY])


render()
