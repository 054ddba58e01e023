"""EXIF dates: the camera's wall clock with its offset; the day filter and the dates shown agree on it."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from faultkit import dated_jpeg, distinct_image

from embedder.engine import Engine
from embedder.media.images import decode, read_meta
from embedder.query.filters import make_filter
from embedder_ui.format import taken_on, when_taken

LIMIT = 50_000_000


def wall_clock(*when: int) -> float:
    return datetime(*when, tzinfo=timezone.utc).timestamp()


def both_ways(path: Path) -> tuple[float | None, str | None]:
    """What decoding and header-only reading find, after checking they agree."""
    decoded, header = decode(path, LIMIT).meta, read_meta(path, LIMIT)
    assert (decoded.taken_at, decoded.taken_offset) == (header.taken_at, header.taken_offset)
    return decoded.taken_at, decoded.taken_offset


def test_the_offset_is_kept_beside_the_wall_clock_time(tmp_path: Path) -> None:
    path = dated_jpeg(
        tmp_path / "a.jpg", DateTimeOriginal="2024:06:01 23:30:00", SubsecTimeOriginal="25", OffsetTimeOriginal="+02:00"
    )
    assert both_ways(path) == (wall_clock(2024, 6, 1, 23, 30) + 0.25, "+02:00")


def test_offset_time_stands_in_for_a_missing_offset_time_original(tmp_path: Path) -> None:
    path = dated_jpeg(tmp_path / "a.jpg", DateTimeOriginal="2024:06:01 23:30:00", OffsetTime="-05:30")
    assert both_ways(path) == (wall_clock(2024, 6, 1, 23, 30), "-05:30")


def test_without_an_offset_the_wall_clock_time_is_stored_as_before(tmp_path: Path) -> None:
    path = dated_jpeg(tmp_path / "a.jpg", DateTimeOriginal="2021:07:04 12:30:00")
    assert both_ways(path) == (1625401800.0, None)  # what earlier versions stored for this file
    assert both_ways(dated_jpeg(tmp_path / "b.jpg", DateTime="2020:02:29 08:00:00")) == (wall_clock(2020, 2, 29, 8), None)


@pytest.mark.parametrize(
    "original",
    ["0000:00:00 00:00:00", "    :  :     :  :  ", "2024:13:01 10:00:00", "2024:06:01 24:00:00", b"\xff\xfe\x00garbage", ""],
)
def test_a_malformed_date_is_no_date_and_the_image_still_decodes(tmp_path: Path, original: object) -> None:
    path = dated_jpeg(tmp_path / "a.jpg", DateTimeOriginal=original, OffsetTimeOriginal="+02:00")
    assert both_ways(path) == (None, None)
    assert decode(path, LIMIT).image.size == distinct_image(1).size
    # A good DateTime in IFD0 is still used when DateTimeOriginal is unreadable.
    fallback = dated_jpeg(tmp_path / "b.jpg", DateTimeOriginal=original, DateTime="2019:05:01 10:00:00")
    assert both_ways(fallback) == (wall_clock(2019, 5, 1, 10), None)


@pytest.mark.parametrize("offset", ["+25:00", "-13:00", "+02:60", "02:00", "+2:00", "Z", "   :  ", b"\xff\xfe+02:00"])
def test_a_malformed_offset_is_dropped_and_the_date_kept(tmp_path: Path, offset: object) -> None:
    path = dated_jpeg(
        tmp_path / "a.jpg", DateTimeOriginal="2024:06:01 23:30:00", SubsecTimeOriginal="x1", OffsetTimeOriginal=offset
    )
    assert both_ways(path) == (wall_clock(2024, 6, 1, 23, 30), None)


def test_the_day_filter_and_the_dates_shown_agree_on_the_photographers_day(engine: Engine, tmp_path: Path) -> None:
    """Late at night east of UTC and late in the evening west of it: a UTC instant would move both
    pictures to another day; the wall clock keeps them on the day the photographer saw."""
    late = dated_jpeg(tmp_path / "late.jpg", 1, DateTimeOriginal="2024:06:01 23:30:00", OffsetTimeOriginal="+02:00")
    after_midnight = dated_jpeg(
        tmp_path / "after-midnight.jpg", 2, DateTimeOriginal="2024:06:02 00:30:00", OffsetTimeOriginal="+02:00"
    )
    evening_west = dated_jpeg(
        tmp_path / "evening.jpg", 3, DateTimeOriginal="2024:05:31 23:00:00", OffsetTimeOriginal="-05:00"
    )
    no_offset = dated_jpeg(tmp_path / "plain.jpg", 4, DateTimeOriginal="2024:06:01 00:00:00")
    assert len(engine.indexer.index([tmp_path]).added) == 4

    def on(day: date) -> dict[str, dict]:
        where = make_filter(after=day, before=day)  # what the Search page's date range and --after/--before make
        return {Path(p["paths"][0]).name: p for _, p, _ in engine.store.scroll(where=where)}

    first = on(date(2024, 6, 1))
    assert set(first) == {late.name, no_offset.name}
    assert set(on(date(2024, 6, 2))) == {after_midnight.name}
    assert set(on(date(2024, 5, 31))) == {evening_west.name}
    assert taken_on(first[late.name]) == "2024-06-01"
    assert when_taken(first[late.name]) == "taken 2024-06-01 23:30 (UTC\\+02\\:00)"  # Markdown-escaped
    assert when_taken(first[no_offset.name]) == "taken 2024-06-01 00:00"
    assert taken_on(on(date(2024, 5, 31))[evening_west.name]) == "2024-05-31"
    assert first[late.name]["taken_offset"] == "+02:00" and first[no_offset.name]["taken_offset"] is None
