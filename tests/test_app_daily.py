"""Daily use, round 3, through AppTest: bulk actions on near-duplicates ask first and can be undone,
moved copies stay findable (uploads under the names they were sent as), every job's report is listed,
a date alone is a filter that clears without a warning, and a shared search fills the search box.

The browser-only parts (Move the others in Chromium, the viewer's arrow key, the URL, the folder
filter's first option) are in test_browser_daily.py.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
import os
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import (
    MAIN,
    TIMEOUT,
    app_env,
    assert_clean,
    finish_jobs,
    goto,
    index_folder,
    index_uploads,
    metrics,
    open_page,
    png,
    render,
    results,
    search,
    texts,
    unescape,
    write_images,
)
from applog import DUPLICATED_STATE, StreamlitWarnings

__all__ = ["app_env"]  # a fixture: imported for pytest to find

NEAR = "0.994"  # the tiny test model's near-duplicate similarity (tests/test_app_search_power.py)


def find_groups(at: AppTest | None = None) -> AppTest:
    at = open_page("duplicates") if at is None else goto(at, "duplicates")
    at.button(key="duplicates-find").click().run()
    assert_clean(at)
    return at


def one_group(folder: Path, colour: str, shape: str, sides: tuple[int, ...] = (200,)) -> Path:
    """`folder` holding a picture and a resized, re-encoded copy of it for each of `sides` (one
    group of near-duplicates); the picture."""
    folder.mkdir()
    original = render(colour, shape)
    original.save(picture := folder / f"{colour}-{shape}.png")
    for i, side in enumerate(sides):
        original.resize((side, side)).save(folder / ("copy.jpg" if len(sides) == 1 else f"copy-{i}.jpg"), quality=60 + i)
    return picture


def after_jobs(at: AppTest, page: str) -> AppTest:
    """Let the jobs a page queued finish (watched on the Index page), then come back to `page`."""
    finish_jobs(goto(at, "index"))
    return goto(at, page)


# --------------------------------------------------------------------------------------------
# R3-2: forgetting more than a handful asks first, says how many, and can be undone


def test_forgetting_more_than_a_handful_asks_first_and_undo_adds_them_back(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUPLICATE_THRESHOLD", NEAR)
    folder = app_env / "pictures"
    one_group(folder, "red", "circle", sides=(300, 290, 280, 270, 260, 250, 240))  # seven copies: a group of 8
    write_images(app_env / "others", [("blue", "square"), ("green", "triangle")])
    assert_clean(index_folder(app_env))

    at = find_groups()
    assert "Group 1** · 8 images" in texts(at)
    at.button(key="duplicates-forget-1").click().run()
    assert_clean(at)
    shown = unescape(texts(at))
    assert "Forget 7 images from the index?" in shown and "the next index of their folders adds them back" in shown
    assert metrics(at)["Images indexed"] == "10"  # asked, nothing forgotten yet
    at.button(key="duplicates-confirm-1").click().run()
    assert_clean(at)
    assert "Group 1: 7 images forgotten" in unescape(texts(at)) and metrics(at)["Images indexed"] == "3"

    at.button(key="duplicates-undo").click().run()
    assert_clean(at)
    assert "being indexed again" in unescape(texts(at))
    at = after_jobs(at, "duplicates")
    assert metrics(at)["Images indexed"] == "10" and all(p.exists() for p in folder.iterdir())
    assert not any(b.key == "duplicates-undo" for b in at.button)  # undone once


def test_a_handful_is_forgotten_at_once(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUPLICATE_THRESHOLD", NEAR)
    one_group(app_env / "pictures", "blue", "square")
    assert_clean(index_folder(app_env))
    at = find_groups()
    at.button(key="duplicates-forget-1").click().run()
    assert "Group 1: 1 image forgotten" in unescape(texts(at)) and metrics(at)["Images indexed"] == "1"
    assert any(b.key == "duplicates-undo" for b in at.button)


# --------------------------------------------------------------------------------------------
# R3-7: moved copies stay in the index at their new place, uploads go by the names they were sent
# as, nothing is overwritten, and the move can be undone


def test_moved_copies_stay_findable_uploads_keep_their_names_and_nothing_is_overwritten(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUPLICATE_THRESHOLD", NEAR)
    folder = app_env / "pictures"
    folder.mkdir()
    original = render("green", "triangle")
    original.save(folder / "green-triangle.png")  # the keeper: the most pixels
    small = original.resize((200, 200))
    assert_clean(index_uploads([("holiday.png", png(small), "image/png")]))  # kept as <sha256>.png
    assert_clean(index_folder(folder))
    target = app_env / "set-aside"
    target.mkdir()
    (target / "holiday.png").write_bytes(b"a file that was here first")
    uploads_before = sorted(p for p in (app_env / "uploads").rglob("*") if p.is_file())
    assert len(uploads_before) == 1 and uploads_before[0].stem != "holiday"

    at = find_groups()
    at.text_input(key="duplicates-move-to").input(str(target)).run()
    at.button(key="duplicates-move-1").click().run()
    shown = unescape(texts(at))
    assert "Move 1 file to" in shown and "They stay in the index at their new place" in shown
    assert "Uploads go by the names they were sent as (holiday.png)" in shown
    at.button(key="duplicates-confirm-1").click().run()
    assert_clean(at)
    arrived = target / "holiday (1).png"
    assert arrived.read_bytes() == png(small) and not uploads_before[0].exists()
    assert (target / "holiday.png").read_bytes() == b"a file that was here first"  # not overwritten
    assert "The index follows them" in unescape(texts(at)) and metrics(at)["Images indexed"] == "2"

    at = after_jobs(at, "index")
    assert "Moved near-duplicates: 1 file to" in unescape(texts(at))
    assert any(e.label == "What it found: 1 moved or renamed" for e in at.expander)  # recorded, not encoded again
    at = search("a green triangle", at=goto(at, ""))
    assert_clean(at)
    assert "set\\-aside" in texts(at) and metrics(at)["Images indexed"] == "2"  # found at its new place

    at = goto(at, "duplicates")
    at.button(key="duplicates-undo").click().run()  # "Move them back"
    assert_clean(at)
    assert "1 of 1 files moved back" in unescape(texts(at))
    assert uploads_before[0].read_bytes() == png(small) and not arrived.exists()
    assert sorted(p.name for p in target.iterdir()) == ["holiday.png"]


def test_a_folder_that_cannot_take_the_files_is_one_message(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUPLICATE_THRESHOLD", NEAR)
    picture = one_group(folder := app_env / "pictures", "red", "square")
    assert_clean(index_folder(folder))
    at = find_groups()
    for typed, words in ((str(picture), "is a file, not a folder"), ("relative/folder", "is relative")):
        at.text_input(key="duplicates-move-to").input(typed).run()
        at.button(key="duplicates-move-1").click().run()
        at.button(key="duplicates-confirm-1").click().run()
        assert not at.exception and words in unescape(" ".join(e.value for e in at.error))
        assert sorted(p.name for p in folder.iterdir()) == ["copy.jpg", "red-square.png"]


# --------------------------------------------------------------------------------------------
# R3-4a: every job's report is listed newest first, the watched folder's catch-up included


def test_every_jobs_report_is_listed_newest_first_with_the_watchers_catch_up(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = app_env / "watched"
    write_images(folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    monkeypatch.setenv("IMAGE_DIRS", str(folder))
    monkeypatch.setenv("WATCH", "true")
    at = finish_jobs(open_page("index"))  # opening the store starts the watcher's catch-up
    at = index_folder(folder, at=at)  # queued behind it: finds nothing new
    assert_clean(at)
    shown = unescape(texts(at))
    mine, catch_up = shown.index(f"{folder}** · asked for on a page"), shown.index(f"Catch up {folder}** · watched folder")
    assert mine < catch_up  # newest first
    found = [e.label for e in at.expander if e.label.startswith("What it found")]
    assert found == [  # mine, then the text pass that followed the catch-up, then the catch-up
        "What it found: 6 unchanged, 1 failed, 1 skipped", "What it found: 6 read for text",
        "What it found: 6 added, 1 failed, 1 skipped",
    ]
    summaries = [unescape(c.value) for c in at.caption if " in " in c.value and " s" in c.value]
    assert summaries[-1].startswith("6 added, 1 failed, 1 skipped (video")  # the catch-up's report, in words
    failures = [df.value for df in at.dataframe if "reason" in df.value.columns and "file" in df.value.columns]
    assert any(str(folder / "broken.jpg") in list(f["file"]) for f in failures)  # with its reason


# --------------------------------------------------------------------------------------------
# R3-8: a date alone is a filter, Clear filters clears it, and Streamlit has nothing to warn about


@pytest.mark.parametrize("key", ["filter-after", "filter-before"])
def test_a_date_alone_is_a_filter_that_clears_without_a_widget_warning(app_env: Path, key: str) -> None:
    folder = app_env / "pictures"
    paths = write_images(folder)
    for year, path in enumerate(paths, 2015):
        stamp = datetime(year, 6, 1, 12, tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
    assert_clean(index_folder(folder))
    with StreamlitWarnings() as warnings:
        at = search("a shape")
        assert not any(b.key == "filter-clear" for b in at.button)
        at.date_input(key=key).set_value(date(2018, 1, 1)).run()
        assert_clean(at)
        assert any(b.key == "filter-clear" for b in at.button)  # the date alone is a filter
        assert len(results(at)) == 3  # 2018, 2019, 2020 from; 2015, 2016, 2017 until
        at.button(key="filter-clear").click().run()
        assert_clean(at)
        assert at.date_input(key=key).value is None and not any(b.key == "filter-clear" for b in at.button)
        at.number_input(key="filter-min-width").set_value(100).run()
        at.button(key="filter-clear").click().run()
        assert at.number_input(key="filter-min-width").value == 0
    assert not [m for m in warnings.messages if DUPLICATED_STATE in m], warnings.messages
    assert not warnings.messages, warnings.messages


# --------------------------------------------------------------------------------------------
# R3-9: a search opened from a shared URL shows its query in the search box


def test_a_shared_search_shows_its_words_in_the_search_box(app_env: Path) -> None:
    write_images(app_env / "pictures")
    assert_clean(index_folder(app_env / "pictures"))
    shared = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    shared.query_params["q"] = ["1:a red circle", "-1:people"]
    shared.run()
    assert_clean(shared)
    assert shared.text_input(key="search-text").value == "a red circle"
    assert "results** for “a red circle” − “people”" in texts(shared)
