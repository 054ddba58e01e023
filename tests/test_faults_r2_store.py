"""Reliability round 2, the embedded store: only an explicit command deletes data (RELIABILITY.md R2-3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder.config import Settings
from embedder.engine import Engine
from embedder.errors import StoreError
from embedder.store import Point
from embedder.store_edge import EdgeStore, edge_config
from faultkit import cli_env, distinct_folder, run_cli

pytest.importorskip("qdrant_edge")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the lock aside) and the SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".embedder.lock"
    }


# --- R2-3: a read-only command never deletes the store --------------------------------------------


def test_info_with_edge_config_missing_is_refused_deletes_nothing_and_restoring_it_works(
    engine: Engine, settings: Settings, tmp_path: Path, reopen, model_path: Path
) -> None:
    files = distinct_folder(tmp_path / "photos", 6)
    engine.indexer.index([tmp_path / "photos"])
    engine.close()
    config = settings.qdrant_path / "images" / "shard" / "edge_config.json"
    config.rename(tmp_path / "edge_config.json")
    before = snapshot(settings.qdrant_path)

    result = run_cli(cli_env(tmp_path, model_path), "info")

    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "images/shard/edge_config.json is missing" in result.stderr
    assert "Restore it from a backup, or move it away and index your folders again" in result.stderr
    assert snapshot(settings.qdrant_path) == before  # nothing deleted, nothing rewritten

    (tmp_path / "edge_config.json").rename(config)
    again = reopen()
    try:
        assert again.store.count() == len(files)
        for path in files:
            assert again.searcher.by_image(Image.open(path), limit=1)[0].path == str(path)
    finally:
        again.close()


def test_a_moved_shard_folder_is_refused_not_replaced_by_an_empty_store(
    engine: Engine, settings: Settings, tmp_path: Path, reopen
) -> None:
    distinct_folder(tmp_path / "photos", 4)
    engine.indexer.index([tmp_path / "photos"])
    engine.close()
    shard = settings.qdrant_path / "images" / "shard"
    shard.rename(tmp_path / "shard")

    with pytest.raises(StoreError, match="images/shard is missing"):
        reopen()
    assert not shard.exists()  # no empty store took its place

    (tmp_path / "shard").rename(shard)
    again = reopen()
    try:
        assert again.store.count() == 4
    finally:
        again.close()


def unit(n: int, dim: int = 4) -> np.ndarray:
    v = np.random.default_rng(n).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def pid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def bare_shard(settings: Settings, points: int) -> Path:
    """A shard as a creation that died before collection.json leaves it, with `points` written."""
    from qdrant_edge import EdgeShard
    from qdrant_edge import Point as EdgePoint
    from qdrant_edge import UpdateOperation

    path = settings.qdrant_path / "images" / "shard"
    shard = EdgeShard.create(str(path), edge_config(4))
    if points:
        shard.update(UpdateOperation.upsert_points([EdgePoint(pid(n), unit(n).tolist(), {}) for n in range(points)]))
    shard.flush()
    shard.close()
    (path / "edge_config.json").unlink()  # Edge writes it last: the creation died just before
    return path


def test_a_creation_that_died_before_any_point_is_started_again(settings: Settings) -> None:
    bare_shard(settings, 0)
    with EdgeStore(settings, "m", 4) as store:
        assert store.count() == 0
        store.upsert([Point(pid(1), unit(1), {"paths": ["/p/1.jpg"]})])
    with EdgeStore(settings, "m", 4) as store:
        assert store.count() == 1


@pytest.mark.parametrize("where", ["segments", "wal only"])
def test_a_shard_holding_points_without_its_config_is_never_started_again(settings: Settings, where: str) -> None:
    shard = bare_shard(settings, 3)
    if where == "wal only":  # the points reached the WAL but no segment file yet
        for tracker in shard.glob("segments/*/*id_tracker*"):
            tracker.unlink()
    before = snapshot(settings.qdrant_path)

    with pytest.raises(StoreError, match="images/shard/edge_config.json is missing"):
        EdgeStore(settings, "m", 4)
    assert snapshot(settings.qdrant_path) == before
