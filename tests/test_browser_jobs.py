"""Indexing goes on without the page: start a big folder, go and search, reload, come back to a full report.

Real Chromium against `streamlit run main_app.py` (the fixtures of test_browser.py), one decode thread
and small batches so that 600 images take several seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from faultkit import distinct_image

from browserkit import IDLE, STEP_TIMEOUT_MS
from test_browser import app_url, chromium, go_index, page  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGES = 600
APP_ENV = {"EMBEDDER_WORKERS": "1", "EMBEDDER_BATCH_SIZE": "8"}  # read by test_browser's app_url


def _running(pg) -> bool:
    """The Index page's job panel, or any page's sidebar line, says a job is running."""
    return pg.get_by_text(re.compile(r"^Indexing")).count() > 0


def test_indexing_goes_on_while_the_person_searches_and_reloads(page, tmp_path: Path) -> None:  # noqa: F811
    pg = page
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(IMAGES):
        distinct_image(i, (480, 360)).save(folder / f"img{i:04d}.jpg", quality=85)

    go_index(pg)
    box = pg.get_by_label("Folder path", exact=True)
    box.fill(str(folder))
    box.press("Enter")
    pg.wait_for_selector(IDLE)
    pg.get_by_role("button", name="Index", exact=True).click()
    pg.get_by_role("button", name="Cancel").wait_for()  # the job is running, in the app's process

    # Away to Search while it runs: search works, and sees the images that have landed so far.
    pg.locator('[data-testid="stSidebarNavLink"]', has_text="Search").click()
    pg.get_by_label("What are you looking for?", exact=True).wait_for()
    pg.wait_for_selector(IDLE)
    assert _running(pg), "the job ended before the test left the Index page: make the folder bigger"
    query = pg.get_by_label("What are you looking for?", exact=True)
    query.fill("a photo")
    query.press("Enter")
    pg.get_by_text(re.compile(r"results? for “a photo”")).wait_for()

    # A reload is a new browser session: the job goes on, and the Index page shows it.
    pg.goto(pg.url.rsplit("/", 1)[0] + "/index")
    pg.wait_for_selector(IDLE)
    assert _running(pg) or pg.get_by_text("Last run").count() > 0

    # Back on Index: the finished job's report, every image, the right count.
    pg.get_by_text("Last run").wait_for(timeout=max(STEP_TIMEOUT_MS, 240_000))
    pg.wait_for_selector(IDLE)

    def metric(where: str, label: str) -> str:
        box = pg.locator(f'[data-testid="{where}"] [data-testid="stMetric"]', has_text=label)
        return box.locator('[data-testid="stMetricValue"]').first.inner_text().strip()

    assert metric("stMain", "Added") == str(IMAGES)
    assert metric("stSidebar", "Images indexed") == f"{IMAGES:,}"
    # Only the text pass that follows an index (Reading text) may still run or wait: no indexing job is left.
    assert pg.locator('[data-testid="stMain"]').get_by_text(re.compile(r"^Indexing · ")).count() == 0
