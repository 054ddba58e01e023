"""The pages as a photo-library user expects them, through AppTest: filters that clear, cards that
say which file, honest index reports, copies told from moves, thumbnails that keep the picture."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from appkit import (
    CLASSES,
    app_env,
    assert_clean,
    index_folder,
    render,
    results,
    search,
    texts,
    write_images,
)

__all__ = ["app_env"]  # a fixture: imported for pytest to find


def names(at: AppTest) -> list[str]:
    return [name for name, _ in results(at)]


@pytest.fixture
def library(app_env: Path) -> tuple[Path, Path]:
    """jpg/: three JPEGs; png/: three PNGs, two of them 448 px wide."""
    root = app_env / "library"
    jpg, png = root / "jpg", root / "png"
    write_images(jpg, CLASSES[:3])
    png.mkdir(parents=True)
    for i, (colour, shape) in enumerate(CLASSES[3:]):
        image = render(colour, shape)
        (image.resize((448, 448)) if i else image).save(png / f"{colour}-{shape}.png")
    assert_clean(index_folder(root))
    return jpg, png


# --------------------------------------------------------------------------------------------
# R2-1: Clear filters clears the widgets too, so no later action brings the filter back


FILTERS = {
    "filter-folder": "selectbox",
    "filter-types": "multiselect",
    "filter-dates": "date_input",
    "filter-min-width": "number_input",
    "filter-min-height": "number_input",
}


def filter_widgets(at: AppTest) -> dict:
    return {key: getattr(at, kind)(key=key) for key, kind in FILTERS.items()}


def click_as_a_browser(at: AppTest, key: str) -> AppTest:
    """Click a button as a browser does: a widget keeps showing (and sends back) what it showed
    unless the server's run sets its value (the `set_value` flag); AppTest alone shows the server's."""
    shown = {k: w.value for k, w in filter_widgets(at).items()}
    at.button(key=key).click().run()
    for k, widget in filter_widgets(at).items():
        if not widget.proto.set_value and widget.value != shown[k]:
            widget.set_value(shown[k])  # sent with the next action, as the browser would
    return at


def test_clear_filters_empties_the_widgets_and_later_actions_stay_unfiltered(library: tuple[Path, Path]) -> None:
    jpg, png = library
    at = search("a shape", top_k=4)
    at.selectbox(key="filter-folder").select(str(jpg)).run()
    at.multiselect(key="filter-types").select("JPEG").run()
    at.number_input(key="filter-min-width").set_value(100).run()
    at.date_input(key="filter-dates").set_value((date(2000, 1, 1), date(2099, 12, 31))).run()
    assert sorted(names(at)) == sorted(f"{c}-{s}.jpg" for c, s in CLASSES[:3])

    click_as_a_browser(at, "filter-clear")
    assert_clean(at)
    assert at.selectbox(key="filter-folder").value is None
    assert at.multiselect(key="filter-types").value == []
    assert at.number_input(key="filter-min-width").value == 0
    assert at.date_input(key="filter-dates").value == ()
    assert len(names(at)) == 4
    at.button(key="search-more").click().run()  # the next action once brought the filter back
    assert len(names(at)) == 6
    search("a red circle", at=at)
    assert len(names(at)) == 4 and not any(b.key == "filter-clear" for b in at.button)
