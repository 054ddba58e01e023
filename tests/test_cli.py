"""`python -m embedder`: exit codes, one JSON document on stdout, one-line errors on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedder import cli
from embedder.store import FolderLock
from imagefiles import solid

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "EMBEDDER_MODEL": str(model_path),
        "EMBEDDER_DEVICE": "cpu",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    solid(tmp_path / "pics" / "red.png", "red")
    solid(tmp_path / "pics" / "blue.jpg", "blue")
    (tmp_path / "pics" / "bad.jpg").write_bytes(b"nope")
    return tmp_path / "pics"


def run_json(capsys: pytest.CaptureFixture, *argv: str):
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_index_search_info_as_json(env, folder: Path, capsys) -> None:
    code, report = run_json(capsys, "index", str(folder), "--json")
    assert code == 0
    assert len(report["added"]) == 2
    assert report["failed"] == [{"path": str(folder / "bad.jpg"), "reason": "not an image, or a format that is not supported"}]

    code, again = run_json(capsys, "index", str(folder), "--json")
    assert code == 0 and again["added"] == [] and len(again["unchanged"]) == 2

    code, hits = run_json(capsys, "search", "a red circle", "-k", "5", "--json")
    assert code == 0 and len(hits) == 2
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert {Path(h["path"]).name for h in hits} == {"red.png", "blue.jpg"}

    code, info = run_json(capsys, "info", "--json")
    assert info == {
        "storage": "embedded",
        "location": env["QDRANT_PATH"],
        "collection": "images",
        "model": Path(env["EMBEDDER_MODEL"]).name,
        "dimension": info["dimension"],
        "device": "cpu",
        "images": 2,
        "settings": os.environ["EMBEDDER_ENV_FILE"],
        "uploads": env["UPLOAD_DIR"],
        "thumbnails": info["thumbnails"],
        "image folders": "none (IMAGE_DIRS)",
        "watched": "none: IMAGE_DIRS is empty",
    }


def test_human_output_lists_failures_and_a_summary(env, folder: Path, capsys) -> None:
    assert cli.main(["index", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"failed: {folder / 'bad.jpg'}: not an image" in out
    assert "2 added, 1 failed in " in out  # what did not happen is left out


def test_store_in_use_is_one_line_and_exit_1(env, capsys) -> None:
    lock = FolderLock(Path(env["QDRANT_PATH"]))
    try:
        assert cli.main(["info"]) == 1
    finally:
        lock.release()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The storage folder") and "in use" in err and "\n" not in err


def test_bad_setting_names_the_variable(env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EMBEDDER_BATCH_SIZE", "many")
    assert cli.main(["info"]) == 1
    assert capsys.readouterr().err.strip() == "error: EMBEDDER_BATCH_SIZE must be a whole number, got 'many'"


def test_bad_arguments_exit_2(env) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["index", "x", "--shard", "5/2"])
    assert exc.value.code == 2


def test_default_model_without_internet_is_one_clear_message(tmp_path: Path) -> None:
    """The real entry point, as a user runs it: no traceback, the fix in the message."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDER_", "QDRANT_"))}
    env.update(HF_HUB_OFFLINE="1", QDRANT_PATH=str(tmp_path / "q"), HF_HOME=str(tmp_path / "hf"))
    (tmp_path / "empty.env").write_text("")
    env["EMBEDDER_ENV_FILE"] = str(tmp_path / "empty.env")  # no settings file of the developer's
    done = subprocess.run(
        [sys.executable, "-m", "embedder", "search", "a dog"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "'clip-ViT-B-32'" in lines[0] and "EMBEDDER_MODEL" in lines[0] and "local folder" in lines[0]


def test_missing_model_folder_is_named(env, monkeypatch, capsys, tmp_path: Path, folder: Path) -> None:
    missing = tmp_path / "no-such-model"
    monkeypatch.setenv("EMBEDDER_MODEL", str(missing))
    assert cli.main(["index", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Model folder '{missing}' does not exist" in err
    assert "/models/" not in err  # it once suggested EMBEDDER_MODEL=/models//tmp/…/no-such-model
    assert cli.main(["info"]) == 0  # info loads no model: it says what is wrong with it
    assert f"model: {missing} (no such folder" in capsys.readouterr().out
