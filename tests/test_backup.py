"""`embedder backup` / `embedder restore` on the embedded store: real Qdrant Edge stores with real
indexed images, real archives, real damage.

A backup must give back exactly what was stored (ids, payloads, vectors) after the store is damaged;
every refusal is one line that changes nothing; an interrupted backup leaves nothing that looks like
a backup; a restore never deletes the store it replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.engine import Engine
from embedder.store import FolderLock
from embedder.store.archive import MANIFEST_NAME
from embedder.models.ids import expected_model_id
from embedder.store.edge import EdgeStore
from faultkit import ROOT, cli_env, distinct_folder
from test_faults_server import one_error_line, run

pytest.importorskip("qdrant_edge")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings: Settings, model_path: Path) -> None:
    """The CLI in this process on the `settings` store (the engine fixture already reuses the model)."""
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("UPLOAD_DIR", str(settings.upload_dir))


@pytest.fixture
def indexed(engine: Engine, tmp_path: Path) -> list[Path]:
    """Eight real images indexed into the store, which is then closed cleanly."""
    files = distinct_folder(tmp_path / "photos", 8)
    report = engine.indexer.index([tmp_path / "photos"])
    assert len(report.failed) == 0
    engine.close()
    return files


def stored(settings: Settings, encoder: Encoder, collection: str | None = None) -> dict[str, tuple[dict, np.ndarray]]:
    """Every point of the collection: id -> (payload, vector)."""
    store = EdgeStore(replace(settings, collection=collection or settings.collection), encoder.model_id, encoder.dim)
    try:
        return {pid: (payload, vector) for pid, payload, vector in store.scroll(with_vectors=True)}
    finally:
        store.close()


def assert_same_points(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for pid, (payload, vector) in want.items():
        assert got[pid][0] == payload
        assert np.array_equal(got[pid][1], vector), pid  # exactly: the same float32 bits


def files_of(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the lock aside) and the SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".embedder.lock"
    }


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def a_segment_file(settings: Settings) -> Path:
    """The largest file of the store's segments that holds data (its payloads or vectors)."""
    segments = settings.qdrant_path / settings.collection / "shard" / "segments"
    files = [p for p in segments.rglob("*") if p.is_file() and p.read_bytes().strip(b"\0")]
    return max(files, key=lambda p: len(p.read_bytes().strip(b"\0")))


# --- the round trip --------------------------------------------------------------------------------


def test_backup_then_damage_then_restore_gives_back_every_point_exactly(
    indexed, env, settings: Settings, encoder: Encoder, tmp_path: Path, capsys
) -> None:
    before = stored(settings, encoder)
    assert len(before) == 8
    archive = tmp_path / "backups" / "photos.tar.gz"

    code, out, err = run(capsys, "backup", str(archive))
    assert code == 0 and err == "", err
    assert f"backed up 8 images (collection images, model {encoder.model_id}) to {archive}" in out
    manifest = json.loads(members(archive)[MANIFEST_NAME])
    assert manifest["model"] == encoder.model_id and manifest["dim"] == encoder.dim and manifest["points"] == 8
    assert manifest["collection"] == "images" and manifest["mode"] == "embedded" and manifest["created"]
    for name, data in members(archive).items():  # every file listed, with its size and SHA-256
        if name != MANIFEST_NAME:
            assert manifest["files"][name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert "collection/collection.json" in manifest["files"]
    assert any(name.startswith("collection/shard/segments/") for name in manifest["files"])

    damaged = a_segment_file(settings)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    line = one_error_line(*run(capsys, "info"))
    assert "is damaged" in line and "`embedder restore BACKUP --force`" in line, line
    damaged_files = files_of(settings.qdrant_path / "images")

    line = one_error_line(*run(capsys, "restore", str(archive)))  # a store is there: only with --force
    assert "holds 8 images already" in line and "--force" in line and "not deleted" in line, line
    assert files_of(settings.qdrant_path / "images") == damaged_files

    code, out, err = run(capsys, "restore", str(archive), "--force")
    assert code == 0 and err == "", err
    assert f"restored 8 images (model {encoder.model_id}) into collection images at {settings.qdrant_path}" in out
    aside = [p for p in settings.qdrant_path.iterdir() if p.name.startswith("images.before-restore-")]
    assert len(aside) == 1 and str(aside[0]) in out
    assert files_of(aside[0]) == damaged_files  # the damaged store is kept, byte for byte
    assert_same_points(stored(settings, encoder), before)
    assert not (settings.qdrant_path / ".restoring").exists()
    code, out, _ = run(capsys, "info")
    assert code == 0 and "8" in out


def test_restore_over_a_healthy_store_keeps_it_aside_unchanged(
    engine: Engine, env, settings: Settings, encoder: Encoder, tmp_path: Path, capsys
) -> None:
    distinct_folder(tmp_path / "first", 4)
    engine.indexer.index([tmp_path / "first"])
    engine.close()
    first = stored(settings, encoder)
    archive = tmp_path / "first.tar"  # .tar: not compressed
    assert run(capsys, "backup", str(archive))[0] == 0
    assert archive.read_bytes()[:2] != b"\x1f\x8b"  # not gzip

    again = Engine.open(settings)
    distinct_folder(tmp_path / "second", 3, start=50)
    again.indexer.index([tmp_path / "second"])
    again.close()
    second = stored(settings, encoder)
    assert len(second) == 7
    second_files = files_of(settings.qdrant_path / "images")

    code, out, err = run(capsys, "restore", str(archive), "--force")
    assert code == 0, err
    assert_same_points(stored(settings, encoder), first)
    (aside,) = [p for p in settings.qdrant_path.iterdir() if p.name.startswith("images.before-restore-")]
    assert files_of(aside) == second_files
    assert_same_points(stored(settings, encoder, collection=aside.name), second)  # usable as a collection


def test_restore_into_a_new_folder_needs_no_force(
    indexed, env, settings: Settings, encoder: Encoder, tmp_path: Path, capsys, monkeypatch
) -> None:
    archive = tmp_path / "b.tar.gz"
    assert run(capsys, "backup", str(archive))[0] == 0
    before = stored(settings, encoder)
    elsewhere = tmp_path / "new-machine" / "qdrant"
    monkeypatch.setenv("QDRANT_PATH", str(elsewhere))
    code, out, err = run(capsys, "restore", str(archive))
    assert code == 0 and "kept" not in out, (out, err)
    assert_same_points(stored(replace(settings, qdrant_path=elsewhere), encoder), before)


# --- refusals: one line, nothing changed ---------------------------------------------------------


def test_backup_refuses_a_dest_that_holds_something_unless_forced(indexed, env, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "old-backup.tar.gz"
    dest.write_bytes(b"precious")
    line = one_error_line(*run(capsys, "backup", str(dest)))
    assert f"{dest} exists already" in line and "--force" in line, line
    assert dest.read_bytes() == b"precious"

    assert run(capsys, "backup", str(dest), "--force")[0] == 0
    assert MANIFEST_NAME in members(dest)

    empty = tmp_path / "empty.tar.gz"
    empty.touch()  # an empty file holds nothing to lose
    assert run(capsys, "backup", str(empty))[0] == 0


def test_backup_into_a_folder_writes_a_dated_file_in_it(indexed, env, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    code, out, _ = run(capsys, "backup", str(folder))
    (made,) = list(folder.iterdir())
    assert code == 0 and made.name.startswith("embedder-images-") and made.name.endswith(".tar.gz")
    assert str(made) in out


def test_restore_refuses_a_backup_of_another_model_unless_into_another_collection(
    indexed, env, settings: Settings, encoder: Encoder, tmp_path: Path, capsys, monkeypatch, model_path: Path
) -> None:
    archive = tmp_path / "b.tar.gz"
    assert run(capsys, "backup", str(archive))[0] == 0
    before = files_of(settings.qdrant_path)
    monkeypatch.setenv("EMBEDDER_MODEL", "clip-ViT-L-14")

    line = one_error_line(*run(capsys, "restore", str(archive), "--force"))
    assert f"indexed with model {encoder.model_id!r}" in line and "EMBEDDER_MODEL is 'clip-ViT-L-14'" in line, line
    # The model came from a local folder: the fix names that folder, not its bare name (which cannot load).
    assert f"Set EMBEDDER_MODEL={model_path} " in line and "--collection NAME" in line, line
    assert files_of(settings.qdrant_path) == before

    code, out, err = run(capsys, "restore", str(archive), "--collection", "tiny")
    assert code == 0, err
    assert f"QDRANT_COLLECTION=tiny EMBEDDER_MODEL={model_path}\n" in out
    assert files_of(settings.qdrant_path / "images") == {
        k.removeprefix("images/"): v for k, v in before.items() if k.startswith("images/")
    }
    assert len(stored(settings, encoder, collection="tiny")) == 8

    with pytest.raises(SystemExit) as stop:
        cli.main(["restore", str(archive), "--collection", "bad/name"])
    assert stop.value.code == 2 and "--collection must be a short name" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_backup_and_restore_refuse_while_another_process_holds_the_store(
    indexed, env, settings: Settings, tmp_path: Path, capsys, command: str
) -> None:
    archive = tmp_path / "b.tar.gz"
    assert run(capsys, "backup", str(archive))[0] == 0
    target = tmp_path / "again.tar.gz"
    before = files_of(settings.qdrant_path)
    lock = FolderLock(settings.qdrant_path)  # what the app holds while it runs
    try:
        argv = ["backup", str(target)] if command == "backup" else ["restore", str(archive), "--force"]
        line = one_error_line(*run(capsys, *argv))
    finally:
        lock.release()
    assert f"The storage folder {settings.qdrant_path} is in use by process {os.getpid()}" in line, line
    assert files_of(settings.qdrant_path) == before and not target.exists()


def test_a_damaged_or_foreign_backup_is_refused_before_anything_changes(
    indexed, env, settings: Settings, tmp_path: Path, capsys
) -> None:
    archive = tmp_path / "b.tar"
    assert run(capsys, "backup", str(archive))[0] == 0
    before = files_of(settings.qdrant_path)
    data = archive.read_bytes()
    with tarfile.open(archive) as tar:  # a byte flipped inside the biggest member's data
        biggest = max((m for m in tar if m.isfile()), key=lambda m: m.size)
        offset = biggest.offset_data + biggest.size // 2
    flipped = tmp_path / "flipped.tar"
    flipped.write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :])
    cut = tmp_path / "cut.tar.gz"  # a copy that stopped two thirds of the way
    assert run(capsys, "backup", str(cut))[0] == 0
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    foreign = tmp_path / "photos.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        tar.add(tmp_path / "photos", arcname="photos")

    cases = {
        flipped: f"{biggest.name} differs from its manifest",
        cut: "is damaged or incomplete",
        foreign: "is not a backup made by `embedder backup`",
        tmp_path / "missing.tar.gz": "No backup at",
    }
    for source, words in cases.items():
        line = one_error_line(*run(capsys, "restore", str(source), "--force"))
        assert words in line and str(source) in line, (source, line)
        assert files_of(settings.qdrant_path) == before, source
        assert not (settings.qdrant_path / ".restoring").exists()


def test_backup_with_nothing_to_back_up_is_one_line(env, tmp_path: Path, capsys) -> None:
    line = one_error_line(*run(capsys, "backup", str(tmp_path / "b.tar.gz")))
    assert "Nothing to back up" in line and "QDRANT_COLLECTION" in line, line
    assert not (tmp_path / "b.tar.gz").exists()


# --- interrupted backups -------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_an_interrupted_backup_leaves_nothing_that_looks_like_a_backup(
    indexed, env, settings: Settings, tmp_path: Path, capsys, monkeypatch, fault
) -> None:
    from embedder.store import archive

    real_read = archive.HashingReader.read
    calls = []

    def failing(self, size=-1):
        calls.append(size)
        if len(calls) == 5:  # mid-copy: the manifest and some files are in the archive already
            raise KeyboardInterrupt if fault is KeyboardInterrupt else OSError(28, "No space left on device")
        return real_read(self, size)

    monkeypatch.setattr(archive.HashingReader, "read", failing)
    folder = tmp_path / "backups"
    folder.mkdir()
    dest = folder / "b.tar.gz"
    code, out, err = run(capsys, "backup", str(dest))
    if fault is KeyboardInterrupt:
        assert code == 130 and "interrupted: nothing was changed" in err, err
    else:
        line = one_error_line(code, out, err)
        assert f"Cannot write the backup {dest}: No space left on device" in line, line
    assert list(folder.iterdir()) == []  # no DEST, and no partial file left behind
    assert len(calls) == 5

    monkeypatch.setattr(archive.HashingReader, "read", real_read)
    assert run(capsys, "backup", str(dest))[0] == 0  # the store is fine: the next run works


# --- the command line ----------------------------------------------------------------------------


def test_backup_and_restore_help_say_what_they_do(capsys) -> None:
    for command, words in {
        "backup": ["DEST", "--force", ".tar.gz", "manifest", "SHA-256", "snapshot"],
        "restore": ["SRC", "--force", "--collection", "renamed aside", "never deleted"],
    }.items():
        with pytest.raises(SystemExit) as stop:
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert stop.value.code == 0
        for word in words:
            assert word in text, (command, word, text)


def test_backup_never_imports_torch(indexed, settings: Settings, tmp_path: Path, model_path: Path) -> None:
    env = cli_env(tmp_path, model_path, QDRANT_PATH=str(settings.qdrant_path))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "embedder", "backup", str(tmp_path / "b.tar.gz")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedder.store.backup" in imported and not {"torch", "transformers", "sentence_transformers"} & imported


def test_the_expected_model_id_is_the_encoders_own(model_path: Path, encoder: Encoder, tmp_path: Path) -> None:
    from embedder.models.ids import HF_PREFIX, model_id_of
    from embedder.models.open_clip import model_id_of_spec

    assert expected_model_id(str(model_path)) == encoder.model_id
    for name in ["clip-ViT-B-32", "sentence-transformers/clip-ViT-B-32", str(model_path), str(tmp_path / "none")]:
        assert expected_model_id(name) == model_id_of(name)
        assert expected_model_id(HF_PREFIX + name) == HF_PREFIX + model_id_of(name)
    checkpoint = tmp_path / "vit.pt"
    checkpoint.write_bytes(b"")
    for spec in ["ViT-B-32/laion2b_s34b_b79k", "hf-hub:timm/ViT-B-16-SigLIP", f"ViT-B-32/{checkpoint}", "ViT-B-32"]:
        assert expected_model_id("open_clip:" + spec) == model_id_of_spec(spec)


def test_a_backup_of_a_model_folder_that_is_not_here_says_so_instead_of_a_name_that_cannot_load(
    indexed, env, settings: Settings, encoder: Encoder, tmp_path: Path, capsys, monkeypatch, model_path: Path
) -> None:
    archive = tmp_path / "b.tar.gz"
    moved = tmp_path / "models" / model_path.name  # the model's folder where the backup was made
    shutil.copytree(model_path, moved)
    monkeypatch.setenv("EMBEDDER_MODEL", str(moved))
    assert run(capsys, "backup", str(archive))[0] == 0
    shutil.rmtree(moved)  # restored on a machine without it
    monkeypatch.setenv("EMBEDDER_MODEL", "clip-ViT-L-14")
    code, out, err = run(capsys, "restore", str(archive), "--collection", "tiny")
    assert code == 0, err
    assert f"EMBEDDER_MODEL=<the folder holding {encoder.model_id}, {moved} where the backup was made>" in out
