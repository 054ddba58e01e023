"""The Search page's one search box (#27), in the real app (AppTest) on a library indexed once per
module with real OCR: pictures that say things, photos that do not, the tiny CLIP's shapes. Each card
says why it matched and shows the matching line of text, highlighted but literal; a typed date is a
chip that removes it and stays in the URL; the cutoff shows what passed, then "Show N weaker
results"; Sort (relevance, newest, oldest) is kept in the URL; the sidebar names a "Reading text" job."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from appkit import (
    MAIN, TIMEOUT, app_env, assert_clean, finish_jobs, open_app, results, search, texts, unescape, write_images,
)
from embedder import cli
from embedder.indexing.text_pass import TextPass
from faultkit import wait_until
from test_search_box import draw_library, stamp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import text_set  # noqa: E402

__all__ = ["app_env"]  # a fixture: imported for pytest to find

MARKDOWN_LINE = "marmalade ![a](http://x) and **b** jar"  # read from a card: the user's text, shown as it is
SHAPE_DAYS = ("2017-01-10", "2017-03-10", "2017-05-10", "2017-07-10", "2017-09-10", "2017-11-10")


def clear_caches() -> None:
    st.cache_resource.clear()  # closes the cached Engine, releasing the store's folder lock
    st.cache_data.clear()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[dict[str, Path]]:
    """The library, drawn and indexed once (`embedder index`: pictures, then their text) for the module;
    the app of each test is configured for it through the environment."""
    root = tmp_path_factory.mktemp("search-page")
    folder = root / "pictures"
    made = draw_library(folder)
    made["pantry"] = folder / "pantry.png"
    text_set.card(["Pantry", MARKDOWN_LINE]).save(made["pantry"])
    stamp(made["pantry"], "2018-01-05")
    for path, day in zip(write_images(folder / "shapes"), SHAPE_DAYS):
        made[path.stem] = stamp(path, day)
    env = {"EMBEDDER_MODEL": str(model_path), "EMBEDDER_DEVICE": "cpu", "QDRANT_PATH": str(root / "qdrant"),
           "UPLOAD_DIR": str(root / "uploads"), "THUMB_DIR": str(root / "thumbnails")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["index", str(folder)]) == 0
        clear_caches()
        yield made
        clear_caches()


@pytest.fixture
def app(library: dict[str, Path]) -> Iterator[dict[str, Path]]:
    clear_caches()
    yield library
    clear_caches()


def shown(at: AppTest) -> list[str]:
    """The result cards' file names, in page order."""
    return [name for name, _ in results(at)]


def address(at: AppTest, key: str) -> list[str]:
    """A parameter of the page's address, as a list of its values."""
    value = at.query_params.get(key, [])
    return [value] if isinstance(value, str) else list(value)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def days_shown(at: AppTest) -> list[str]:
    """The day each card says its picture was taken, in page order."""
    return [part for c in captions(at) for part in c.split(" · ") if len(part) == 10 and part[4] == "-"]


def date_chips(at: AppTest) -> list[str]:
    return [b.label for b in at.button if b.key and b.key.startswith("date-chip-")]


def test_a_card_says_why_it_matched_and_shows_the_line_with_the_words_in_bold(app) -> None:
    at = search("guest")
    assert_clean(at)
    assert shown(at)[0] == "IMG_0001.png"
    said = captions(at)
    assert any(c.endswith("text") or " text" in c for c in said if c.startswith(":material/check:"))
    line = next(c for c in said if "**" in c)
    assert "**Guest**" in line and unescape(line.replace("**", "")).endswith("Name-Guest")
    by_name = search("birthday cake")
    assert shown(by_name)[0] == "grandmas-birthday-cake.jpg"
    assert any("name" in c for c in captions(by_name) if c.startswith(":material/check:"))


def test_a_line_of_read_text_with_markdown_in_it_shows_literally(app) -> None:
    at = search("marmalade")
    assert_clean(at)
    assert shown(at)[0] == "pantry.png"
    line = next(c for c in captions(at) if "marmalade" in c)
    # Only the query's word is bold; the image, link and emphasis the picture says are escaped text.
    assert line.startswith("**marmalade** ") and "![" not in line and "](" not in line
    assert unescape(line.replace("**marmalade**", "marmalade", 1)) == MARKDOWN_LINE
    assert "No close match" not in texts(at)  # its words matched: a match, whatever its looks


def test_the_cutoff_shows_what_passed_then_the_weaker_results_on_request(app) -> None:
    at = search("a photo")  # 12 a page: the weaker results come at once all the same
    assert_clean(at)
    passed = shown(at)
    weaker = [b for b in at.button if b.key == "search-weaker"]
    assert weaker, "the cutoff left nothing out of a query that only looks like the pictures"
    count = int(weaker[0].label.split()[1])
    assert weaker[0].label == f"Show {count} weaker result{'s' if count != 1 else ''}"
    assert len(passed) + count == len(app)  # every picture, once the weaker are shown
    weaker[0].click().run()
    everything = shown(at)
    assert everything[: len(passed)] == passed and len(everything) == len(app)
    assert not [b for b in at.button if b.key == "search-weaker"]
    search("a photo", at=at)  # searched again: the cutoff again
    assert [b for b in at.button if b.key == "search-weaker"]


def test_sort_orders_what_passed_by_the_day_taken_and_is_kept_in_the_url(app) -> None:
    at = search("a photo", top_k=64)
    relevance = shown(at)
    at.selectbox(key="sort").set_value("newest").run()
    assert_clean(at)
    # The browser writes a bound widget's value into the address (tests/test_browser_search_box.py);
    # the page reads it back from a bookmark:
    newest = days_shown(at)
    assert sorted(shown(at)) == sorted(relevance) and newest == sorted(newest, reverse=True)
    again = AppTest.from_file(MAIN, default_timeout=TIMEOUT)  # a bookmark of the search, sorted oldest first
    again.query_params["q"] = "1:a photo"
    again.query_params["sort"] = "oldest"
    again.run()
    assert_clean(again)
    assert again.selectbox(key="sort").value == "oldest"
    oldest = days_shown(again)
    assert sorted(shown(again)) == sorted(relevance) and oldest == sorted(oldest)


def test_a_typed_year_is_a_chip_that_removes_it_and_the_url_keeps_it(app) -> None:
    at = search("platform 2019")
    assert_clean(at)
    assert date_chips(at) == ["2019 ✕"]
    dated = shown(at)
    assert dated[0] == "station.jpg" and set(dated) <= {"station.jpg", "p1.jpg"}  # says 2019, or taken then
    assert address(at, "q") == ["1:platform 2019"]
    reloaded = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    reloaded.query_params["q"] = "1:platform 2019"
    reloaded.run()
    assert date_chips(reloaded) == ["2019 ✕"] and shown(reloaded) == dated
    next(b for b in at.button if b.key and b.key.startswith("date-chip-")).click().run()
    assert_clean(at)
    assert date_chips(at) == [] and address(at, "q") == ["1:platform"]
    assert shown(at)[0] == "station.jpg" and not set(shown(at)) <= {"station.jpg", "p1.jpg"}


def test_the_sidebar_names_a_reading_text_job_with_its_progress(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text pass held after its first picture, so the page is seen while it runs."""
    folder = app_env / "cards"
    folder.mkdir()
    for n, words in enumerate(("LEMON TART", "PLUM JAM", "FIG ROLL")):
        text_set.card(["Recipe", words]).save(folder / f"card{n}.png")
    go_on, reading = threading.Event(), threading.Event()
    original = TextPass.run

    def held(self, roots, on_progress=None):
        def progress(p):
            if on_progress:
                on_progress(p)
            if p.done:
                reading.set()
                go_on.wait(60)

        return original(self, roots, progress)

    monkeypatch.setattr(TextPass, "run", held)
    at = open_app("index")
    at.text_input(key="index-folder").input(str(folder))
    at.button(key="index-button").click().run()
    try:
        assert reading.wait(120), "the text pass never started"
        wait_until(lambda: any("Reading text" in m.value for m in at.run().markdown), "the job panel", 30, step_s=0.1)
        panel = next(m.value for m in at.markdown if "Reading text" in m.value)
        assert panel.startswith("**Reading text** · ") and "cards" in panel
        sidebar = [c.value for c in open_app().sidebar.caption if "Reading text" in c.value]  # the Search page
        assert sidebar and " of 3 files" in sidebar[0]
    finally:
        go_on.set()
    finish_jobs(at)
    assert_clean(at)
