"""The indexing pipeline over real files and a real embedded Qdrant."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from embedder.engine import Engine
from embedder.indexing.indexer import Progress
from imagefiles import jpeg_bytes, solid


@pytest.fixture
def album(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    solid(root / "red.jpg", "red")
    solid(root / "blue.png", "blue")
    solid(root / "trip" / "green.webp", "green")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.png").write_text("just text")
    return root


def payloads(engine: Engine) -> dict[str, dict]:
    return {pid: payload for pid, payload, _ in engine.store.scroll()}


def test_index_adds_good_images_and_reports_bad_ones(engine: Engine, album: Path) -> None:
    report = engine.indexer.index([album])
    assert sorted(Path(p).name for p in report.added) == ["blue.png", "green.webp", "red.jpg"]
    assert {Path(f.path).name: f.reason for f in report.failed} == {
        "broken.jpg": "the file is truncated or damaged",
        "notes.png": "not an image, or a format that is not supported",
    }
    assert engine.store.count() == 3
    stored = next(p for p in payloads(engine).values() if p["name"] == "red.jpg")
    assert stored["paths"] == [str(album / "red.jpg")]
    assert stored["folder"] == str(album)
    assert str(album) in stored["folders"] and "/" in stored["folders"]
    assert (stored["width"], stored["height"], stored["format"]) == (96, 64, "JPEG")
    assert stored["bytes"] == (album / "red.jpg").stat().st_size
    assert stored["model"] == engine.encoder.model_id
    for key in ("mtime", "indexed_at", "date", "sha256"):
        assert stored[key]


def test_reindexing_adds_nothing(engine: Engine, album: Path) -> None:
    engine.indexer.index([album])
    again = engine.indexer.index([album])
    assert again.added == [] and again.renamed == []
    assert len(again.unchanged) == 3 and len(again.failed) == 2
    assert engine.store.count() == 3


def test_same_bytes_in_two_places_are_one_point(engine: Engine, album: Path) -> None:
    shutil.copy(album / "red.jpg", album / "trip" / "red-copy.jpg")
    report = engine.indexer.index([album])
    assert len(report.added) == 3  # one file of each picture is added, the other is a copy of it
    assert report.copies == [str(album / "trip" / "red-copy.jpg")]
    assert report.copy_of == {str(album / "trip" / "red-copy.jpg"): str(album / "red.jpg")}
    assert engine.store.count() == 3
    red = next(p for p in payloads(engine).values() if "red.jpg" in p["names"])
    assert red["paths"] == [str(album / "red.jpg"), str(album / "trip" / "red-copy.jpg")]


def test_a_moved_file_updates_paths_without_reencoding(engine: Engine, album: Path, monkeypatch) -> None:
    engine.indexer.index([album])
    (album / "trip" / "green.webp").rename(album / "verde.webp")
    monkeypatch.setattr(engine.encoder, "encode_images", lambda images: pytest.fail("re-encoded a known image"))
    report = engine.indexer.index([album])
    assert report.renamed == [str(album / "verde.webp")] and report.added == []
    green = next(p for p in payloads(engine).values() if p["name"] == "verde.webp")
    assert green["paths"] == [str(album / "verde.webp")]
    assert green["names"] == ["verde.webp"]
    assert engine.store.count() == 3


def test_prune_forgets_deleted_files_under_the_roots_only(engine: Engine, album: Path, tmp_path: Path) -> None:
    elsewhere = solid(tmp_path / "elsewhere" / "yellow.png", "yellow")
    engine.indexer.index([album, elsewhere.parent])
    (album / "blue.png").unlink()
    shutil.rmtree(elsewhere.parent)  # gone too, but not under the pruned root
    report = engine.indexer.index([album], prune=True)
    assert report.removed == [str(album / "blue.png")]
    names = sorted(p["name"] for p in payloads(engine).values())
    assert names == ["green.webp", "red.jpg", "yellow.png"]


def test_prune_keeps_a_point_that_still_has_a_path(engine: Engine, album: Path) -> None:
    shutil.copy(album / "red.jpg", album / "red-copy.jpg")
    engine.indexer.index([album])
    (album / "red.jpg").unlink()
    report = engine.indexer.index([album], prune=True)
    assert report.removed == [str(album / "red.jpg")]
    red = next(p for p in payloads(engine).values() if "red-copy.jpg" in p["names"])
    assert red["paths"] == [str(album / "red-copy.jpg")] and red["names"] == ["red-copy.jpg"]


def test_missing_root_is_a_failure_not_a_crash(engine: Engine, tmp_path: Path) -> None:
    report = engine.indexer.index([tmp_path / "nope"])
    assert [(f.path, f.reason) for f in report.failed] == [(str(tmp_path / "nope"), "no such file or folder")]


def test_progress_counts_every_file_up_to_the_total(engine: Engine, album: Path) -> None:
    seen: list[Progress] = []
    engine.indexer.index([album], on_progress=seen.append)
    assert seen and seen[-1].done == seen[-1].total == 5
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1].images_per_s > 0


def test_a_crash_mid_run_loses_at_most_the_batch_and_a_rerun_finishes(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "many"
    colours = [(r, g, 0) for r in range(0, 250, 50) for g in range(0, 250, 50)]  # 25 distinct images
    for i, rgb in enumerate(colours):
        solid(folder / f"{i:02d}.png", rgb)
    real = engine.encoder.encode_images
    calls = {"n": 0}

    def flaky(images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return real(images)

    monkeypatch.setattr(engine.encoder, "encode_images", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        engine.indexer.index([folder])
    assert engine.store.count() == engine.encoder.batch_size  # the first batch landed
    report = engine.indexer.index([folder])
    assert len(report.added) == 25 - engine.encoder.batch_size
    assert engine.store.count() == 25


def test_uploads_stay_inside_the_upload_dir_under_their_own_names(engine: Engine, tmp_path: Path) -> None:
    upload_dir = engine.settings.upload_dir
    red, blue = jpeg_bytes("red"), jpeg_bytes("blue")
    report = engine.indexer.index_uploads(
        [
            ("../../escape.jpg", red),
            ("/etc/passwd.jpg", blue),
            ("C:\\Users\\me\\holiday.jpg", jpeg_bytes("green")),
            ("nul\x00byte.jpg", jpeg_bytes("yellow")),
            ("x" * 300 + ".jpg", red),
            ("notes.txt", b"hello"),
        ],
        upload_dir,
    )
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "qdrant" not in p.parts]
    assert written and all(upload_dir in p.parents for p in written)
    assert [f.path for f in report.failed] == ["notes.txt"]
    assert engine.store.count() == 4
    names = sorted(n for p in payloads(engine).values() for n in p["names"])
    assert "escape.jpg" in names and "passwd.jpg" in names and "holiday.jpg" in names and "nulbyte.jpg" in names
    long = next(n for n in names if n.startswith("xxx"))
    assert len(long) <= 200 and long.endswith(".jpg")
    red_payload = next(p for p in payloads(engine).values() if "escape.jpg" in p["names"])
    assert long in red_payload["names"]  # same bytes, two names: one point, both findable


def test_same_upload_name_with_other_bytes_overwrites_nothing(engine: Engine) -> None:
    engine.indexer.index_uploads([("photo.jpg", jpeg_bytes("red"))], engine.settings.upload_dir)
    engine.indexer.index_uploads([("photo.jpg", jpeg_bytes("blue"))], engine.settings.upload_dir)
    assert engine.store.count() == 2
    assert len(list(engine.settings.upload_dir.rglob("*.jpg"))) == 2
    again = engine.indexer.index_uploads([("photo.jpg", jpeg_bytes("red"))], engine.settings.upload_dir)
    assert again.added == [] and engine.store.count() == 2
