"""Tags on the Search page: labels on the result cards and a tag filter in the sidebar (AppTest)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from appkit import CAPTION, CLASSES, app_env, assert_clean, index_folder, search, unescape, write_images  # noqa: F401
from embedder.evaluation import synthetic

BADGE = re.compile(r":gray-badge\[((?:\\.|[^\]])*)\]")


@pytest.fixture
def tagged_library(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """The six appkit classes, twice each, indexed with a vocabulary of what the tiny CLIP knows."""
    vocabulary = app_env / "tags.txt"
    vocabulary.write_text("\n".join([*synthetic.class_names(), *synthetic.COLOURS, *synthetic.SHAPES]))
    monkeypatch.setenv("TAGS_FILE", str(vocabulary))
    folder = app_env / "shapes"
    write_images(folder, seed=0)
    write_images(folder / "more", seed=1)
    assert_clean(index_folder(folder))
    return folder


def card_tags(at: AppTest) -> dict[str, list[str]]:
    """Each result card's file name → the tags shown on it, read back from the captions in page order."""
    shown: dict[str, list[str]] = {}
    name = None
    for caption in at.caption:
        match = CAPTION.match(caption.value)
        if match:
            name = unescape(match["name"])
            shown.setdefault(name, [])
        elif name and caption.value.startswith(":gray-badge["):
            shown[name] = [unescape(tag) for tag in BADGE.findall(caption.value)]
    return shown


def test_cards_show_a_few_tags_and_the_sidebar_filters_by_them(tagged_library: Path) -> None:
    at = search("a red circle", top_k=12)
    assert_clean(at)
    cards = card_tags(at)
    assert len(cards) == 6  # one name per class: both copies carry the same name
    assert all(1 <= len(tags) <= 3 for tags in cards.values()), cards
    for colour, shape in CLASSES:
        assert {f"{colour} {shape}", colour, shape} & set(cards[f"{colour}-{shape}.jpg"]), cards

    box = at.multiselect(key="filter-tags")
    options = [unescape(o) for o in box.options]
    counted = dict(re.fullmatch(r"(.*) · (\d+)", o).groups() for o in options)
    assert "red circle" in counted or "red" in counted
    tag = "red circle" if "red circle" in counted else "red"
    box.select(tag).run()
    assert_clean(at)
    filtered = card_tags(at)
    assert filtered and set(filtered) <= {"red-circle.jpg", "orange-circle.jpg"} | {
        f"{c}-{s}.jpg" for c, s in CLASSES if c == "red"
    }
    assert "red-circle.jpg" in filtered and "blue-square.jpg" not in filtered
    assert at.button(key="filter-clear")  # a tag is a filter like the others: Clear filters clears it
    at.button(key="filter-clear").click().run()
    assert at.multiselect(key="filter-tags").value == [] and len(card_tags(at)) == 6
