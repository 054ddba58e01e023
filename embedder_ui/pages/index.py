"""The Index page: add images by upload or from folders on the machine, follow the job, read its report.

Indexing runs in the process's job runner, not in this page: leaving the page, reloading it or
closing the browser does not stop it, and the report waits here for whoever comes back.
"""

from __future__ import annotations

import time

import streamlit as st

from embedder.engine import Engine
from embedder.indexing.indexer import OUTCOMES, IndexReport
from embedder.jobs.runner import Job, JobRequest
from embedder.paths import path_to_text, typed_path
from embedder_ui import resources, widgets
from embedder_ui.format import job_progress, job_title, literal
from embedder_ui.switcher import collections_panel

SUBMITTED = "index_submitted"  # ids of the jobs this session's last click queued
UPLOADER_GENERATION = "index_uploader_generation"
REFRESH_S = 1.0  # how often the job panel redraws while something runs
# A report's outcomes (IndexReport.counts) under the page's headings, in a report's words, and as a run's summary.
HEADINGS = {"added": "Added", "unchanged": "Unchanged", "renamed": "Renamed", "updated": "Updated",
            "copy": "Copies", "removed": "Removed", "failed": "Failed", "skipped": "Skipped"}
RESULT_WORDS = {**OUTCOMES, "renamed": "moved or renamed"}
FOUND_WORDS = {"added": "added", "unchanged": "unchanged", "renamed": "moved or renamed", "updated": "updated",
               "copy": "copies", "removed": "removed", "failed": "failed", "skipped": "skipped",
               "read": "read for text", "text not read": "text not read"}
ORIGINS = {"user": "asked for on a page", "watch": "watched folder", "resumed": "resumed after a restart"}


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
    """The last run: its summary, a count per outcome (each file once), and what it found file by file."""
    counts = _counts(report)
    st.subheader("Last run", anchor=False)
    if report.failed:
        st.warning(report.summary(), icon=":material/warning:")
    else:
        st.success(report.summary(), icon=":material/check_circle:")
    for column, (name, count) in zip(st.columns(len(counts)), counts.items()):
        column.metric(name, count)
    _details(report)


def _counts(report: IndexReport) -> dict[str, int]:
    """How many files came to each outcome (`IndexReport.counts`), under the page's headings."""
    return {heading: report.counts()[outcome] for outcome, heading in HEADINGS.items()}


def _details(report: IndexReport, fold_files: bool = True) -> None:
    """What a run found: the files that failed with their reasons, those left out on purpose by
    reason, and every other file once, under what happened to it (folded, with `fold_files`)."""
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
        {"result": RESULT_WORDS.get(e.outcome, e.outcome), "file": e.file, "stored at": e.stored_at,
         "copy of": e.detail if e.outcome == "copy" else ""}
        for e in report.files()
        if e.outcome not in ("failed", "skipped")
    ] + [{"result": "removed", "file": path, "stored at": "", "copy of": ""} for path in report.removed]
    if rows and fold_files:
        with st.expander(f"Every file in this run ({len(rows)})"):
            st.dataframe(rows, hide_index=True, width="stretch")
    elif rows:
        st.markdown(f"**Every file in this run** ({len(rows)})")
        st.dataframe(rows, hide_index=True, width="stretch")


def _history(engine: Engine) -> None:
    """Every finished job's report, newest first, whoever asked (this page, another session, the
    watched folders' catch-up, a job resumed after a restart, the Duplicates page): what it found
    at a glance, and its failures, skips and files when unfolded."""
    finished = engine.jobs.history()
    if not finished:
        return
    st.subheader("Every run, newest first", anchor=False)
    for job in finished:
        with st.container(border=True):
            when = time.strftime("%H:%M:%S", time.localtime(job.finished_at)) if job.finished_at else ""
            who = ORIGINS.get(job.request.origin, job.request.origin)
            st.markdown(f"**{literal(job.request.label)}** · {literal(who)} · {when}")
            report = job.report
            if job.state == "failed":
                st.caption(f":material/error: failed: {literal(job.error or 'unknown error')}")
            elif job.state == "cancelled":
                st.caption(":material/stop_circle: cancelled: what was stored stays")
            if report is None:
                continue
            st.caption(literal(report.summary()))
            if any(report.counts().values()):
                with st.expander(f"What it found: {_found(report)}"):
                    _details(report, fold_files=False)


def _found(report: IndexReport) -> str:
    """`3 added, 1 copy, 2 failed`: what a run did, each file once, outcome by outcome."""
    counts = report.counts()
    parts = [f"{counts[outcome]:,} {FOUND_WORDS[outcome]}" for outcome in FOUND_WORDS if counts[outcome]]
    return ", ".join(parts) or "nothing"


def _last_run(engine: Engine) -> tuple[list[Job], bool]:
    """The jobs whose report this page shows as the last run (this session's last click, else the
    newest job that found something to do, whoever asked for it, else the newest job) and whether
    all of them have finished."""
    ids = st.session_state.get(SUBMITTED)
    if ids:
        jobs = [job for i in ids if (job := engine.jobs.get(i)) is not None]
    else:
        jobs = (engine.jobs.history(quiet=False) or engine.jobs.history())[:1]
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
    waited = set(st.session_state.get("index_waiting", ()))  # the jobs unfinished at the last redraw
    st.session_state["index_waiting"] = [j.id for j in pending]
    if waited - {j.id for j in pending}:
        # one has finished (the text pass may run on after an index): the counts in the sidebar are
        # the whole page's, draw it again
        st.rerun()
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
            st.session_state["index_waiting"] = [job.id for job in jobs]  # redraw as each finishes
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
    _history(engine)  # outside the panel: drawn again when a job ends (the panel reruns the page), not every second
