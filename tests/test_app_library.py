"""The pages as a photo-library user expects them, through AppTest: filters that clear, cards that
say which file, honest index reports, copies told from moves, thumbnails that keep the picture."""

from __future__ import annotations

import os
import io
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import (
    CAPTION,
    MAIN,
    TIMEOUT,
    CLASSES,
    app_env,
    assert_clean,
    index_folder,
    index_uploads,
    metrics,
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
    "filter-after": "date_input",
    "filter-before": "date_input",
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
    at.date_input(key="filter-after").set_value(date(2000, 1, 1)).run()
    at.date_input(key="filter-before").set_value(date(2099, 12, 31)).run()
    assert sorted(names(at)) == sorted(f"{c}-{s}.jpg" for c, s in CLASSES[:3])

    click_as_a_browser(at, "filter-clear")
    assert_clean(at)
    assert at.selectbox(key="filter-folder").value is None
    assert at.multiselect(key="filter-types").value == []
    assert at.number_input(key="filter-min-width").value == 0
    assert at.date_input(key="filter-after").value is None and at.date_input(key="filter-before").value is None
    assert len(names(at)) == 4
    at.button(key="search-more").click().run()  # the next action once brought the filter back
    assert len(names(at)) == 6
    search("a red circle", at=at)
    assert len(names(at)) == 4 and not any(b.key == "filter-clear" for b in at.button)


# --------------------------------------------------------------------------------------------
# R2-2: which file is this? The folder that tells same-named files apart, the date, upload names


def test_cards_tell_same_named_files_apart_and_uploads_go_by_their_names(app_env: Path) -> None:
    root = app_env / "phone"
    for folder, (colour, shape) in (("2019/june", CLASSES[0]), ("2020/june", CLASSES[1])):
        (root / folder).mkdir(parents=True)
        render(colour, shape).save(root / folder / "IMG_0001.jpg", quality=92)
    os.utime(root / "2019/june/IMG_0001.jpg", (1_559_390_400,) * 2)  # 2019-06-01 12:00 UTC
    assert_clean(index_folder(root))
    assert_clean(index_uploads([upload("green", "triangle")]))

    at = search("a shape")
    shown = texts(at)
    assert "2019/june · 2019-06-01" in unescape(shown) and "2020/june" in unescape(shown)
    assert "green-triangle.png" in [name for name, _ in results(at)]
    uploads = str(app_env / "uploads")
    assert "uploaded" in shown and uploads not in unescape(shown)
    rank = [name for name, _ in results(at)].index("green-triangle.png")
    next(b for b in at.button if b.key and b.key.startswith(f"view-{rank}-")).click().run()
    assert_clean(at)
    assert uploads not in unescape(texts(at)) and "Uploaded as green-triangle.png" in unescape(texts(at))


def test_short_locations_use_the_fewest_folders_that_differ() -> None:
    from embedder_ui.format import short_locations

    paths = ["/p/2019/june/IMG_1.jpg", "/p/2020/june/IMG_1.jpg", "/p/x/other.jpg", "/top.jpg"]
    assert short_locations(paths) == ["2019/june", "2020/june", "x", "/"]


# --------------------------------------------------------------------------------------------
# R2-9: the Index page's report in words a person reads


def test_index_report_says_nothing_new_with_counts_and_an_empty_file_is_empty(app_env: Path) -> None:
    folder = app_env / "pictures"
    write_images(folder, CLASSES[:3])
    (folder / "empty.jpg").write_bytes(b"")
    at = index_folder(folder)
    assert_clean(at)
    assert at.warning[0].value.startswith("3 added, 1 failed in ")
    failed = at.dataframe[0].value
    assert list(failed["file"]) == [str(folder / "empty.jpg")] and failed["reason"][0].startswith("empty file")

    (folder / "empty.jpg").unlink()
    at = index_folder(folder, at=at)
    assert_clean(at)
    assert at.success[0].value.startswith("Nothing new: all 3 files were already indexed (")
    assert metrics(at)["Unchanged"] == "3"


# --------------------------------------------------------------------------------------------
# R2-3: a copy of an indexed image is not a rename; a real move is


def test_copies_are_reported_apart_from_moves(app_env: Path) -> None:
    originals = write_images(app_env / "pictures", CLASSES[:2])
    at = index_folder(app_env / "pictures")
    backup = app_env / "backup"
    backup.mkdir()
    for original in originals:
        shutil.copy2(original, backup / original.name)
    at = index_folder(backup, at=at)
    assert_clean(at)
    counts = metrics(at)
    assert (counts["Copies"], counts["Renamed"], counts["Added"]) == ("2", "0", "0")
    assert at.success[0].value.startswith("2 already indexed (another copy) in ")

    moved = app_env / "moved"
    moved.mkdir()
    originals[0].rename(moved / originals[0].name)
    (backup / originals[0].name).unlink()  # the picture now lives only in moved/
    at = index_folder(moved, at=at)
    assert_clean(at)
    assert (metrics(at)["Renamed"], metrics(at)["Copies"]) == ("1", "0")


# --------------------------------------------------------------------------------------------
# R2-14: thumbnails keep the whole picture


def test_thumbnails_keep_the_whole_picture_small_ones_are_not_blown_up(tmp_path: Path) -> None:
    from embedder_ui import widgets

    st.cache_data.clear()
    wide = tmp_path / "wide.png"
    Image.new("RGB", (800, 200), (200, 0, 0)).save(wide)
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 40), (0, 0, 200)).save(small)
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)).save(clear)

    def thumb(path: Path) -> Image.Image:
        data = widgets.thumbnail(str(path), 100_000_000)
        assert isinstance(data, bytes), data
        return Image.open(io.BytesIO(data)).convert("RGB")

    side, middle = widgets.THUMB_SIDE, widgets.THUMB_SIDE // 2
    letterbox = thumb(wide)
    assert letterbox.size == (side, side)
    assert near(letterbox.getpixel((1, middle)), (200, 0, 0))  # the left edge is kept, not cropped
    assert near(letterbox.getpixel((middle, 5)), widgets.THUMB_BACKGROUND)  # neutral above and below
    tiny = thumb(small)
    assert near(tiny.getpixel((middle, middle)), (0, 0, 200))
    assert near(tiny.getpixel((middle - 30, middle)), widgets.THUMB_BACKGROUND)  # 40 px stay 40 px
    assert near(thumb(clear).getpixel((middle, middle)), (255, 255, 255))  # transparency on white
    st.cache_data.clear()


def near(pixel: tuple[int, ...], colour: tuple[int, ...], slack: int = 12) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(pixel, colour))


# --------------------------------------------------------------------------------------------
# R2-7: the folder filter offers image folders, told apart, narrowed by typing


def test_folder_filter_offers_image_folders_told_apart_and_narrows_as_you_type(app_env: Path) -> None:
    root = app_env / "photos"
    for folder, (colour, shape) in (("2019/june", CLASSES[0]), ("2020/june", CLASSES[1]), ("2020/july", CLASSES[2])):
        (root / folder).mkdir(parents=True)
        render(colour, shape).save(root / folder / "IMG_0001.jpg", quality=92)
    assert_clean(index_folder(root))
    assert_clean(index_uploads([upload("yellow", "star")]))
    at = search("a shape")
    box = at.selectbox(key="filter-folder")
    june = str(root / "2019" / "june")
    assert sorted(box.options) == sorted([
        f"photos · {root}", f"2020 · {root / '2020'}", f"2019/june · {june}",
        f"2020/june · {root / '2020/june'}", f"july · {root / '2020/july'}", "Uploaded images",
    ])  # not app_env, "/" or "/tmp": each holds every image, so would filter nothing
    assert "FILTER_MODE_CONTAINS" in str(box.proto)  # typing "2020" narrows the list to what contains it
    box.select(june).run()
    assert [name for name, _ in results(at)] == ["IMG_0001.jpg"]


# --------------------------------------------------------------------------------------------
# R2-10: an image query shows its image above the results


def test_image_queries_show_the_query_image_above_the_results(app_env: Path) -> None:
    write_images(app_env / "pictures", CLASSES[:3])
    assert_clean(index_folder(app_env / "pictures"))
    at = open_app()
    at.file_uploader(key="search-image").set_value(upload("red", "circle", seed=7)).run()
    assert_clean(at)
    captions = [unescape(c.value) for c in at.caption]
    query = captions.index("query: red-circle.png · your example image")
    first = next(i for i, c in enumerate(captions) if CAPTION.match(c))
    assert query < first
    assert len(at.get("image")) == len(results(at)) + 1

    source = results(at)[0][0]
    next(b for b in at.button if b.key and b.key.startswith("like-0-")).click().run()
    assert_clean(at)
    assert f"query: {source} · left out of the results" in [unescape(c.value) for c in at.caption]
    assert source not in [name for name, _ in results(at)]
    assert len(at.get("image")) == len(results(at)) + 1


# --------------------------------------------------------------------------------------------
# R2-4: a long query is shortened on the page, and the page says what the model does not read


def test_a_long_query_is_shown_short_and_says_the_model_reads_only_its_start(app_env: Path, encoder) -> None:
    write_images(app_env / "pictures", CLASSES[:2])
    assert_clean(index_folder(app_env / "pictures"))
    words = "a red circle on a white background " * 600  # ~21,000 characters
    at = search(words)
    assert_clean(at)
    assert len(results(at)) == 2
    assert all(len(m.value) < 600 for m in at.markdown)  # the term row and the heading
    warning = unescape(at.warning[0].value)
    assert f"is {encoder.text_tokens('a photo of ' + words.strip()):,} tokens long" in warning
    assert f"reads only the first {encoder.max_text_tokens}" in warning
    assert encoder.max_text_tokens == 77 and encoder.text_tokens("a red circle") == 5  # 3 words + start, end

    at = search("a red circle", at=at)
    assert not at.warning  # a short query reads whole


# --------------------------------------------------------------------------------------------
# R2-12: a viewer that steps through the results, offers the original, forgets what is gone


def test_the_viewer_steps_through_results_offers_the_original_and_forgets_a_gone_file(app_env: Path) -> None:
    paths = write_images(app_env / "pictures", CLASSES[:3])
    assert_clean(index_folder(app_env / "pictures"))
    at = search("a red circle")
    order = [name for name, _ in results(at)]
    next(b for b in at.button if b.key and b.key.startswith("view-0-")).click().run()
    assert_clean(at)
    by_name = {p.name: p for p in paths}
    assert [c.value for c in at.code] == [str(by_name[order[0]])]
    shown = unescape(texts(at))
    assert f"{order[0]}** · 1 of 3" in shown and "file dated " in shown and "JPEG" in shown
    assert not at.button(key="viewer-previous").disabled  # the ends wrap around
    download = at.get("download_button")[0]
    assert download.proto.label == "Download the original"

    at.button(key="viewer-next").click().run()
    assert [c.value for c in at.code] == [str(by_name[order[1]])]
    at.button(key="viewer-next").click().run()
    assert f"{order[2]}** · 3 of 3" in unescape(texts(at))
    at.button(key="viewer-next").click().run()
    assert f"{order[0]}** · 1 of 3" in unescape(texts(at))  # from the last to the first
    at.button(key="viewer-previous").click().run()
    assert f"{order[2]}** · 3 of 3" in unescape(texts(at))
    assert not any(b.key == "viewer-forget" for b in at.button)  # only for images whose files are gone

    by_name[order[2]].unlink()
    at.button(key="viewer-previous").click().run()
    at.button(key="viewer-next").click().run()
    assert "the file is no longer there" in texts(at)
    at.button(key="viewer-forget").click().run()
    assert_clean(at)
    assert sorted(name for name, _ in results(at)) == sorted(order[:2])
    assert metrics(at)["Images indexed"] == "2" and not at.get("download_button")  # the viewer closed
    assert by_name[order[0]].exists() and by_name[order[1]].exists()


# --------------------------------------------------------------------------------------------
# R2-11: browse every image without a query, newest first, a heading per month, filters too


def test_browse_all_images_newest_first_by_month_with_paging_and_filters(app_env: Path) -> None:
    folder = app_env / "pictures"
    paths = write_images(folder, CLASSES)  # six JPEGs, dated a month apart below
    for month, path in enumerate(paths, 1):
        stamp = datetime(2021, month, 15, 12, tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
    assert_clean(index_folder(folder))
    at = open_app()
    at.select_slider(key="search-top-k").set_value(4).run()
    at.button(key="search-browse").click().run()
    assert_clean(at)
    newest_first = [p.name for p in reversed(paths)]
    assert shown_names(at) == newest_first[:4]
    assert [h.value for h in at.subheader] == ["June 2021", "May 2021", "April 2021", "March 2021"]
    at.button(key="search-more").click().run()
    assert shown_names(at) == newest_first
    at.multiselect(key="filter-types").select("PNG").run()
    assert shown_names(at) == [] and "No images match the filters" in texts(at)
    at.multiselect(key="filter-types").set_value([]).run()
    at.date_input(key="filter-after").set_value(date(2021, 2, 1)).run()
    at.date_input(key="filter-before").set_value(date(2021, 3, 31)).run()
    assert shown_names(at) == [paths[2].name, paths[1].name]

    next(b for b in at.button if b.key and b.key.startswith("like-0-")).click().run()  # a card action
    assert_clean(at)
    assert results(at) and paths[2].name not in [name for name, _ in results(at)]


def shown_names(at: AppTest) -> list[str]:
    """Names on browse cards (no score there), in page order."""
    stems = {f"{c}-{s}.jpg" for c, s in CLASSES}
    return [unescape(c.value) for c in at.caption if unescape(c.value) in stems]


# --------------------------------------------------------------------------------------------
# R2-13: near-duplicates you can act on: keep one, forget or move the others, nothing deleted


def test_duplicates_keep_the_largest_forget_or_move_the_others_and_sum_up_the_space(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUPLICATE_THRESHOLD", "0.994")  # the tiny model's near-duplicates (test_app_search_power)
    originals = write_images(app_env / "pictures")
    copies = app_env / "copies"
    write_copies(originals[:2], copies)
    assert_clean(index_folder(app_env))
    copy_bytes = sum(p.stat().st_size for p in copies.iterdir())

    at = open_page("duplicates")
    at.button(key="duplicates-find").click().run()
    assert_clean(at)
    assert f"the copies (every image but the one each group keeps) take {copy_bytes / 1024:.1f} KB" in texts(at)
    for keep in at.radio:  # the original (more pixels) is kept by default
        assert "copy-of" not in keep.options[keep.index]

    at.button(key="duplicates-forget-1").click().run()
    assert_clean(at)
    assert "Group 1: 1 image forgotten (their files are untouched)." in unescape(texts(at))
    assert metrics(at)["Images indexed"] == "7" and all(p.exists() for p in [*originals, *copies.iterdir()])
    assert "find them again" not in texts(at) and not any(b.key == "duplicates-forget-2" for b in at.button)

    target = app_env / "set-aside"
    at.text_input(key="duplicates-move-to").input(str(target)).run()
    at.button(key="duplicates-move-1").click().run()
    assert "Move 1 file to" in unescape(texts(at)) and not target.exists()  # asks first
    at.button(key="duplicates-confirm-1").click().run()
    assert_clean(at)
    moved = list(target.iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("copy-of-")
    report = at.dataframe[0].value
    assert list(report["moved to"]) == [str(moved[0])] and not Path(report["file"][0]).exists()
    assert metrics(at)["Images indexed"] == "7" and all(p.exists() for p in originals)  # moved, not forgotten


# --------------------------------------------------------------------------------------------
# R2-15: a search in the URL: a reload or a bookmark brings it back


def test_the_url_holds_the_terms_and_a_bookmark_brings_the_search_and_its_filters_back(
    library: tuple[Path, Path]
) -> None:
    jpg, _ = library
    at = search("a shape")
    at.text_input(key="search-add-text").input("blue")
    next(b for b in at.form_submit_button if b.label == "Exclude").click()
    at.run()
    at.multiselect(key="filter-types").select("JPEG").run()
    at.selectbox(key="filter-folder").select(str(jpg)).run()
    assert_clean(at)
    shown = results(at)
    assert at.query_params["q"] == ["1:a shape", "-1:blue"]  # the filters the browser writes itself (bound widgets)

    bookmark = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    bookmark.query_params["q"] = ["1:a shape", "-1:blue"]
    bookmark.query_params["filter-folder"] = str(jpg)
    bookmark.query_params["filter-types"] = ["JPEG"]
    bookmark.run()
    assert_clean(bookmark)
    assert bookmark.selectbox(key="filter-folder").value == str(jpg)
    assert bookmark.multiselect(key="filter-types").value == ["JPEG"]
    assert [s.value for s in bookmark.slider if s.key and s.key.startswith("term-weight-")] == [1.0, -1.0]
    assert results(bookmark) == shown

    bookmark.button(key="search-clear").click().run()
    assert "q" not in bookmark.query_params


# --------------------------------------------------------------------------------------------
# R2-6: a phone's width: the query editor folded for a one-term query, cards two to a row


def blocks(node) -> list:
    """Every layout block on the page, depth first (AppTest has no finder for containers)."""
    found = []
    for child in getattr(node, "children", {}).values():
        if type(getattr(child, "proto", None)).__name__ == "Block":
            found.append(child)
        found += blocks(child)
    return found


def test_on_a_phone_the_query_editor_folds_and_cards_wrap_two_to_a_row(app_env: Path) -> None:
    from embedder_ui.widgets import CARD_WIDTH

    write_images(app_env / "pictures", CLASSES)
    assert_clean(index_folder(app_env / "pictures"))
    at = search("a red circle")
    editor = next(e for e in at.expander if e.label.startswith("Your query"))
    assert not editor.proto.expanded  # one term: the search box shows it; results start high
    grid = next(b for b in blocks(at.main) if b.proto.id.endswith("result-grid-all"))
    flex = grid.proto.flex_container
    assert flex.wrap and flex.direction == flex.HORIZONTAL
    cards = [b for b in grid.children.values() if type(getattr(b, "proto", None)).__name__ == "Block"]
    assert len(cards) == 6 and {c.proto.width_config.pixel_width for c in cards} == {CARD_WIDTH}
    assert 2 * CARD_WIDTH + 8 + 2 * 16 <= 400  # two cards, the small gap and the page's margins fit 400 px

    at.text_input(key="search-add-text").input("blue")
    next(b for b in at.form_submit_button if b.label == "Add").click()
    at.run()
    assert next(e for e in at.expander if e.label.startswith("Your query")).proto.expanded  # terms to weigh


# --------------------------------------------------------------------------------------------
# R2-5: how good is a match: better than "a photo" or not, the same yardstick for every query


def test_matches_are_called_close_or_weak_against_generic_prompts_and_none_close_is_said(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, model_path: Path
) -> None:
    if not trained_model(model_path):
        pytest.skip("needs the trained tiny CLIP")
    monkeypatch.setenv("MATCH_MARGIN", "0.1")  # the tiny model's margins: 0.3-0.6 for a match, < 0.07 for none
    for n, path in enumerate(write_images(app_env / "pictures", CLASSES)):
        path.rename(path.with_name(f"picture{n}.jpg"))  # names that do not say what they show: looks alone
    assert_clean(index_folder(app_env / "pictures"))
    at = search("a red circle")
    notes = [unescape(c.value) for c in at.caption if "match (" in c.value]
    assert notes[0].startswith("close match (+") and all(n.startswith("weak match (") for n in notes[1:])
    assert "No close match" not in texts(at)

    at = search("a dog on a beach", at=at)  # nothing of the kind: its best raw cosine is still high
    assert results(at)[0][1] > 0.5
    assert "No close match" in texts(at)
    assert all(unescape(c.value).startswith("weak match (") for c in at.caption if "match (" in c.value)


# --------------------------------------------------------------------------------------------
# R2-8: cold start: the page is drawn first, the model loads behind it


def test_the_search_box_is_drawn_before_the_model_loads(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDER_MODEL", str(app_env / "no-model-here"))  # loading fails: what came before stays
    at = open_app()
    assert not at.exception
    assert at.text_input(key="search-text").label == "What are you looking for?"
    assert len(at.error) == 1  # the model's message, below the search box
    at.text_input(key="search-text").input("a red circle")
    at.form_submit_button[0].click().run()
    assert at.session_state["search-text"] == "a red circle"  # typed while loading: kept
