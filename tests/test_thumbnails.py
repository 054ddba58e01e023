"""The thumbnail disk cache (THUMB_DIR): hit, miss, damage, atomic writes, eviction, a folder that
cannot be written, thumbnails made at indexing, and the result grid's widget reading them."""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image

from embedder.media import thumbnails
from embedder.config import Settings
from embedder.engine import Engine
from embedder.media.images import hash_file
from embedder.media.thumbnails import SIDE, ThumbnailCache, shared_cache
from embedder_ui import widgets
from modelkit import photo


def jpeg_file(path: Path, seed: int, size: tuple[int, int] = (1600, 1200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed, size).save(path, quality=90)
    return path


def sha(path: Path) -> str:
    return hash_file(path).sha256


def counting_loader(path: Path, calls: list[Path]):
    def load() -> Image.Image:
        calls.append(path)
        return Image.open(path).convert("RGB")
    return load


def test_miss_makes_and_stores_then_hits_without_decoding(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_mb=50)
    original = jpeg_file(tmp_path / "a.jpg", 1)
    key, calls = sha(original), []
    first = cache.get_or_make(key, counting_loader(original, calls))
    assert cache.get_or_make(key, counting_loader(original, calls)) == first
    assert calls == [original]  # decoded once; the second came from the disk
    stored = cache.path(key)
    assert stored.parent.parent == tmp_path / "thumbs" and stored.read_bytes() == first
    with Image.open(io.BytesIO(first)) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (SIDE, SIDE)
    assert len(first) < original.stat().st_size / 10
    # A new process (a new cache object on the same folder) finds it too.
    assert ThumbnailCache(tmp_path / "thumbs", max_mb=50).get(key) == first
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_is_ignored_and_made_again(tmp_path: Path, damage: str) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_mb=50)
    original = jpeg_file(tmp_path / "a.jpg", 2)
    key, calls = sha(original), []
    good = cache.get_or_make(key, counting_loader(original, calls))
    broken = {"truncated": good[: len(good) // 2], "garbage": os.urandom(4000), "empty": b""}[damage]
    cache.path(key).write_bytes(broken)
    assert cache.get(key) is None
    again = cache.get_or_make(key, counting_loader(original, calls))
    assert len(calls) == 2 and cache.path(key).read_bytes() == again
    Image.open(io.BytesIO(again)).load()  # a whole JPEG again


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_mb=50)
    original = jpeg_file(tmp_path / "a.jpg", 3)
    key = sha(original)
    old = cache.get_or_make(key, lambda: Image.open(original))

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(thumbnails.os, "replace", no_rename)
    assert cache.put(key, b"\xff\xd8\xff" + b"x" * 100 + b"\xff\xd9") is False
    assert cache.path(key).read_bytes() == old  # readers never see a half-written file
    assert [p.name for p in cache.path(key).parent.iterdir()] == [cache.path(key).name]


def test_over_budget_the_least_recently_used_go(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_mb=1)
    rng = np.random.default_rng(0)
    noisy = [Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)) for _ in range(4)]
    keys = [f"{i:064x}" for i in range(1, 31)]
    now = time.time()
    for i, key in enumerate(keys):  # ~30 noisy thumbnails of ~60 KB: ~1.8 MB, past the 1 MB budget
        cache.path(key).parent.mkdir(parents=True, exist_ok=True)
        data = thumbnails.thumbnail_bytes(noisy[i % 4])
        cache.path(key).write_bytes(data)
        os.utime(cache.path(key), (now - 10_000 + i, now - 10_000 + i))  # older first
    total = sum(cache.path(k).stat().st_size for k in keys)
    assert total > cache.budget
    assert cache.get(keys[0]) is not None  # read: it is recently used now (its time is refreshed)
    freed = cache.sweep()
    left = [k for k in keys if cache.path(k).exists()]
    assert freed > 0 and sum(cache.path(k).stat().st_size for k in left) <= cache.budget
    assert keys[0] in left and keys[-1] in left  # just read, and the newest
    assert keys[1] not in left  # the oldest not read since
    assert cache.sweep() == 0  # under budget: nothing more to do


def test_writes_sweep_on_their_own_when_over_budget(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_mb=1)
    rng = np.random.default_rng(1)
    for i in range(40):
        image = Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
        assert cache.put(f"{i + 1:064x}", thumbnails.thumbnail_bytes(image))
    on_disk = sum(p.stat().st_size for p in (tmp_path / "thumbs").rglob("*.jpg"))
    assert on_disk <= cache.budget * (1 + 2 * thumbnails.SWEEP_FRACTION)


def test_a_folder_that_cannot_be_written_gives_thumbnails_in_memory_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")  # as root, chmod would not stop us
    cache = ThumbnailCache(blocked / "thumbs", max_mb=50)
    caplog.set_level(logging.WARNING, logger="embedder.media.thumbnails")
    for seed in range(3):
        original = jpeg_file(tmp_path / f"{seed}.jpg", seed)
        data = cache.get_or_make(sha(original), lambda: Image.open(original))
        assert Image.open(io.BytesIO(data)).size == (SIDE, SIDE)
    lines = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(lines) == 1 and "THUMB_DIR" in lines[0].getMessage()
    assert cache.writable is False


def test_zero_budget_means_no_disk_cache(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs", max_mb=0)
    original = jpeg_file(tmp_path / "a.jpg", 4)
    assert cache.get_or_make(sha(original), lambda: Image.open(original))
    assert not (tmp_path / "thumbs").exists()


def test_thumb_dir_setting_defaults_beside_uploads_and_resolves_from_the_settings_file(tmp_path: Path) -> None:
    from embedder.config import DATA_DIR

    assert Settings().thumb_dir == DATA_DIR / "thumbnails" and Settings().thumb_cache_mb == 500
    env_file = tmp_path / "conf" / "qdrant.env"
    env_file.parent.mkdir()
    env_file.write_text("THUMB_DIR=cache/thumbs\nTHUMB_CACHE_MB=20\n")
    settings = Settings.from_env({}, env_file=env_file)
    assert settings.thumb_dir == env_file.parent / "cache" / "thumbs" and settings.thumb_cache_mb == 20


# --- indexing and the page's widget ---------------------------------------------------------------


@pytest.fixture
def indexed(settings: Settings, encoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    # The tiny CLIP sees 48 px, too small a decode for a thumbnail; ViT-B/32's 224 px is enough
    # (a 4:3 photo is decoded to 298×224), so decode as for ViT-B/32 (the model still gets 48 px).
    monkeypatch.setattr(encoder, "image_size", 224)
    folder = tmp_path / "album"
    paths = [jpeg_file(folder / f"p{i}.jpg", 10 + i) for i in range(3)]
    small = jpeg_file(folder / "small.jpg", 20, (200, 150))  # smaller than a thumbnail: made on first view
    engine = Engine.open(settings)
    try:
        report = engine.indexer.index([folder])
        assert len(report.added) == 4
        yield engine, paths, small
    finally:
        engine.close()


def test_indexing_writes_thumbnails_from_the_decode_it_already_made(indexed) -> None:
    engine, paths, small = indexed
    cache = shared_cache(engine.settings)
    assert cache.folder == engine.settings.thumb_dir and engine.indexer.thumbnails is cache
    for path in paths:
        data = cache.get(sha(path))
        assert data is not None and Image.open(io.BytesIO(data)).size == (SIDE, SIDE)
    assert cache.get(sha(small)) is None  # long side < 256 px: left for the first view


def test_the_grid_widget_reads_the_disk_cache_and_keeps_its_messages(indexed, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, paths, small = indexed
    cache = shared_cache(engine.settings)
    st.cache_data.clear()
    decoded: list[object] = []
    real_decode = widgets.decode
    monkeypatch.setattr(widgets, "decode", lambda *a, **k: decoded.append(a[0]) or real_decode(*a, **k))
    max_pixels = engine.settings.max_image_pixels
    for path in paths:
        data = widgets.thumbnail(str(path), max_pixels, sha256=sha(path), cache=cache)
        assert data == cache.get(sha(path))
    assert decoded == []  # every picture came from THUMB_DIR: no original was decoded
    made = widgets.thumbnail(str(small), max_pixels, sha256=sha(small), cache=cache)
    assert isinstance(made, bytes) and cache.get(sha(small)) == made and len(decoded) == 1

    # A file gone: the same message as before, even though its thumbnail is still on disk.
    gone_key = sha(paths[0])
    paths[0].unlink()
    assert widgets.thumbnail(str(paths[0]), max_pixels, sha256=gone_key, cache=cache) == "the file is no longer there"
    # A file rewritten since it was indexed (not in the memory cache yet): its picture as it is
    # now, and the old hash's thumbnail is not overwritten with it.
    old_key, old_thumb = sha(paths[1]), cache.get(sha(paths[1]))
    cache.path(old_key).unlink()
    jpeg_file(paths[1], 99)
    now = widgets.thumbnail(str(paths[1]), max_pixels, sha256=old_key, cache=cache)
    assert isinstance(now, bytes) and now != old_thumb and not cache.path(old_key).exists()
    # Not an image: its reason, as before.
    bad = paths[2].with_name("bad.jpg")
    bad.write_bytes(b"nope")
    assert "not an image" in widgets.thumbnail(str(bad), max_pixels, sha256="ab" * 32, cache=cache)


def test_result_grid_passes_hashes_to_the_cache(indexed, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, paths, _ = indexed
    seen: list[tuple[str | None, object]] = []
    monkeypatch.setattr(widgets, "thumbnail", lambda path, mp, side=SIDE, sha256=None, cache=None: seen.append((sha256, cache)) or b"")
    monkeypatch.setattr(widgets.st, "image", lambda *a, **k: None)
    results = engine.searcher.search(__import__("embedder.query.searcher", fromlist=["Query"]).Query.text("a photo"), 10)
    cache = shared_cache(engine.settings)
    widgets.result_grid(results, engine.settings.max_image_pixels, thumbnails=cache)
    assert sorted(s for s, _ in seen) == sorted(r.payload["sha256"] for r in results)
    assert all(c is cache for _, c in seen)


def test_shared_cache_is_one_per_folder(tmp_path: Path, settings: Settings) -> None:
    assert shared_cache(settings) is shared_cache(replace(settings))
    assert shared_cache(settings) is not shared_cache(replace(settings, thumb_dir=tmp_path / "other"))
