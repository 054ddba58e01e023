"""Label → Evaluate → switch collections, walked in a real Chromium against `streamlit run main_app.py`
(the fixtures of test_browser.py): a folder labelled in the browser, the model measured on it, the
app switched to a new collection and back. Saves docs/screenshots/label.png and evaluate.png."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from embedder.evaluation import synthetic
from embedder.evaluation.datasets import load_dataset
from browserkit import idle
from test_browser import (  # noqa: F401 - app_url, chromium and page are fixtures
    SCREENSHOTS, app_url, chromium, go_index, no_error_on_page, open_page, page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHAPES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "star")]


@pytest.fixture(autouse=True)
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A settings file of this test's own for the app (test_browser's app_url reads APP_ENV): switching
    writes into it, never into the suite's shared empty one."""
    env_file = tmp_path / "qdrant.env"
    env_file.write_text("# the browser walk\nTAGS=false\n")
    monkeypatch.setattr(sys.modules[__name__], "APP_ENV", {"EMBEDDER_ENV_FILE": str(env_file)}, raising=False)
    return env_file


def _write_shapes(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, (colour, shape) in enumerate(SHAPES):
        path = folder / f"{colour}-{shape}.jpg"
        synthetic.render(shape, colour, "large", np.random.default_rng([5, i]), image_size=256).save(path, quality=92)
        paths.append(path)
    return paths


def _sidebar_collection(pg) -> str:
    text = pg.locator('[data-testid="stSidebar"]').inner_text()
    return re.search(r"Collection · (\S+)", text)[1]


def test_label_evaluate_and_switch_in_a_real_browser(page, tmp_path: Path, model_path: Path, settings_file: Path) -> None:  # noqa: F811
    pg = page
    folder = tmp_path / "family"
    _write_shapes(folder)

    # Label: the folder's pictures with drafts from their names; one caption corrected, one added.
    open_page(pg, "Label", pg.get_by_role("heading", name="Label pictures"))
    pg.get_by_label("Folder of pictures", exact=True).fill(str(folder))
    pg.get_by_role("button", name="Draft captions").click()
    boxes = pg.get_by_label("Captions, one a line", exact=True)
    boxes.nth(len(SHAPES) - 1).wait_for()
    idle(pg)
    assert boxes.count() == len(SHAPES)
    assert boxes.first.input_value() == "blue square"  # the pictures in name order
    boxes.first.fill("blue square\na square in blue")
    pg.get_by_label("Paraphrase group", exact=True).first.fill("blue ones")
    pg.screenshot(path=str(SCREENSHOTS / "label.png"), full_page=True)
    pg.get_by_role("button", name="Save labels").click()
    pg.get_by_text("Saved 5 captions of 4 pictures.").wait_for()
    idle(pg)
    no_error_on_page(pg)
    dataset = load_dataset(folder / "labels.csv")
    assert dataset.paraphrases() == {"blue ones": ["a square in blue", "blue square"]}

    # Evaluate: it starts from the file just saved; the leaderboard, the paraphrase groups, the plots.
    open_page(pg, "Evaluate", pg.get_by_role("heading", name="Evaluate"))
    assert pg.get_by_label("Labelled pictures", exact=True).input_value() == str(folder / "labels.csv")
    pg.get_by_role("button", name="Evaluate", exact=True).click()
    pg.get_by_role("heading", name="Plots").wait_for()
    idle(pg)
    no_error_on_page(pg)
    assert pg.get_by_role("heading", name="Least robust paraphrases").count() == 1
    assert pg.locator('[data-testid="stImage"]').count() == 5
    pg.screenshot(path=str(SCREENSHOTS / "evaluate.png"), full_page=True)

    # Switch: a new collection for a (here: the same) model, then back; the settings file says so.
    go_index(pg)
    first = _sidebar_collection(pg)
    pg.locator('[data-testid="stExpander"]').filter(has_text="Collections").locator("summary").click()
    pg.get_by_label("Or a new collection", exact=True).fill("tuned")
    pg.get_by_label("Model (for a new collection or a model folder)", exact=True).fill(str(model_path))
    pg.get_by_role("button", name="Use this collection").click()
    pg.get_by_text("Now using tuned").wait_for()
    idle(pg)
    assert _sidebar_collection(pg) == "tuned"
    assert "QDRANT_COLLECTION=tuned" in settings_file.read_text()
    pg.get_by_role("button", name="Switch back").click()
    pg.locator('[data-testid="stSidebar"]').get_by_text(f"Collection · {first}").wait_for()
    idle(pg)
    no_error_on_page(pg)
    assert f"QDRANT_COLLECTION={first}" in settings_file.read_text()
    assert settings_file.read_text().startswith("# the browser walk\nTAGS=false\n")
