"""A re-index fills in payload fields that points stored by older versions lack, without re-encoding."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from streamlit.testing.v1 import AppTest

from appkit import metrics
from embedder.engine import Engine
from embedder.errors import ImageError
from embedder.media.images import decode, read_meta
from embedder.indexing.indexer import PAYLOAD_FIELDS
from embedder.query.terms import Query
from embedder.query.filters import make_filter
from embedder.indexing.lexicon import FIELDS as WORD_FIELDS
from embedder.indexing.tags import FIELDS as TAG_FIELDS
from imagefiles import png_bomb, solid

TAKEN = "2021:07:04 12:30:00"
TAKEN_AT = 1625401800.0  # TAKEN as UTC seconds
OLD_FIELDS = ("sha256", "paths", "names")  # all a point of an older version is assumed to have
LIMIT = 10**8


def exif_date() -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = TAKEN
    return exif.tobytes()


@pytest.fixture
def album(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    solid(root / "dated.jpg", "red", size=(96, 64), exif=exif_date())
    solid(root / "trip" / "blue.png", "blue", size=(40, 70))
    solid(root / "green.webp", "green", size=(50, 50))
    return root


@pytest.fixture
def refuse_pixels(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it and any decode or encode of pixels from then on fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a known image was decoded or encoded again")

    def start() -> None:
        monkeypatch.setattr(engine.encoder, "encode_images", refuse)
        monkeypatch.setattr("embedder.indexing.indexer.decode", refuse)

    return start


def by_path(engine: Engine) -> dict[str, tuple[str, dict]]:
    """(point id, payload) of every stored point, by its first path."""
    return {payload["paths"][0]: (pid, payload) for pid, payload, _ in engine.store.scroll()}


def strip(engine: Engine, keep: tuple[str, ...] = OLD_FIELDS, **values) -> dict[str, dict]:
    """Make every point look stored by an older version; returns the full payloads it had."""
    full = by_path(engine)
    for pid, payload in full.values():
        engine.store.set_payload(pid, {**{k: payload[k] for k in keep}, **values})
    return {path: payload for path, (_, payload) in full.items()}


def vectors(engine: Engine) -> dict[str, np.ndarray]:
    return {pid: vector for pid, _, vector in engine.store.scroll(with_vectors=True)}


def test_read_meta_reads_the_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [
        solid(tmp_path / "dated.jpg", exif=exif_date()),
        solid(tmp_path / "plain.png"),
        solid(tmp_path / "dated.png", exif=exif_date()),
        solid(tmp_path / "dated.webp", exif=exif_date()),
        solid(tmp_path / "dated.tif", exif=exif_date()),
        solid(tmp_path / "plain.gif"),
    ]
    decoded = {f.name: decode(f, LIMIT).meta for f in files}

    def refuse(self, *args):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    assert {f.name: read_meta(f, LIMIT) for f in files} == decoded
    assert decoded["dated.jpg"].taken_at == decoded["dated.webp"].taken_at == TAKEN_AT


def test_read_meta_fails_with_the_reasons_of_decode(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("just text")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()
    png_bomb(tmp_path / "bomb.png")
    solid(tmp_path / "big.png", size=(100, 100))
    cases = {name: LIMIT for name in ("text.png", "empty.jpg", "folder.jpg", "gone.jpg", "bomb.png")}
    for name, limit in {**cases, "big.png": 9999}.items():
        with pytest.raises(ImageError) as by_decode:
            decode(tmp_path / name, limit)
        with pytest.raises(ImageError) as by_header:
            read_meta(tmp_path / name, limit)
        assert str(by_header.value) == str(by_decode.value), name


def test_fresh_points_have_every_payload_field(engine: Engine, album: Path) -> None:
    engine.indexer.index([album])
    assert all(payload.keys() == PAYLOAD_FIELDS | TAG_FIELDS | WORD_FIELDS for _, payload in by_path(engine).values())


def test_reindex_fills_in_missing_fields_without_encoding(
    engine: Engine, album: Path, refuse_pixels: Callable[[], None]
) -> None:
    engine.indexer.index([album])
    before = vectors(engine)
    full = strip(engine)
    refuse_pixels()
    report = engine.indexer.index([album])
    assert sorted(report.updated) == sorted(full)
    assert (report.added, report.unchanged, report.renamed, report.failed) == ([], [], [], [])
    assert "3 updated" in report.summary() and report.as_dict()["updated"] == report.updated
    now = by_path(engine)
    for path, payload in full.items():
        assert {**now[path][1], "indexed_at": None} == {**payload, "indexed_at": None}, path
    dated = now[str(album / "dated.jpg")][1]
    assert (dated["width"], dated["height"], dated["format"]) == (96, 64, "JPEG")
    assert dated["taken_at"] == dated["date"] == TAKEN_AT
    assert dated["bytes"] == (album / "dated.jpg").stat().st_size
    blue = now[str(album / "trip" / "blue.png")][1]
    assert (blue["width"], blue["height"], blue["format"], blue["taken_at"]) == (40, 70, "PNG", None)
    assert blue["date"] == blue["mtime"] == pytest.approx((album / "trip" / "blue.png").stat().st_mtime, abs=1e-3)
    assert blue["folder"] == str(album / "trip") and str(album) in blue["folders"]
    after = vectors(engine)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[pid], before[pid]) for pid in before)


def test_filters_find_the_filled_in_points(engine: Engine, album: Path) -> None:
    engine.indexer.index([album])
    strip(engine)
    filters = {
        "folder": (make_filter(folder=str(album / "trip")), ["blue.png"]),
        "format": (make_filter(types=["jpg"]), ["dated.jpg"]),
        "date": (make_filter(after=date(2021, 7, 4), before=date(2021, 7, 4)), ["dated.jpg"]),
        "size": (make_filter(min_height=66), ["blue.png"]),
    }

    def found(where) -> list[str]:
        return sorted(r.name for r in engine.searcher.search(Query.text("a photo", where=where), 10))

    assert {name: found(where) for name, (where, _) in filters.items()} == {name: [] for name in filters}
    engine.indexer.index([album])
    assert {name: found(where) for name, (where, _) in filters.items()} == {n: want for n, (_, want) in filters.items()}


def test_stored_values_win_and_a_second_reindex_has_nothing_to_fill(engine: Engine, album: Path) -> None:
    engine.indexer.index([album])
    kept = {"date": 946684800.0, "format": "JPEG", "model": "an older model"}
    full = strip(engine, keep=(*OLD_FIELDS, "bytes"), **kept)
    assert len(engine.indexer.index([album]).updated) == 3
    for path, (_, payload) in by_path(engine).items():
        assert {k: payload[k] for k in kept} == kept, path
        assert (payload["width"], payload["folders"]) == (full[path]["width"], full[path]["folders"])

    again = engine.indexer.index([album])
    assert sorted(again.unchanged) == sorted(full) and again.updated == []
    assert "updated" not in again.summary()


def test_a_file_unreadable_now_leaves_its_point_as_it_was(
    engine: Engine, album: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine.indexer.index([album])
    full = strip(engine)

    def unreadable(path: Path, max_pixels: int):
        raise ImageError("permission denied")

    monkeypatch.setattr("embedder.indexing.indexer.read_meta", unreadable)
    with caplog.at_level(logging.INFO, logger="embedder.indexing.indexer"):
        report = engine.indexer.index([album])
    assert sorted(report.unchanged) == sorted(full)
    assert (report.updated, report.failed, report.added) == ([], [], [])
    # the file's fields stay as stored; tags come from the stored vector and words from the names,
    # which need no file
    assert all(payload.keys() == set(OLD_FIELDS) | TAG_FIELDS | WORD_FIELDS for _, payload in by_path(engine).values())
    assert engine.store.count() == 3
    assert "permission denied" in caplog.text and str(album / "dated.jpg") in caplog.text


def test_a_copied_image_missing_fields_is_written_once(
    engine: Engine, album: Path, monkeypatch: pytest.MonkeyPatch, refuse_pixels: Callable[[], None]
) -> None:
    engine.indexer.index([album])
    strip(engine)
    copy = str(shutil.copy(album / "dated.jpg", album / "trip" / "copy.jpg"))
    writes: list[str] = []
    set_payload = engine.store.set_payload

    def counted(point_id: str, payload: dict) -> None:
        writes.append(point_id)
        set_payload(point_id, payload)

    monkeypatch.setattr(engine.store, "set_payload", counted)
    refuse_pixels()
    report = engine.indexer.index([album])
    assert report.copies == [copy] and report.renamed == []  # dated.jpg is still there: a copy, not a move
    assert str(album / "dated.jpg") in report.updated and len(report.updated) == 3
    assert report.unchanged == [] and sorted(writes) == sorted(set(writes)) and len(writes) == 3
    payload = by_path(engine)[str(album / "dated.jpg")][1]
    assert payload["paths"] == [str(album / "dated.jpg"), copy]
    assert {str(album), str(album / "trip")} <= set(payload["folders"])
    assert payload["date"] == TAKEN_AT and payload["width"] == 96


def test_folders_come_from_every_stored_path(engine: Engine, album: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(album / "green.webp", elsewhere / "green.webp")
    engine.indexer.index([album, elsewhere])
    strip(engine)
    engine.indexer.index([album])  # finds only one of the two copies
    payload = by_path(engine)[str(album / "green.webp")][1]
    assert payload["paths"] == [str(album / "green.webp"), str(elsewhere / "green.webp")]
    assert {str(album), str(elsewhere)} <= set(payload["folders"])


def test_the_index_page_shows_updated_files() -> None:
    def script() -> None:
        from embedder.indexing.indexer import IndexReport
        from embedder_ui.pages.index import _show_report

        _show_report(IndexReport(unchanged=["/a.jpg"], updated=["/b.jpg", "/c.jpg"]))

    at = AppTest.from_function(script).run()
    counts = metrics(at)
    assert (counts["Renamed"], counts["Updated"], counts["Unchanged"]) == ("0", "2", "1")
    assert list(counts).index("Updated") == list(counts).index("Renamed") + 1
    assert "2 updated" in at.success[0].value
