"""The date filter on the stored day (embedder/store/schema.py), on real embedded stores of real photos.

It finds the same images in the same order as the two date ranges it replaced, and a store made before
the day field existed answers correctly when opened, and again once the next `index` run has given
its images their day from their stored dates (nothing re-encoded, every point kept).
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from faultkit import dated_jpeg

from embedder.engine import Engine
from embedder.query.filters import make_filter
from embedder.query.terms import Query
from embedder.store import SearchFilter
from embedder.store import edge as store_edge

pytest.importorskip("qdrant_edge")

# (DateTimeOriginal, SubsecTimeOriginal, OffsetTimeOriginal): the edges of days, years and offsets.
PHOTOS = [
    ("2023:12:31 23:59:59", "999", None),  # the last millisecond of a year
    ("2024:01:01 00:00:00", None, None),
    ("2024:01:01 12:00:00", "5", "+09:00"),
    ("2024:02:29 08:00:00", None, None),
    ("2024:05:31 23:00:00", None, "-05:00"),  # late in the evening west of UTC: still May 31st
    ("2024:06:01 23:30:00", "25", "+02:00"),  # late at night east of UTC: still June 1st
    ("2024:06:02 00:30:00", None, "+02:00"),
    ("2024:06:02 23:59:59", "99", None),
    ("2024:12:31 00:00:00", None, None),
    ("2025:03:10 10:10:10", None, None),
]
NO_EXIF_MTIME = datetime(2024, 6, 2, 18, 0, tzinfo=timezone.utc).timestamp()  # counts by its file time, in UTC
RANGES = [
    (date(2024, 6, 1), date(2024, 6, 1)),
    (date(2024, 6, 2), date(2024, 6, 2)),
    (date(2024, 5, 31), date(2024, 6, 2)),
    (date(2023, 12, 31), date(2023, 12, 31)),
    (date(2024, 1, 1), date(2024, 12, 31)),
    (None, date(2024, 2, 29)),
    (date(2024, 6, 2), None),
    (date(2026, 1, 1), None),
]


def photos(folder: Path) -> Path:
    for i, (original, subsec, offset) in enumerate(PHOTOS):
        tags = {"DateTimeOriginal": original, "SubsecTimeOriginal": subsec, "OffsetTimeOriginal": offset}
        dated_jpeg(folder / f"p{i:02d}.jpg", i + 1, **{k: v for k, v in tags.items() if v})
    plain = dated_jpeg(folder / "no-exif.jpg", len(PHOTOS) + 1)
    os.utime(plain, (NO_EXIF_MTIME, NO_EXIF_MTIME))
    return folder


def as_before(after: date | None, before: date | None) -> SearchFilter:
    """The filter `make_filter` made before the day field: two ranges on the date, in seconds."""
    midnight = lambda day: datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()  # noqa: E731
    return SearchFilter(
        date_from=midnight(after) if after else None, date_to=midnight(before) + 86_399.999 if before else None
    )


def answers(engine: Engine, where: SearchFilter) -> tuple[list[str], list[str], list[str]]:
    """A text search's ids in order, browsing by date, and every image the filter keeps."""
    found = [r.id for r in engine.searcher.search(Query.text("a photo", where=where), limit=50)]
    newest = [h.id for h in engine.store.newest(50, where)]
    kept = sorted(i for i, _, _ in engine.store.scroll(where=where))
    return found, newest, kept


def test_the_day_filter_finds_what_the_date_ranges_found_in_the_same_order(engine: Engine, tmp_path: Path) -> None:
    assert len(engine.indexer.index([photos(tmp_path / "photos")]).added) == len(PHOTOS) + 1
    for after, before in RANGES:
        by_day = answers(engine, make_filter(after=after, before=before))
        assert by_day == answers(engine, as_before(after, before)), (after, before)
    names = lambda where: sorted(Path(p["paths"][0]).name for _, p, _ in engine.store.scroll(where=where))  # noqa: E731
    assert names(make_filter(after=date(2024, 6, 2), before=date(2024, 6, 2))) == ["no-exif.jpg", "p06.jpg", "p07.jpg"]
    assert names(make_filter(after=date(2023, 12, 31), before=date(2023, 12, 31))) == ["p00.jpg"]


def test_a_store_made_before_the_day_field_answers_before_and_after_the_next_index(
    tmp_path: Path, reopen, monkeypatch, caplog
) -> None:
    folder = photos(tmp_path / "photos")
    with monkeypatch.context() as older:  # the store as the version before wrote it: no `day`, no index on it
        older.setattr(store_edge, "with_day", lambda payload: payload)
        older.setattr(store_edge, "INTEGER_FIELDS", ())
        older.setattr(store_edge, "INDEXING_THRESHOLD_KB", 1)  # a graph segment, whose points `day` must move
        old = reopen()
        old.indexer.index([folder])
        assert old.store.optimize(force=True) and old.store.stats()["indexed"] > 0
        expected = {(a, b): answers(old, as_before(a, b)) for a, b in RANGES}
        old.close()

    upgraded = reopen()
    try:
        assert "Adding to the store's search-filter indexes" in caplog.text  # the day's index, made on open
        for (after, before), answer in expected.items():  # points without a day are found by their date
            assert answers(upgraded, make_filter(after=after, before=before)) == answer, (after, before)
        caplog.clear()
        report = upgraded.indexer.index([folder])  # the next run gives them their day, from the stored dates
        assert report.added == [] and len(report.unchanged) == len(PHOTOS) + 1  # nothing re-encoded
        assert f"Giving {len(PHOTOS) + 1} stored images the day number" in caplog.text
        assert upgraded.store.fill_days() == 0 and upgraded.store.count() == len(PHOTOS) + 1
        for (after, before), answer in expected.items():
            assert answers(upgraded, make_filter(after=after, before=before)) == answer, (after, before)
    finally:
        upgraded.close()
    again = reopen()  # the damage checks on open pass, and the day is asked of `day` now
    try:
        assert again.store.count() == len(PHOTOS) + 1 and again.store.fill_days() == 0
        for (after, before), answer in expected.items():
            assert answers(again, make_filter(after=after, before=before)) == answer, (after, before)
    finally:
        again.close()
