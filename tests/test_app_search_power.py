"""The Search page's power controls through AppTest: composed terms, filters, near-duplicates.

Every control is driven as a person would (buttons, sliders, the sidebar), against the real
embedded store and the trained tiny CLIP.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from appkit import (
    CLASSES,
    app_env,
    assert_clean,
    index_folder,
    open_app,
    open_page,
    render,
    results,
    search,
    texts,
    trained_model,
    unescape,
    upload,
    write_copies,
    write_images,
)

__all__ = ["app_env"]  # a fixture: imported for pytest to find

# Measured on the synthetic set with the tiny test model (tests/test_searcher_composed.py).
TINY_MODEL_NEAR_DUPLICATE = "0.994"
MORE_CLASSES = [*CLASSES, ("red", "square"), ("blue", "circle")]


def names(at: AppTest) -> list[str]:
    return [name for name, _ in results(at)]


def heading(at: AppTest) -> str:
    """The line above the results: how many, and the query as the page reads it."""
    return next(unescape(m.value) for m in at.markdown if " for " in m.value and m.value.startswith("**"))


def add_words(at: AppTest, words: str, exclude: bool = False) -> AppTest:
    at.text_input(key="search-add-text").input(words)
    label = "Exclude" if exclude else "Add"
    next(b for b in at.form_submit_button if b.label == label).click()
    return at.run()


def term_sliders(at: AppTest) -> list:
    return [s for s in at.slider if s.key and s.key.startswith("term-weight-")]


def click(at: AppTest, prefix: str, rank: int = 0) -> AppTest:
    next(b for b in at.button if b.key and b.key.startswith(f"{prefix}-{rank}-")).click()
    return at.run()


@pytest.fixture
def indexed(app_env: Path) -> Path:
    folder = app_env / "pictures"
    write_images(folder, MORE_CLASSES)
    assert_clean(index_folder(folder))
    return folder


# --------------------------------------------------------------------------------------------
# Composed queries


def test_exclude_words_then_weigh_and_remove_them(indexed: Path, model_path: Path) -> None:
    at = search("a red circle")
    plain = names(at)
    assert len(term_sliders(at)) == 1 and term_sliders(at)[0].value == 1.0

    at = add_words(at, "a red square", exclude=True)
    assert_clean(at)
    sliders = term_sliders(at)
    assert [s.value for s in sliders] == [1.0, -1.0]
    assert "for “a red circle” − “a red square”" in heading(at)

    term_sliders(at)[1].set_value(-0.5).run()
    assert_clean(at)
    assert "for “a red circle” − 0.5× “a red square”" in heading(at)
    minus = names(at)
    assert sorted(minus) == sorted(plain)  # the same images, ranked again
    if trained_model(model_path):
        assert minus[0] == "red-circle.jpg"
        assert minus.index("red-square.jpg") > plain.index("red-square.jpg")

    term_sliders(at)[0].set_value(2.0).run()
    assert "for 2× “a red circle” − 0.5× “a red square”" in heading(at)
    next(b for b in at.button if b.key and b.key.startswith("term-remove-")).click().run()  # the first term
    assert "for − 0.5× “a red square”" in heading(at)
    if trained_model(model_path):
        assert names(at)[-1] == "red-square.jpg"  # pushed away from it: last


def test_add_words_pulls_results_towards_them(indexed: Path, model_path: Path) -> None:
    at = search("a circle")
    at = add_words(at, "blue")
    assert_clean(at)
    assert "for “a circle” + “blue”" in heading(at)
    if trained_model(model_path):
        assert names(at)[0] == "blue-circle.jpg"


def test_terms_that_cancel_out_are_a_message(indexed: Path) -> None:
    at = add_words(search("a red circle"), "a red circle", exclude=True)
    assert not at.exception
    assert results(at) == []
    assert "cancel each other out" in " ".join(w.value for w in at.warning)


def test_result_cards_add_or_exclude_an_image(indexed: Path, model_path: Path) -> None:
    at = search("a red circle")
    first = names(at)[0]
    at = click(at, "exclude")
    assert_clean(at)
    assert f"for “a red circle” − images like {first}" in heading(at)
    assert names(at).index(first) >= len(MORE_CLASSES) // 2  # pushed away from it: from first to the back

    at = search("a blue square")
    first = names(at)[0]
    at = click(at, "add")
    assert_clean(at)
    assert f"for “a blue square” + images like {first}" in heading(at)
    assert first not in names(at)  # an image in the query is not a result


def test_an_example_image_joins_the_query(indexed: Path, model_path: Path) -> None:
    at = search("a square")
    at.file_uploader(key="search-add-image").set_value(upload("blue", "square", seed=5)).run()
    assert_clean(at)
    assert "for “a square” + images like your picture blue-square.png" in heading(at)
    assert len(term_sliders(at)) == 2
    if trained_model(model_path):
        assert names(at)[0] == "blue-square.jpg"
    at.run()  # the same upload is not added twice
    assert len(term_sliders(at)) == 2


def test_similar_starts_a_new_query(indexed: Path) -> None:
    at = add_words(search("a red circle"), "blue")
    first = names(at)[0]
    at = click(at, "like")
    assert len(term_sliders(at)) == 1
    assert heading(at).endswith(f"for images like {first}")


# --------------------------------------------------------------------------------------------
# Filters


def _utc(day: date) -> float:
    return datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def two_folders(app_env: Path) -> tuple[Path, Path]:
    """jpg/: three JPEGs, one modified in 2019; png/: three PNGs, two of them 448 px wide."""
    library = app_env / "library"
    jpg, png = library / "jpg", library / "png"
    jpegs = write_images(jpg, CLASSES[:3])
    os.utime(jpegs[0], (_utc(date(2019, 6, 1)),) * 2)
    png.mkdir(parents=True)
    for i, (colour, shape) in enumerate(CLASSES[3:]):
        image = render(colour, shape)
        (image.resize((448, 448)) if i else image).save(png / f"{colour}-{shape}.png")
    assert_clean(index_folder(library))
    return jpg, png


def test_filters_cut_results_exactly(two_folders: tuple[Path, Path]) -> None:
    jpg, png = two_folders
    at = search("a shape")
    assert len(results(at)) == 6

    folder = at.selectbox(key="filter-folder")
    assert folder.options == [f"jpg · {jpg}", f"png · {png}"]  # image folders, told apart by their ends
    folder.select(str(jpg)).run()
    assert_clean(at)
    assert sorted(names(at)) == sorted(f"{c}-{s}.jpg" for c, s in CLASSES[:3])

    at.button(key="filter-clear").click().run()
    assert len(results(at)) == 6
    at.multiselect(key="filter-types").select("PNG").run()
    assert sorted(names(at)) == sorted(f"{c}-{s}.png" for c, s in CLASSES[3:])

    at.number_input(key="filter-min-width").set_value(300).run()
    assert sorted(names(at)) == sorted(f"{c}-{s}.png" for c, s in CLASSES[4:])  # PNG and ≥ 300 px

    at.button(key="filter-clear").click().run()
    at.date_input(key="filter-dates").set_value((date(2019, 1, 1), date(2019, 12, 31))).run()
    assert names(at) == [f"{CLASSES[0][0]}-{CLASSES[0][1]}.jpg"]

    at.date_input(key="filter-dates").set_value((date(2001, 1, 1), date(2001, 1, 2))).run()
    assert_clean(at)
    assert results(at) == []
    assert "No images match the filters" in texts(at)


# --------------------------------------------------------------------------------------------
# Near-duplicates


@pytest.fixture
def with_copies(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    """Six images, and a resized, re-encoded copy of two of them in another folder."""
    monkeypatch.setenv("DUPLICATE_THRESHOLD", TINY_MODEL_NEAR_DUPLICATE)
    originals = write_images(app_env / "pictures")
    copies = app_env / "copies"
    write_copies(originals[:2], copies)
    assert_clean(index_folder(app_env))
    return app_env, originals[:2]


def test_hide_near_duplicates_in_results(with_copies, model_path: Path) -> None:
    _, duplicated = with_copies
    at = search("a red circle", top_k=4)
    assert len(results(at)) == 4
    everything = names(search("a red circle", top_k=8))
    assert len(everything) == 8

    at = open_app()
    assert at.slider(key="search-duplicate-threshold").value == float(TINY_MODEL_NEAR_DUPLICATE)
    at.toggle(key="search-collapse").set_value(True).run()
    at = search("a red circle", at=at, top_k=4)
    assert_clean(at)
    collapsed = names(at)
    assert len(collapsed) == 4  # the page is still full
    at.button(key="search-more").click().run()
    shown = names(at)
    assert len(shown) == 6  # 8 images, 2 of them copies
    for original in duplicated:
        assert (original.name in shown) != (f"copy-of-{original.name}" in shown)  # one of each pair
    assert "2 near-duplicates hidden" in texts(at)


def test_duplicates_page_lists_the_planted_copies_with_their_paths(with_copies) -> None:
    root, duplicated = with_copies
    at = open_page("duplicates")
    assert_clean(at)
    assert at.slider(key="duplicates-threshold").value == float(TINY_MODEL_NEAR_DUPLICATE)
    at.button(key="duplicates-find").click().run()
    assert_clean(at)
    assert "**2 groups** · 4 images" in [m.value for m in at.markdown]
    listed = sorted(sorted(block.value.splitlines()) for block in at.code)
    planted = sorted(sorted([str(o), str(root / "copies" / f"copy-of-{o.name}")]) for o in duplicated)
    assert listed == planted

    at.slider(key="duplicates-threshold").set_value(1.0).run()
    assert "find them again" in texts(at)
    at.button(key="duplicates-find").click().run()
    assert "No near-duplicates at similarity ≥ 1.000" in texts(at)


def test_next_page_a_filter_change_and_another_session_make_no_model_call(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Engine, hence one Searcher and its cache of text vectors, per process: a page turn, a
    filter, a weight and a second browser session asking the same thing encode nothing new."""
    from embedder.models.base import Encoder

    write_images(app_env / "pictures", [(c, s) for c in ("red", "blue", "green") for s in ("circle", "square")])
    index_folder(app_env / "pictures")
    encoded: list[str] = []
    real = Encoder.encode_texts
    monkeypatch.setattr(Encoder, "encode_texts", lambda self, texts: encoded.extend(texts) or real(self, texts))
    at = search("a blue square", top_k=4)
    first = results(at)
    assert len(first) == 4 and "a photo of a blue square" in encoded
    seen = list(encoded)
    at.button(key="search-more").click().run()
    assert len(results(at)) == 6
    at.multiselect(key="filter-types").set_value(["JPEG"]).run()
    assert_clean(at)
    assert results(at)
    other = search("a blue square", top_k=4)  # another browser session, the same process
    assert results(other) == first
    assert encoded == seen
