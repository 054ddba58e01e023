"""Stopping keeps its job (#25: 1): a clean stop leaves the journal saying what is unfinished, and the
next start finishes it.

The app stopped by Ctrl-C or SIGTERM mid-job used to lose the job: Python shuts its thread pools down
as the interpreter exits, the indexer's next decode was refused ("cannot schedule new futures after
interpreter shutdown"), the runner called the job failed and rewrote the journal as `"jobs": []`.
Here: a real interpreter shutdown under a running job, the real app (`streamlit run main_app.py`
driven by Chromium) stopped with SIGINT and SIGTERM, and `python -m embedder watch` stopped the same
way; each restarted, the job resumed, every file indexed. Every wait is on observable state: the
progress a page or terminal shows, the journal's contents, a process exit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import ROOT, TerminalRun, cli_env, distinct_folder, free_port, wait_until
from playwright.sync_api import sync_playwright
from browserkit import CHROMIUM_ARGS, IDLE, STEP_TIMEOUT_MS
from test_browser import chromium  # noqa: F401 - chromium is a fixture

from embedder.config import Settings
from embedder.engine import Engine
from embedder.errors import StoreError
from embedder.jobs.runner import JobRequest, JobRunner

pytestmark = pytest.mark.slow

IMAGES = 60


def journal_labels(settings: Settings) -> list[str]:
    """The labels of the jobs the journal says are unfinished ([] when there is no journal)."""
    if not settings.jobs_journal.is_file():
        return []
    return [job["label"] for job in json.loads(settings.jobs_journal.read_text(encoding="utf-8"))["jobs"]]


def stored_paths(engine: Engine) -> set[str]:
    return {p for _, payload, _ in engine.store.scroll() for p in payload["paths"]}


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return distinct_folder(tmp_path / "photos", IMAGES, size=(320, 240))


@pytest.fixture
def env(tmp_path: Path, model_path: Path) -> dict[str, str]:
    """What the processes of these tests run with: the `settings` fixture's store, small batches."""
    return cli_env(
        tmp_path, model_path, EMBEDDER_BATCH_SIZE="4", EMBEDDER_WORKERS="1", THUMB_DIR=str(tmp_path / "thumbnails"),
        WATCH="false",
    )



def unfinished_indexing(settings: Settings) -> list[str]:
    """The journal's unfinished jobs but the Reading-text job that follows a finished index (it may
    still wait or run: tests/test_text_pass.py shows that it resumes too)."""
    return [label for label in journal_labels(settings) if not label.startswith("Reading text: ")]

# --------------------------------------------------------------------------------------------
# The cause, alone: the interpreter shutting down under a running job


SHUT_DOWN_UNDER_A_JOB = """
import sys, threading
from embedder.config import Settings
from embedder.engine import Engine
from embedder.jobs.runner import JobRequest

engine = Engine.open(Settings.from_env())
going = threading.Event()
engine.jobs.on_change = lambda job: job.progress is not None and job.progress.done >= 12 and going.set()
engine.jobs.start()
engine.jobs.submit(JobRequest("index", (sys.argv[1],), "photos"))
assert going.wait(120), "the job did not get going"
print("RUNNING", flush=True)
# The main thread ends with the job running, as the app's does when it is stopped: Python shuts down.
"""


def test_a_job_running_while_python_shuts_down_stays_in_the_journal_and_resumes(
    photos: list[Path], env: dict[str, str], tmp_path: Path, reopen
) -> None:
    settings = Settings.from_env(environ=env)
    done = subprocess.run(
        [sys.executable, "-c", SHUT_DOWN_UNDER_A_JOB, str(tmp_path / "photos")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0 and "RUNNING" in done.stdout, done.stderr
    assert "Traceback" not in done.stderr and "cannot schedule" not in done.stderr, done.stderr
    assert journal_labels(settings) == ["photos"]  # not rewritten to "jobs": []

    engine = reopen()
    try:
        landed = engine.store.count()
        assert 12 <= landed < IMAGES  # the premise: it really was cut short
        resumed = engine.jobs.start()
        assert [j.request.label for j in resumed] == ["photos"]
        job = engine.jobs.wait(resumed[0].id, 120)
        assert job.state == "done" and len(job.report.unchanged) >= landed
        assert stored_paths(engine) == {str(p) for p in photos}
        assert unfinished_indexing(settings) == []
    finally:
        engine.close()


def test_a_job_that_fails_while_the_runner_closes_is_kept_not_dropped(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    """Anything going wrong under a job because its process is stopping (the store closed under it)
    counts as "unfinished, resume", never as failed."""
    journal = tmp_path / "jobs.json"
    started, release = threading.Event(), threading.Event()

    def index(paths, **kw):
        started.set()
        assert release.wait(30)
        raise StoreError("the store was closed")  # what a closed store answers

    monkeypatch.setattr(engine.indexer, "index", index)
    runner = JobRunner(engine.indexer, journal=journal)
    runner.start()
    job = runner.submit(JobRequest("index", (str(tmp_path),), "folder"))
    assert started.wait(30)
    runner.close(timeout=0)  # shutting down, not waiting for the job
    release.set()
    runner.close()  # now wait for the worker to end
    assert runner.get(job.id).state == "queued"
    assert [j["label"] for j in json.loads(journal.read_text())["jobs"]] == ["folder"]


def test_a_job_cancelled_by_a_person_before_the_stop_is_not_resumed(engine: Engine, tmp_path: Path) -> None:
    distinct_folder(tmp_path / "a", 2)
    journal = tmp_path / "jobs.json"
    runner = JobRunner(engine.indexer, journal=journal)
    job = runner.submit(JobRequest("index", (str(tmp_path / "a"),), "a"))
    assert runner.cancel(job.id)
    runner.start()
    runner.close()
    assert json.loads(journal.read_text())["jobs"] == []


# --------------------------------------------------------------------------------------------
# `python -m embedder watch`, stopped mid catch-up


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_watch_stopped_mid_job_keeps_it_and_the_next_watch_finishes_it(
    photos: list[Path], env: dict[str, str], tmp_path: Path, reopen, signum: int
) -> None:
    settings = Settings.from_env(environ=env)
    folder = tmp_path / "photos"
    run = TerminalRun(env, "watch", str(folder))
    try:
        done, total = run.wait_progress(at_least=12)  # the catch-up is running: progress on the terminal
        run.freeze()  # the job now blocks at its next progress line: it cannot finish behind the test's back
        assert done < total == IMAGES
        run.signal(signum)
        code, out, terminal = run.finish()
    finally:
        run.close()
    assert code == 0 and "stopped watching" in terminal, terminal
    assert "Traceback" not in terminal + out
    assert journal_labels(settings) == [f"Catch up {folder}"]
    engine = reopen()  # closed cleanly: the lock is free
    try:
        assert 12 <= engine.store.count() < IMAGES
    finally:
        engine.close()

    again = TerminalRun(env, "watch", str(folder))
    try:
        again.wait_for(lambda: journal_labels(settings) == [], "the resumed job and the catch-up to finish")
        again.signal(signal.SIGINT)
        code, out, terminal = again.finish()
    finally:
        again.close()
    assert code == 0, terminal
    assert re.search(rf"Catch up {re.escape(str(folder))}: \d+ added, \d+ unchanged", out), out
    engine = reopen()
    try:
        assert stored_paths(engine) == {str(p) for p in photos}
    finally:
        engine.close()


# --------------------------------------------------------------------------------------------
# The app: `streamlit run main_app.py`, a job started on the Index page, Ctrl-C or SIGTERM


APP_IMAGES = 400


class App:
    """`streamlit run main_app.py` on 127.0.0.1 with the test model; its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "main_app.py", "--server.port", str(self.port),
                 "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                 "--server.headless", "true", "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until(self._healthy, "the app to answer", deadline_s=120, step_s=0.1)

    def _healthy(self) -> bool:
        import urllib.request

        if self.proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                return response.read().strip() == b"ok"
        except OSError:
            return False

    def stop(self, signum: int) -> int:
        """Send `signum` (as Ctrl-C in its terminal, or a service manager), wait for the exit."""
        os.kill(self.proc.pid, signum)
        return self.proc.wait(120)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def app_env(tmp_path: Path, model_path: Path, env: dict[str, str]) -> dict[str, str]:
    return {**env, "EMBEDDER_BATCH_SIZE": "8", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}


@pytest.fixture
def browser(chromium: Path) -> Iterator:  # noqa: F811 - the fixture above
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1440, "height": 1080})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url + "/index")
    page.get_by_role("heading", name="Index images").wait_for()
    page.wait_for_selector(IDLE)
    return page


@pytest.mark.browser
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_app_stopped_mid_job_resumes_it_when_started_again(
    browser, app_env: dict[str, str], tmp_path: Path, reopen, signum: int
) -> None:
    folder = tmp_path / "library"
    files = distinct_folder(folder, APP_IMAGES, size=(480, 360))
    settings = Settings.from_env(environ=app_env)
    log = tmp_path / "streamlit.log"

    app = App(app_env, log)
    try:
        page = _open(browser, app.url)
        page.get_by_label("Folder path", exact=True).fill(str(folder))
        page.get_by_role("button", name="Index", exact=True).click()
        progress = page.get_by_text(re.compile(rf"^[1-9]\d+ of {APP_IMAGES} files"))
        progress.first.wait_for(timeout=240_000)  # at least 10 files in: the job runs in the app's process
        assert app.stop(signum) == 0  # a clean exit (the job was left in native code and the process aborted)
    finally:
        app.kill()
    text = log.read_text(errors="replace")
    assert "cannot schedule new futures" not in text and "Traceback" not in text, text[-3000:]
    assert journal_labels(settings) == [str(folder)]  # the job is unfinished, and says so
    engine = reopen()
    try:
        landed = engine.store.count()
        assert 0 < landed < APP_IMAGES  # the premise: stopped partway
    finally:
        engine.close()

    app = App(app_env, log)  # started again: the first page opens the engine, which resumes the job
    try:
        page = _open(browser, app.url)
        page.get_by_text("Last run").wait_for(timeout=240_000)
        page.wait_for_selector(IDLE)
        assert unfinished_indexing(settings) == []
        app.stop(signal.SIGTERM)
    finally:
        app.kill()
    assert "Traceback" not in log.read_text(errors="replace")
    engine = reopen()
    try:
        assert engine.store.count() == APP_IMAGES
        assert stored_paths(engine) == {str(p) for p in files}
    finally:
        engine.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_embedder_app_lets_the_app_stop_cleanly_and_leaves_nothing_running(env: dict[str, str], signum: int) -> None:
    """`embedder app` runs Streamlit as a child: Ctrl-C reaches both (a terminal signals the whole
    group), SIGTERM only the command, which passes it on. Either way the command waits for the app
    to stop by itself (it used to kill it mid-stop, or die and leave it running) and exits with its status."""
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedder", "app", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                return response.read().strip() == b"ok"
        except OSError:
            return False

    try:
        wait_until(answers, "the app to answer", deadline_s=120, step_s=0.1)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
        else:
            proc.send_signal(signal.SIGTERM)  # a service manager stopping the command
        assert proc.wait(120) == 0
        assert not answers()  # the app stopped before the command returned: nothing left running
        assert "Traceback" not in proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
