"""What the browser tests share: Debian's Chromium, a Streamlit app on a free port, a page that
records every request it makes, and a listener that counts the connections it receives.

Debian's Chromium only (never `playwright install`): skipped where it is missing, except in CI,
where it must run.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

import applog
from faultkit import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_DEADLINE_S = 60
STEP_TIMEOUT_MS = 45_000  # one step: the first script run loads the model on a slow 2-core machine
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def chromium_path() -> Path:
    """Debian's Chromium: the test is skipped where it is missing, but CI must have it."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, or make chromium)"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI must run the browser tests")
    pytest.skip(message)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.1)  # polling the health endpoint while the server starts
    raise AssertionError(f"streamlit did not become healthy in {START_DEADLINE_S} s:\n{log.read_text()[-3000:]}")


def app_environment(tmp_path: Path, model_path: Path) -> dict[str, str]:
    """The app's settings for a test: the test model and a store of its own."""
    return {
        "EMBEDDER_MODEL": str(model_path),
        "EMBEDDER_DEVICE": "cpu",
        "EMBEDDER_BATCH_SIZE": "16",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "DUPLICATE_THRESHOLD": "0.994",  # measured for the tiny test model (tests/test_searcher_composed.py)
        # The pages are the subject here; reading text is proven by the AppTests (test_app_search_box.py)
        # and test_search_box.py. Off, its OCR does not compete with the page for the two cores.
        "TEXT_IN_IMAGES": "false",
    }


@contextmanager
def streamlit_app(script: Path | str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`streamlit run script` on a free port of 127.0.0.1 with `env`; yields its URL. Stopped after,
    and its log must hold no traceback and no Streamlit warning (`applog.problems`)."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(script),
                "--server.port", str(port),
                "--server.address", "127.0.0.1",
                "--browser.gatherUsageStats", "false",
                "--server.headless", "true",
                "--server.fileWatcherType", "none",
                "--logger.messageFormat", applog.LOG_FORMAT,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)
        found = applog.problems(log.read_text(errors="replace"))
        assert not found, "the app's log:\n" + "\n".join(found)


@contextmanager
def browser_page(
    chromium: Path, url: str, requests: list[str] | None = None, path: str = "/"
) -> Iterator[Page]:
    """A Chromium page open at `url + path`, idle; every request it makes (websockets too) is
    appended to `requests`. No script error may happen on it."""
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1080}, device_scale_factor=1)
        if requests is not None:
            context.on("request", lambda request: requests.append(request.url))
        pg = context.new_page()
        if requests is not None:
            pg.on("websocket", lambda ws: requests.append(ws.url))
        pg.set_default_timeout(STEP_TIMEOUT_MS)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(url + path)
        pg.wait_for_selector(IDLE)
        yield pg
        browser.close()
        assert not errors, errors


def idle(pg: Page) -> None:
    pg.wait_for_selector(IDLE)


def elsewhere(requests: list[str], app_url: str) -> list[str]:
    """The requests that went anywhere but the app's own origin (its scheme, host and port; its
    websocket; data: and blob: URLs of the page itself)."""
    own = urlsplit(app_url)
    allowed = {("http", own.netloc), ("ws", own.netloc)}
    out = []
    for url in requests:
        parts = urlsplit(url)
        if parts.scheme == "data" or (parts.scheme == "blob" and urlsplit(parts.path).netloc == own.netloc):
            continue
        if (parts.scheme, parts.netloc) not in allowed:
            out.append(url)
    return sorted(set(out))


class Listener:
    """A TCP port on 127.0.0.1 that accepts connections and counts them (what hostile names point at)."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.setblocking(False)
        self.port = self._socket.getsockname()[1]
        self.connections = 0

    def received(self) -> int:
        """How many connections arrived so far (each already made is in the backlog: no waiting)."""
        while select.select([self._socket], [], [], 0)[0]:
            try:
                conn, _ = self._socket.accept()
            except BlockingIOError:
                break
            conn.close()
            self.connections += 1
        return self.connections

    def close(self) -> None:
        self._socket.close()
