"""One search box, end to end through `python -m embedder`: a folder of photos, screenshots, a receipt
and a sign is indexed (the picture pass, then real OCR in the text pass), and the words in the
pictures, their names and typed years find the right images first; JSON hits say why; --sort,
--only and the cutoff; bad queries get one clear line."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from modelkit import photo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import text_set  # noqa: E402

HIT_FIELDS = {"score", "path", "name", "id", "taken", "matched"}


def stamp(path: Path, day: str) -> Path:
    seconds = datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() + 12 * 3600
    os.utime(path, (seconds, seconds))
    return path


def draw_library(folder: Path) -> dict[str, Path]:
    """Pictures that say things, photos that do not, each with the day it was taken (the file's time)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    made = {
        "wifi": folder / "screens" / "IMG_0001.png",
        "receipt": folder / "receipt.png",
        "sign": folder / "station.jpg",
        "cake": folder / "family" / "grandmas-birthday-cake.jpg",
        "p2019": folder / "p1.jpg",
        "p2020": folder / "p2.png",
        "p2022": folder / "p3.jpg",
    }
    for path in made.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    rows = [("Network", "Name-Guest"), ("Password", "Pa55word!"), ("Security", "WPA2 Personal")]
    text_set.screenshot("Wi-Fi", rows, screen=(720, 1280)).save(made["wifi"])
    text_set.receipt("CORNER CAFE", [("Coffee", "3.20"), ("Croissant", "2.10")], "5.30", ["THANK YOU"]).save(made["receipt"])
    text_set.sign_photo(["PLATFORM 4", "SUMMER 2019"], rng, size=(1600, 1200), share=0.6).save(made["sign"], quality=92)
    for n, key in enumerate(("cake", "p2019", "p2020", "p2022")):
        image = photo(10 + n, (320, 240))
        image.save(made[key], quality=92) if made[key].suffix == ".jpg" else image.save(made[key])
    days = {"wifi": "2024-03-02", "receipt": "2023-11-20", "sign": "2023-06-01", "cake": "2021-05-09",
            "p2019": "2019-07-04", "p2020": "2020-02-14", "p2022": "2022-08-30"}
    for key, day in days.items():
        stamp(made[key], day)
    return made


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, model_path: Path):
    """The library, indexed once by `embedder index` for every test of this module."""
    root = tmp_path_factory.mktemp("search-box")
    made = draw_library(root / "pictures")
    env = {"EMBEDDER_MODEL": str(model_path), "EMBEDDER_DEVICE": "cpu", "QDRANT_PATH": str(root / "qdrant"),
           "UPLOAD_DIR": str(root / "uploads")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield root / "pictures", made, env


@pytest.fixture(scope="module")
def indexed(library):
    folder, made, env = library
    code, report = run(["index", str(folder), "--json"], env)
    assert code == 0, report
    return made, report


def run(argv: list[str], env: dict[str, str]) -> tuple[int, object]:
    """The CLI's exit code and its JSON output, in this process."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse refused an argument: one line, exit 2
                code = exc.code
    text = out.getvalue()
    run.stderr = err.getvalue()  # type: ignore[attr-defined]
    return code, json.loads(text) if text.strip().startswith(("[", "{")) else text


def search(library, *argv: str) -> list[dict]:
    code, hits = run(["search", *argv, "--json"], library[2])
    assert code == 0, run.stderr  # type: ignore[attr-defined]
    assert isinstance(hits, list)
    return hits


def name_of(hit: dict) -> str:
    return Path(hit["path"]).name


def test_the_index_run_reads_the_text_of_what_it_indexed(indexed) -> None:
    made, report = indexed
    assert len(report["added"]) == len(made)
    assert len(report["read"]) == len(made)
    assert {str(made[k]) for k in ("wifi", "receipt", "sign")} <= set(report["with_text"])
    assert report["text_failed"] == []


def test_a_word_written_in_a_screenshot_finds_it_first_and_says_where(library, indexed) -> None:
    made, _ = indexed
    hits = search(library, "guest")  # a word inside a longer token: Name-Guest
    assert hits[0]["path"] == str(made["wifi"])
    assert "text" in hits[0]["matched"]
    assert "Name-Guest" in hits[0]["text"]
    start, end = hits[0]["marks"][0]
    assert hits[0]["text"][start:end].lower() == "guest"
    assert HIT_FIELDS <= hits[0].keys() and hits[0]["taken"] == "2024-03-02"


def test_a_receipts_item_finds_the_receipt_first(library, indexed) -> None:
    made, _ = indexed
    hits = search(library, "coffee")
    assert hits[0]["path"] == str(made["receipt"]) and "text" in hits[0]["matched"]


def test_a_file_name_finds_its_picture_first_and_says_so(library, indexed) -> None:
    made, _ = indexed
    hits = search(library, "birthday cake")
    assert hits[0]["path"] == str(made["cake"])
    assert "name" in hits[0]["matched"] and "text" not in hits[0]
    assert all("text" not in h or "text" in h["matched"] for h in hits)


def test_a_typed_year_is_the_date_filter_and_still_matches_a_sign_saying_it(library, indexed) -> None:
    made, _ = indexed
    only_year = search(library, "2019", "--all")
    assert {h["path"] for h in only_year} == {str(made["p2019"]), str(made["sign"])}  # taken then, or saying so
    assert "only a date" in run.stderr  # type: ignore[attr-defined]
    hits = search(library, "platform 2019", "--all")
    assert hits[0]["path"] == str(made["sign"])
    assert {h["path"] for h in hits} <= {str(made["p2019"]), str(made["sign"])}
    as_words = search(library, "2019", "--no-dates", "--all", "-k", "20")  # no date filter: only the sign says it
    assert as_words[0]["path"] == str(made["sign"]) and "text" in as_words[0]["matched"]
    assert len(as_words) == len(made)


def test_sort_orders_what_passed_by_the_day_taken(library, indexed) -> None:
    newest = [h["taken"] for h in search(library, "a photo", "--all", "--sort", "newest", "-k", "20")]
    oldest = [h["taken"] for h in search(library, "a photo", "--all", "--sort", "oldest", "-k", "20")]
    assert newest == sorted(newest, reverse=True) and oldest == sorted(oldest)
    assert len(newest) == len(oldest) == 7


def test_only_keeps_results_found_that_way(library, indexed) -> None:
    made, _ = indexed
    assert str(made["wifi"]) not in {h["path"] for h in search(library, "guest", "--only", "name")}
    by_text = search(library, "guest", "--only", "text")
    assert [h["path"] for h in by_text] == [str(made["wifi"])]
    assert [name_of(h) for h in search(library, "grandmas", "--only", "name")] == ["grandmas-birthday-cake.jpg"]
    pictures = search(library, "guest", "--only", "picture", "--all")
    assert all(h["matched"] == ["picture"] for h in pictures)


def test_the_cutoff_leaves_out_weaker_results_and_says_how_many(library, indexed) -> None:
    everything = search(library, "receipt coffee", "--all", "-k", "20")
    cut = search(library, "receipt coffee", "-k", "20")
    assert cut == everything[: len(cut)] and cut[0]["name"] == "receipt.png"
    left_out = len(everything) - len(cut)
    if left_out:
        assert f"{left_out} weaker result" in run.stderr  # type: ignore[attr-defined]


def test_a_query_of_only_punctuation_gets_one_clear_line(library, indexed) -> None:
    code, out = run(["search", "!!! ...", "--json"], library[2])
    lines = run.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert code != 0 and out == "" and len(lines) == 1 and "no letters or digits" in lines[0]


def test_a_query_of_ten_thousand_characters_is_searched_by_its_looks_and_says_so(library, indexed) -> None:
    hits = search(library, ("coffee " * 1500)[:10_000])
    assert hits and "10,000 characters" in run.stderr and "shorten it" in run.stderr  # type: ignore[attr-defined]
