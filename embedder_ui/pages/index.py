"""The Index page: add images by upload or from folders on the machine, follow the job, read its report.

Indexing runs in the process's job runner, not in this page: leaving the page, reloading it or
closing the browser does not stop it, and the report waits here for whoever comes back.
"""

from __future__ import annotations

import streamlit as st

from embedder.engine import Engine
from embedder.indexing.indexer import IndexReport
from embedder.jobs.runner import Job, JobRequest
from embedder.paths import path_to_text, typed_path
from embedder_ui import resources, widgets
from embedder_ui.format import job_progress, job_title, literal
from embedder_ui.switcher import collections_panel

SUBMITTED = "index_submitted"  # ids of the jobs this session's last click queued
UPLOADER_GENERATION = "index_uploader_generation"
REFRESH_S = 1.0  # how often the job panel redraws while something runs
ROW_WORDS = {"Copies": "already indexed (another copy)", "Renamed": "moved or renamed"}  # a status as people read it


def _submit(engine: Engine, uploads: list, folders: list[str], prune: bool, watch: bool) -> list[Job]:
    """Keep the uploads (their bytes live only in this run of the page) and queue one job for them
    and one for the folders."""
    jobs: list[Job] = []
    if uploads:
        saved, refused = engine.indexer.save_uploads([(f.name, f.getvalue()) for f in uploads], engine.settings.upload_dir)
        label = uploads[0].name if len(uploads) == 1 else f"{len(uploads)} uploaded files"
        jobs.append(engine.jobs.submit(JobRequest(
            "uploads",
            tuple(str(p) for p in saved),
            f"Upload: {label}",
            names={str(p): tuple(names) for p, names in saved.items()},
            refused=tuple((f.path, f.reason) for f in refused),
        )))
    if folders:
        label = folders[0] if len(folders) == 1 else f"{len(folders)} folders"
        jobs.append(engine.jobs.submit(JobRequest("index", tuple(folders), label, prune=prune)))
        if watch:
            engine.watch(folders, catch_up=False)  # the job just queued is the catch-up pass
    return jobs


def _show_report(report: IndexReport) -> None:
    counts = {
        "Added": report.added,
        "Unchanged": report.unchanged,
        "Renamed": report.renamed,
        "Updated": report.updated,
        "Copies": report.copies,
        "Removed": report.removed,
        "Failed": report.failed,
        "Skipped": report.skipped,
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
            [{"file": f.path, "reason": f.reason} for f in report.failed],
            hide_index=True,
            width="stretch",
        )
    if report.skipped:
        st.markdown("**Files left out on purpose**")
        st.dataframe(
            [{"files": n, "reason": reason} for reason, n in report.skipped_by_reason().items()],
            hide_index=True,
            width="stretch",
        )
    rows = [
        {"result": ROW_WORDS.get(status, status.lower()), "file": report.label(path), "stored at": path}
        for status, items in counts.items()
        if status not in ("Failed", "Skipped")
        for path in items
    ]
    if rows:
        with st.expander(f"Every file in this run ({len(rows)})"):
            st.dataframe(rows, hide_index=True, width="stretch")


def _last_run(engine: Engine) -> tuple[list[Job], bool]:
    """The jobs whose report this page shows (this session's last click, else the newest a person
    asked for) and whether all of them have finished."""
    ids = st.session_state.get(SUBMITTED)
    if ids:
        jobs = [job for i in ids if (job := engine.jobs.get(i)) is not None]
    else:
        finished = [j for j in engine.jobs.jobs() if j.finished and j.request.origin != "watch"]
        jobs = finished[:1]
    return jobs, all(j.finished for j in jobs)


@st.fragment(run_every=REFRESH_S)
def _jobs_panel(engine: Engine) -> None:
    """The running job with its progress and a Cancel button, what waits behind it, and the last
    report once everything asked for has finished (then the whole page redraws, counts included)."""
    pending = [j for j in engine.jobs.jobs() if not j.finished]
    for job in pending:
        with st.container(border=True):
            text_col, cancel_col = st.columns([6, 1], vertical_alignment="center")
            text_col.markdown(job_title(job))  # "Indexing" or "Reading text" as it runs, else "Queued"
            cancel_col.button(
                "Cancel", key=f"cancel-{job.id}", icon=":material/stop_circle:", width="stretch",
                on_click=engine.jobs.cancel, args=(job.id,),
                help="Stop after the batch being stored now; what is stored stays and a new run continues from there.",
            )
            st.progress(widgets.job_fraction(job), text=literal(job_progress(job)))
    if pending:
        st.session_state["index_waiting"] = True
    elif st.session_state.pop("index_waiting", False):
        st.rerun()  # all done: the counts in the sidebar are the whole page's, draw it again
    jobs, finished = _last_run(engine)
    if jobs and finished:
        for job in jobs:
            if job.state == "cancelled":
                st.info(f"{literal(job.request.label)} was cancelled: what was stored stays, index again to finish.",
                        icon=":material/stop_circle:")
            elif job.state == "failed":
                st.error(literal(f"{job.request.label} failed: {job.error}"), icon=":material/error:")
        reports = [j.report for j in jobs if j.report is not None]
        if reports:
            _show_report(IndexReport.merge(reports))


def render() -> None:
    st.title("Index images", anchor=False)
    st.caption(
        "Add pictures to the search index: upload them from this computer, or index a folder that is "
        "already on the machine running the app. Images already indexed are recognised by their content and "
        "never encoded twice. Indexing goes on in the background: you can search or close this page meanwhile."
    )
    engine = resources.get_engine()
    settings = engine.settings
    resources.sidebar_info(engine, jobs=False)

    generation = st.session_state.setdefault(UPLOADER_GENERATION, 0)
    upload_col, folder_col = st.columns(2, gap="large")
    with upload_col:
        st.subheader("Upload", anchor=False)
        uploads = st.file_uploader(
            "Images to upload",
            type=widgets.UPLOAD_TYPES,
            accept_multiple_files=True,
            key=f"index-uploads-{generation}",
            max_upload_size=settings.max_upload_mb,
            help=f"Copies are kept in {literal(settings.upload_dir)}.",
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
            help="A folder (searched with its subfolders) or a single image file on the machine running the app. "
            "Hidden folders are skipped, and so is "
            + (literal(", ".join(settings.exclude)) + " (EXCLUDE)" if settings.exclude else "nothing else (EXCLUDE)")
            + ".",
        )
        prune = st.checkbox(
            "Forget images whose files are gone from these folders",
            key="index-prune",
            persist_state="session",
            help="Prune: after indexing, remove index entries for files under these folders that no longer exist "
            "or are skipped (hidden or excluded). The files themselves are never touched.",
        )
        watch = st.checkbox(
            "Keep watching these folders",
            key="index-watch",
            persist_state="session",
            help="New, changed, moved and deleted files are indexed on their own while the app runs.",
        )

    folders = list(dict.fromkeys(chosen + ([str(typed_path(typed.strip()))] if typed.strip() else [])))
    if st.button("Index", type="primary", key="index-button", icon=":material/playlist_add:"):
        if not uploads and not folders:
            st.warning("Choose images to upload or enter a folder to index first.")
        else:
            with widgets.errors_as_messages(settings):
                jobs = _submit(engine, uploads or [], folders, prune, watch)
            st.session_state[SUBMITTED] = [job.id for job in jobs]
            st.session_state["index_waiting"] = True
            st.session_state[UPLOADER_GENERATION] = generation + 1  # a new, empty uploader
            st.rerun()

    if engine.watcher is not None and engine.watcher.roots:
        missing = engine.watcher.missing
        st.caption(
            f"Watching ({literal(engine.watcher.mode)}): "
            + " · ".join(literal(path_to_text(root)) + (" (not there now)" if root in missing else "")
                         for root in engine.watcher.roots)
        )
    with st.expander("Collections: use a tuned model's collection, and switch back", icon=":material/swap_horiz:"):
        collections_panel(engine)  # before the job panel: elements after a self-redrawing fragment can shift
    _jobs_panel(engine)
