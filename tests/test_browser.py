"""The app as a person uses it: `streamlit run main_app.py` driven in a real Chromium by Playwright.

Uploads real image files through the page, indexes them, searches, checks the order and the
captions, and saves the screenshots in docs/screenshots/. The browser and the app are started as
tests/browserkit.py does it (Debian's Chromium only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from browserkit import app_environment, browser_page, chromium_path, idle, streamlit_app
from embedder.evaluation import synthetic

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
CAPTION = re.compile(r"^(?P<name>.+) · (?P<score>-?\d+\.\d{3})$")
CLASSES = [
    ("red", "circle", "png"),
    ("blue", "square", "jpg"),
    ("green", "triangle", "png"),
    ("yellow", "star", "jpg"),
    ("purple", "cross", "webp"),
    ("orange", "circle", "jpg"),
    ("blue", "circle", "png"),
    ("red", "square", "jpg"),
]
HOSTILE_NAME = "**bold** <b>tag <i>x [link](x.test) :red[hot] $x^2$ _it_.png"


@pytest.fixture
def chromium() -> Path:
    return chromium_path()


def write_test_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (colour, shape, ext) in enumerate(CLASSES):
        image = synthetic.render(shape, colour, "large", np.random.default_rng([11, i]), image_size=320)
        path = folder / f"{colour}-{shape}.{ext}"
        image.save(path, quality=92) if ext != "png" else image.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def app_url(chromium: Path, tmp_path: Path, model_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """`streamlit run main_app.py` on a free port, with the test model and a store of its own
    (a test module's APP_ENV adds settings)."""
    env = {**app_environment(tmp_path, model_path), **getattr(request.module, "APP_ENV", {})}
    with streamlit_app("main_app.py", env, tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture
def page(chromium: Path, app_url: str):
    with browser_page(chromium, app_url) as pg:
        yield pg


def no_error_on_page(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert pg.locator('[data-testid="stAlertContentError"]').count() == 0


def _captions(pg) -> list[tuple[str, float]]:
    found = []
    for text in pg.locator('[data-testid="stCaptionContainer"]').all_inner_texts():
        match = CAPTION.match(text.strip())
        if match:
            found.append((match["name"], float(match["score"])))
    return found


def _upload_and_index(pg, files: list[Path]) -> None:
    pg.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([str(f) for f in files])
    chips = pg.locator('[data-testid="stFileChip"]')
    pg.wait_for_function(
        "n => document.querySelectorAll('[data-testid=\"stFileChip\"]').length === n"
        " && !document.querySelector('[data-testid=\"stFileChipIconSpinner\"]')",
        arg=len(files),
    )
    assert chips.count() == len(files)
    idle(pg)
    pg.get_by_role("button", name="Index", exact=True).click()
    # Done when the page has run again with an empty uploader (a report of an earlier run may be showing).
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stFileChip\"]')")
    pg.get_by_text("Last run").wait_for()
    idle(pg)


def open_page(pg, link: str, ready) -> None:
    """Click the sidebar's `link`, wait for the page's `ready` locator, then for the app to go idle."""
    pg.locator('[data-testid="stSidebarNavLink"]', has_text=link).click()
    ready.wait_for()
    idle(pg)


def go_index(pg) -> None:
    open_page(pg, "Index", pg.get_by_role("heading", name="Index images"))


def go_search(pg) -> None:
    open_page(pg, "Search", pg.get_by_label("What are you looking for?"))


def find_the_one_duplicate_group(pg) -> None:
    """The Duplicates page, Find near-duplicates, and the one group the library with a copy holds."""
    open_page(pg, "Duplicates", pg.get_by_role("heading", name="Near-duplicates"))
    pg.get_by_role("button", name="Find near-duplicates").click()
    pg.get_by_text("1 group").wait_for()
    idle(pg)


def index_a_folder(pg, folder: Path) -> None:
    """Index a folder from the Index page and wait for its report."""
    go_index(pg)
    pg.get_by_label("Folder path", exact=True).fill(str(folder))
    pg.get_by_role("button", name="Index", exact=True).click()
    pg.get_by_text("Last run").wait_for()
    idle(pg)


def library_with_a_copy(library: Path) -> tuple[list[Path], Path]:
    """The shapes in library/shapes, plus a resized, re-encoded copy of the red circle in library/copies."""
    files = write_test_images(library / "shapes")
    red_circle = next(f for f in files if f.stem == "red-circle")
    (library / "copies").mkdir()
    with Image.open(red_circle) as image:
        image.resize((240, 240)).save(library / "copies" / "red-circle-small.jpg", quality=60)
    return files, red_circle


def search_for(pg, text: str) -> None:
    box = pg.get_by_label("What are you looking for?")
    box.fill(text)
    box.press("Enter")  # a form: Enter submits
    pg.get_by_text(re.compile(rf"results? for “{re.escape(text)}”")).wait_for()
    idle(pg)


def test_upload_index_search_in_a_real_browser(page, app_url: str, tmp_path: Path, model_path: Path) -> None:
    pg = page
    # Search is the default page, at "/": with nothing indexed it points to the Index page.
    pg.get_by_text("Nothing is indexed yet").wait_for()
    no_error_on_page(pg)

    # Index page, from the sidebar navigation.
    go_index(pg)
    files = write_test_images(tmp_path / "to-upload")
    broken = tmp_path / "to-upload" / "holiday-broken.jpg"
    broken.write_bytes(files[1].read_bytes()[:600])  # a download cut short
    _upload_and_index(pg, [*files, broken])
    no_error_on_page(pg)

    def metric(label: str) -> str:
        box = pg.locator('[data-testid="stMain"] [data-testid="stMetric"]', has_text=label)
        return box.locator('[data-testid="stMetricValue"]').inner_text().strip()

    assert (metric("Added"), metric("Failed")) == (str(len(files)), "1")
    failures = pg.locator('[data-testid="stDataFrame"]').first  # a canvas grid: its rows are checked in test_app
    failures.wait_for()
    assert failures.bounding_box()["height"] > 40
    assert pg.locator('[data-testid="stFileChip"]').count() == 0  # the uploader was cleared
    sidebar = pg.locator('[data-testid="stSidebar"]')
    assert str(len(files)) in sidebar.locator('[data-testid="stMetricValue"]').inner_text()
    assert "embedded" in sidebar.inner_text() and model_path.name in sidebar.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / "index.png"), full_page=True)

    # Search: Enter submits, results come as captioned thumbnails, best score first.
    go_search(pg)
    assert pg.url == app_url + "/"  # the default page is served at /, not at its url_path
    search_for(pg, "a red circle")
    no_error_on_page(pg)
    found = _captions(pg)
    assert len(found) == len(files)
    assert {name for name, _ in found} == {f.name for f in files}
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True)
    readme = model_path / "README.md"
    if "EMBEDDER_TEST_MODEL" not in os.environ or (readme.is_file() and "embedder.evaluation.synthetic" in readme.read_text()):
        assert found[0][0] == "red-circle.png"  # the trained tiny CLIP (a random stand-in cannot rank)
    thumbs = pg.locator('[data-testid="stImage"] img')
    assert thumbs.count() == len(files)
    thumbs.first.wait_for()
    pg.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    natural = thumbs.first.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [256, 256]  # a small thumbnail, not the original
    pg.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)

    # The full image in a dialog: an upload by the name it was sent as, never its storage path.
    pg.get_by_role("button", name="View").first.click()
    dialog = pg.locator('[role="dialog"]')
    expect(dialog).to_contain_text("Uploaded as")
    expect(dialog.locator('[data-testid="stImage"] img')).to_be_visible()
    expect(dialog).not_to_contain_text(str(tmp_path / "uploads"))
    pg.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    # A hostile file name is shown exactly as it is, not as Markdown or HTML.
    hostile = tmp_path / "hostile" / HOSTILE_NAME
    hostile.parent.mkdir()
    synthetic.render("star", "green", "small", np.random.default_rng(5)).save(hostile)
    go_index(pg)
    _upload_and_index(pg, [hostile])
    go_search(pg)
    expect(pg.get_by_label("What are you looking for?")).to_have_value("a red circle")  # kept across pages
    pg.get_by_text(re.compile(r"9 results for “a red circle”")).wait_for()  # the new image is included
    search_for(pg, "a small green star")
    names = [name for name, _ in _captions(pg)]
    assert HOSTILE_NAME in names, names
    grid = pg.locator('[data-testid="stMain"]')
    assert grid.locator("b, i, a[href*='x.test'], .katex").count() == 0


def test_compose_filter_and_find_duplicates_in_a_real_browser(page, tmp_path: Path) -> None:
    pg = page
    library = tmp_path / "library"
    files, red_circle = library_with_a_copy(library)
    index_a_folder(pg, library)
    no_error_on_page(pg)

    # Compose: the query, then words to exclude, as rows with weights.
    go_search(pg)
    search_for(pg, "a red circle")
    assert len(_captions(pg)) == len(files) + 1
    pg.locator('[data-testid="stExpander"]').filter(has_text="Your query").locator("summary").first.click()  # folded: one term
    pg.get_by_label("Add words").fill("a red square")
    pg.get_by_role("button", name="Exclude", exact=True).first.click()
    pg.get_by_text(re.compile("results? for “a red circle” − “a red square”")).wait_for()
    idle(pg)
    no_error_on_page(pg)
    assert pg.locator('[data-testid="stSlider"]').filter(has_text="+1.00").count() >= 1

    # Filter by file type in the sidebar: only PNGs are left.
    sidebar = pg.locator('[data-testid="stSidebar"]')
    types = sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text="File type").locator("input")
    types.click()
    types.fill("PNG")
    types.press("ArrowDown")
    types.press("Enter")
    types.press("Escape")
    idle(pg)
    pg.screenshot(path=str(SCREENSHOTS / "search-compose.png"), full_page=True)
    pngs = sum(f.suffix == ".png" for f in files)
    pg.get_by_text(re.compile(rf"^{pngs} results for “a red circle” − “a red square”")).wait_for(timeout=20_000)
    idle(pg)
    assert {name for name, _ in _captions(pg)} == {f.name for f in files if f.suffix == ".png"}
    pg.screenshot(path=str(SCREENSHOTS / "search-compose.png"), full_page=True)

    # Near-duplicates: the resized, re-encoded copy and its original, with both paths.
    find_the_one_duplicate_group(pg)
    no_error_on_page(pg)
    expect(pg.locator('[data-testid="stCode"]')).to_contain_text(str(library / "copies" / "red-circle-small.jpg"))
    expect(pg.locator('[data-testid="stCode"]')).to_contain_text(str(red_circle))
    pg.screenshot(path=str(SCREENSHOTS / "duplicates.png"), full_page=True)


def test_clear_filters_viewer_browsing_and_forgetting_copies_in_a_real_browser(page, tmp_path: Path) -> None:
    pg = page
    library = tmp_path / "library"
    files, red_circle = library_with_a_copy(library)
    index_a_folder(pg, library)
    sidebar = pg.locator('[data-testid="stSidebar"]')

    def indexed() -> str:
        return sidebar.locator('[data-testid="stMetricValue"]').first.inner_text().strip()

    assert indexed() == str(len(files) + 1)

    # Duplicates: keep the original, forget the copy (the index only: the file stays).
    find_the_one_duplicate_group(pg)
    pg.get_by_role("button", name="Forget the others").click()
    pg.get_by_text(re.compile(r"Group 1: 1 image forgotten")).wait_for()
    idle(pg)
    expect(sidebar.locator('[data-testid="stMetricValue"]').first).to_have_text(str(len(files)))
    assert (library / "copies" / "red-circle-small.jpg").is_file()

    # Search, filter to PNG, then Clear filters: the widgets empty and every image is back.
    go_search(pg)
    search_for(pg, "a shape")
    types = sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text="File type").locator("input")
    types.click()
    types.fill("PNG")
    types.press("ArrowDown")
    types.press("Enter")
    types.press("Escape")
    pngs = sum(f.suffix == ".png" for f in files)
    pg.get_by_text(re.compile(rf"^{pngs} results for “a shape”")).wait_for(timeout=20_000)
    idle(pg)
    pg.get_by_role("button", name="Clear filters").click()
    pg.get_by_text(re.compile(rf"^{len(files)} results for “a shape”")).wait_for(timeout=20_000)
    idle(pg)
    assert sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text="File type").locator(
        '[data-baseweb="tag"]').count() == 0
    assert len(_captions(pg)) == len(files)

    # The viewer steps through the results with Next and Previous.
    pg.get_by_role("button", name="View").first.click()
    dialog = pg.get_by_role("dialog")
    dialog.get_by_text(re.compile(rf"1 of {len(files)}")).wait_for()
    dialog.get_by_role("button", name="Next").click()
    dialog.get_by_text(re.compile(rf"2 of {len(files)}")).wait_for()
    dialog.get_by_role("button", name="Previous").click()
    dialog.get_by_text(re.compile(rf"1 of {len(files)}")).wait_for()
    idle(pg)
    pg.keyboard.press("Escape")  # Escape still closes it after stepping (focus is on Previous)
    dialog.wait_for(state="hidden")
    idle(pg)

    # On a phone (400 px wide): the one-term query stays folded and results come two to a row.
    pg.set_viewport_size({"width": 400, "height": 900})
    idle(pg)
    first_two = pg.locator('[data-testid="stImage"]').nth(0), pg.locator('[data-testid="stImage"]').nth(1)
    expect(first_two[1]).to_be_visible()
    boxes = [image.bounding_box() for image in first_two]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5 and boxes[1]["x"] > boxes[0]["x"]  # side by side
    pg.screenshot(path=str(SCREENSHOTS / "search-phone.png"))
    pg.set_viewport_size({"width": 1440, "height": 1080})
    idle(pg)

    # Browsing without a query: every image, newest first, under a date heading.
    pg.get_by_role("button", name="Clear", exact=True).click()
    idle(pg)
    pg.get_by_role("button", name="Browse all images").click()
    idle(pg)
    pg.wait_for_function(f"() => document.querySelectorAll('[data-testid=\"stImage\"]').length >= {len(files)}")
    no_error_on_page(pg)
