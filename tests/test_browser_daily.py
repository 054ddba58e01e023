"""Daily use, round 3, in a real Chromium: Move the others on the Duplicates page, the viewer's
arrow key, the URL following the search at once, and the folder filter's first option.

The app and the browser are started as in test_browser.py (its fixtures), and so the app's log must
end without a traceback or any Streamlit warning. Every wait is on something the page shows.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, expect

from faultkit import distinct_image
from browserkit import idle
from test_browser import (  # noqa: F401 - app_url, chromium and page are fixtures
    app_url,
    chromium,
    find_the_one_duplicate_group,
    go_index,
    go_search,
    index_a_folder,
    library_with_a_copy,
    page,
    search_for,
    write_test_images,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

def _files(*folders: Path) -> dict[Path, str]:
    """Every file under `folders` with the SHA-256 of its bytes."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in f.rglob("*") if p.is_file()}


def _indexed(pg) -> Locator:
    return pg.locator('[data-testid="stSidebar"] [data-testid="stMetricValue"]').first


def _query(pg) -> dict[str, list[str]]:
    return parse_qs(urlsplit(pg.url).query)


# --------------------------------------------------------------------------------------------
# R3-6, R3-7: Move the others moves one group's copies, asks first, overwrites and deletes nothing,
# and the moved image stays in the index at its new place


def test_move_the_others_moves_the_copies_on_disk_and_they_stay_indexed(page, tmp_path: Path) -> None:
    pg = page
    library = tmp_path / "library"
    files, red_circle = library_with_a_copy(library)
    copy = library / "copies" / "red-circle-small.jpg"
    target = tmp_path / "set aside"
    target.mkdir()
    (target / copy.name).write_bytes(b"a file that was here first")
    before = _files(library, target)
    index_a_folder(pg, library)
    expect(_indexed(pg)).to_have_text(str(len(files) + 1))

    find_the_one_duplicate_group(pg)
    pg.get_by_label("Move the others to", exact=True).fill(str(target))
    pg.get_by_role("button", name="Move the others…").click()
    # Asks first, saying how many and what becomes of them (the typed folder reached the app: it is quoted).
    pg.get_by_text(re.compile(rf"^Move 1 file to {re.escape(str(target))}\? They stay in the index")).wait_for()
    idle(pg)
    assert copy.is_file()  # nothing moved before the answer
    pg.get_by_role("button", name="Move them").click()
    pg.get_by_text(re.compile(r"^Group 1: 1 of 1 files moved to")).wait_for()
    idle(pg)

    after = _files(library, target)
    arrived = target / "red-circle-small (1).jpg"
    assert not copy.exists() and after[arrived] == before[copy]  # moved, under a free name
    assert after[target / copy.name] == before[target / copy.name]  # nothing overwritten
    assert sorted(after.values()) == sorted(before.values())  # nothing deleted, nothing made up
    assert all(after[f] == before[f] for f in files)  # the kept original and the others untouched
    expect(pg.locator('[data-testid="stDataFrame"]')).to_be_visible()  # the report of every move
    pg.get_by_text(re.compile(r"The index follows them")).wait_for()

    # Still indexed, at the new place: the job the move queued records it, without encoding it again.
    go_index(pg)
    pg.get_by_text(re.compile(r"^Moved near-duplicates: 1 file to")).wait_for()
    expect(pg.get_by_text("What it found: 1 moved or renamed")).to_be_visible()
    expect(_indexed(pg)).to_have_text(str(len(files) + 1))


# --------------------------------------------------------------------------------------------
# R3-9: → keeps stepping through the viewer, however fast it is pressed


RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
LOADED = "() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete && i.naturalWidth > 0)"


def test_the_arrow_key_keeps_stepping_through_the_viewer(page, tmp_path: Path) -> None:
    pg = page
    files = write_test_images(tmp_path / "library")
    count = len(files)
    index_a_folder(pg, tmp_path / "library")
    go_search(pg)
    search_for(pg, "a shape")
    pg.get_by_role("button", name="View").first.click()
    dialog = pg.get_by_role("dialog")
    expect(dialog).to_contain_text(f"· 1 of {count} ·")
    shown = dialog.locator('[data-testid="stImage"] img')
    expect(shown).to_be_visible()
    idle(pg)

    # Quick presses, each as soon as the page says it is idle and its picture has loaded: a press may
    # reach the app while it still draws the step before. Streamlit may merge such a press with the
    # one before it, but the viewer must not stall (on main it once stuck for good at 4 of 8).
    for _ in range(5):
        pg.keyboard.press("ArrowRight")
        idle(pg)
        pg.wait_for_function(LOADED)
        idle(pg)

    # Then as a person does: press, look at the picture while the sidebar redraws itself (its job
    # line, every STATUS_REFRESH_S), press again: each press shows the next picture.
    seen: list[str | None] = []
    for _ in range(count + 1):  # round past the last to the first
        pg.wait_for_selector(RUNNING)  # the sidebar's own redraw: what was pressed before is drawn
        idle(pg)
        rank = int(re.search(rf"· (\d+) of {count} ·", dialog.inner_text())[1])
        seen.append(shown.get_attribute("src"))
        pg.keyboard.press("ArrowRight")
        expect(dialog).to_contain_text(f"· {rank % count + 1} of {count} ·")
        expect(shown).not_to_have_attribute("src", seen[-1])
    assert len(set(seen)) == count
    idle(pg)
    pg.keyboard.press("Escape")  # and Escape still closes it
    dialog.wait_for(state="hidden")


# --------------------------------------------------------------------------------------------
# R3-10: the URL follows the search at once: a weight change, then Similar


def test_the_url_follows_a_weight_change_and_similar_at_once(page, tmp_path: Path) -> None:
    pg = page
    library = tmp_path / "library"
    files = write_test_images(library)
    index_a_folder(pg, library)
    go_search(pg)
    search_for(pg, "a red circle")
    assert _query(pg)["q"] == ["1:a red circle"]

    pg.locator('[data-testid="stExpander"]').filter(has_text="Your query").locator("summary").first.click()
    pg.locator('[data-testid="stMain"] [data-testid="stSlider"]').filter(has_text="+1.00").wait_for()
    weight = pg.locator('[data-testid="stMain"]').get_by_role("slider", name="Weight").first
    weight.focus()
    weight.press("ArrowRight")  # 1 → 1.25
    pg.get_by_text(re.compile(r"results? for 1\.25× “a red circle”")).wait_for()
    idle(pg)
    assert _query(pg)["q"] == ["1.25:a red circle"], pg.url  # read once, right after the change

    pg.locator('[data-testid="stMain"]').get_by_role("button", name="Similar", exact=True).first.click()
    pg.get_by_text(re.compile(r"results? for images like ")).wait_for()
    idle(pg)
    assert "q" not in _query(pg), pg.url  # an image search: no words to share
    assert len(files) > 1


# --------------------------------------------------------------------------------------------
# R3-11: typing an indexed folder in the folder filter and pressing Enter picks that folder


def test_typing_a_folder_and_enter_picks_the_matching_indexed_folder(page, tmp_path: Path) -> None:
    pg = page
    library = tmp_path / "library"
    n = 0
    for year, month, count in (("2019", "11", 1), ("2019", "12", 2), ("2020", "12", 1)):
        (library / year / month).mkdir(parents=True)
        for _ in range(count):
            distinct_image(n).save(library / year / month / f"IMG_{n:04d}.jpg")
            n += 1
    index_a_folder(pg, library)
    go_search(pg)
    search_for(pg, "a photo")

    box = pg.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Folder").locator("input")
    box.click()
    box.fill("2019/12")
    first = pg.get_by_role("option").first
    expect(first).to_have_text(f"2019/12 · {library / '2019' / '12'}")
    box.press("Enter")
    pg.get_by_text(re.compile(r"^2 results for “a photo”")).wait_for()
    idle(pg)
    assert _query(pg)["filter-folder"] == [str(library / "2019" / "12")]
