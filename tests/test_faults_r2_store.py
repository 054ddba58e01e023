"""Reliability round 2, the embedded store: only an explicit command deletes data, and a damaged
store is refused with the way out (RELIABILITY.md R2-3, R2-4)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the lock aside) and the SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".embedder.lock"
    }


def sparse_copy(source: Path, target: Path) -> None:
    """Copy a folder keeping its holes: Edge preallocates 32 MB files that hold a few KB."""
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            copy_file(path, dest)


def copy_file(path: Path, dest: Path) -> None:
    """Copy one file, only its data: the holes stay holes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as src, open(dest, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        dst.truncate(size)
        offset = 0
        while offset < size:
            try:
                offset = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(src.fileno(), offset, os.SEEK_HOLE)
            src.seek(offset)
            dst.seek(offset)
            dst.write(src.read(end - offset))
            offset = end


def damage(path: Path, how: str) -> None:
    """What a failing disk, a bad copy or a stray tool does to one file."""
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    else:  # flip: headers, the first values, and two bytes further in
        flipped = bytearray(data)
        for offset in {0, 1, 2, 3, 4, 7, 8, 16, len(data) // 3, len(data) // 2}:
            if offset < len(flipped):
                flipped[offset] ^= 0xFF
        path.write_bytes(bytes(flipped))


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


# --- R2-4: the engine's panics are store errors -----------------------------------------------------

KILLED = """
import os, signal
import numpy as np
from pathlib import Path
import embedder.store_edge as store_edge
from embedder.config import Settings
from embedder.store import Point

store_edge.INDEXING_THRESHOLD_KB = 1  # an HNSW segment even for 12 points
settings = Settings(qdrant_path=Path(os.environ["QP"]))
rng = np.random.default_rng(1)
points = [Point(f"00000000-0000-0000-0000-{n:012d}", rng.normal(size=64).astype(np.float32),
                {"paths": [f"/p/{n}.jpg"], "format": "PNG"}) for n in range(16)]
with store_edge.EdgeStore(settings, "m", 64) as store:
    store.upsert(points[:12])
    store.optimize(force=True)
store = store_edge.EdgeStore(settings, "m", 64)
store.upsert(points[12:])
store.delete([p.id for p in points[:6]])
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """12 points closed cleanly, then a session that added 4, deleted 6 of the 12 and was killed: 10."""
    qdrant_path = tmp_path_factory.mktemp("killed") / "qdrant"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QP": str(qdrant_path)}
    run = subprocess.run([sys.executable, "-c", KILLED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr
    return qdrant_path


KILLED_DAMAGE = {  # (segment kind, file, damage): what makes Edge panic on load
    "index status truncated": ("appendable", "payload_index/*-format-null/is_null/status.dat", "truncate"),
}


@pytest.mark.parametrize("what", KILLED_DAMAGE)
def test_damage_after_a_killed_process_is_refused(killed: Path, tmp_path: Path, what: str) -> None:
    kind, name, how = KILLED_DAMAGE[what]
    case = tmp_path / "qdrant"
    sparse_copy(killed, case)
    segments = [s for s in (case / "images" / "shard" / "segments").iterdir()
                if (s / "id_tracker.mappings").exists() == (kind == "immutable") and any(s.glob("*id_tracker*"))]
    (target,) = segments[0].glob(name)
    damage(target, how)
    files = {p.relative_to(case) for p in case.rglob("*") if p.is_file() and p.name != "tracker_journal.dat"}

    with pytest.raises(StoreError) as refused:
        EdgeStore(Settings(qdrant_path=case), "m", 64)
    assert "is damaged" in str(refused.value) and "\n" not in str(refused.value)
    assert files <= {p.relative_to(case) for p in case.rglob("*") if p.is_file()}  # nothing deleted
