"""Storage faults: a damaged embedded store, and a photo folder that is not there (an unplugged disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedder import cli
from embedder.config import Settings
from embedder.engine import Engine
from embedder.errors import StoreError
from embedder.store import FolderLock
from faultkit import distinct_folder


def damage(folder: Path, how: str) -> None:
    """Damage every storage file (never the lock) the way a failing disk or a bad copy would."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert files
    for path in files:
        data = path.read_bytes()
        if how == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif how == "garbage":
            path.write_bytes(b"\x00garbage\xff" * 64)
        elif how == "emptied":
            path.write_bytes(b"")


DAMAGE = ["truncated", "garbage", "emptied"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_store_is_one_message_naming_the_folder(
    engine: Engine, settings: Settings, tmp_path: Path, reopen, how: str, monkeypatch, capsys, model_path
) -> None:
    distinct_folder(tmp_path / "photos", 3)
    engine.indexer.index([tmp_path / "photos"])
    engine.close()
    damage(settings.qdrant_path, how)

    with pytest.raises(StoreError) as info:
        reopen()
    message = str(info.value)
    assert str(settings.qdrant_path) in message and "\n" not in message

    for name, value in {"QDRANT_PATH": str(settings.qdrant_path), "EMBEDDER_MODEL": str(model_path)}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["info"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    FolderLock(settings.qdrant_path).release()  # a failed open let go of the folder's lock


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_store_says_it_is_damaged(engine: Engine, settings: Settings, tmp_path: Path, reopen, how: str) -> None:
    distinct_folder(tmp_path / "photos", 3)
    engine.indexer.index([tmp_path / "photos"])
    engine.close()
    damage(settings.qdrant_path, how)
    with pytest.raises(StoreError) as info:
        reopen()
    words = str(info.value).replace(str(settings.qdrant_path), "FOLDER").lower()  # the test's own path says "damaged"
    assert any(word in words for word in ("damaged", "corrupt", "malformed", "not a database")), words


def test_prune_with_a_missing_root_forgets_nothing(engine: Engine, tmp_path: Path) -> None:
    files = distinct_folder(tmp_path / "usb-disk", 6)
    engine.indexer.index([tmp_path / "usb-disk"])
    (tmp_path / "usb-disk").rename(tmp_path / "unplugged")  # the disk is gone for now

    report = engine.indexer.index([tmp_path / "usb-disk"], prune=True)

    assert [f.reason for f in report.failed] == ["no such file or folder"]
    assert report.removed == [] and engine.store.count() == len(files)


def test_prune_with_the_root_present_forgets_only_deleted_files(engine: Engine, tmp_path: Path) -> None:
    """Control for the test above: pruning works when the root is there."""
    files = distinct_folder(tmp_path / "disk", 6)
    engine.indexer.index([tmp_path / "disk"])
    files[0].unlink()
    report = engine.indexer.index([tmp_path / "disk"], prune=True)
    assert report.removed == [str(files[0])] and engine.store.count() == 5
