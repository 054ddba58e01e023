"""The CLI's text search and `duplicates` load only what they need: the first search from a clean
model cache exports CLIP's text tower once; after that no torch, transformers or
sentence-transformers is imported, and the results are those of the full model's path. Offline
throughout (HF_HUB_OFFLINE=1), each command a fresh process as a person would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.models import text_onnx
from imagefiles import solid
from test_cli import env  # noqa: F401 - a fixture, shared

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers")
# Runs the CLI, then writes which heavy libraries the process imported to the file named first.
RUN = (
    "import sys\n"
    "from embedder.cli import main\n"
    "code = main(sys.argv[2:])\n"
    f"open(sys.argv[1], 'w').write(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    "sys.exit(code)\n"
)


@pytest.fixture
def indexed(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """test_cli's settings, a clean model cache (nothing exported yet), and a few images indexed."""
    values = {**env, "MODEL_CACHE_DIR": str(tmp_path / "model-cache"), "TAGS": "false"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for i, (name, colour) in enumerate({"red": "red", "blue": "blue", "green": "green", "purple": (200, 40, 200)}.items()):
        solid(tmp_path / "pics" / f"{name}.{'png' if i % 2 else 'jpg'}", colour)
    solid(tmp_path / "pics" / "red-again.png", (250, 10, 10))
    assert cli.main(["index", str(tmp_path / "pics")]) == 0
    return values


def run(tmp_path: Path, *argv: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """One CLI command in its own process; its result and the heavy libraries it imported."""
    imported = tmp_path / "imported.txt"
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(imported), *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return result, [m for m in imported.read_text().split(",") if m]


def here(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *argv: str, **env: str) -> str:
    """One CLI command in this process (whose torch is loaded already): its stdout."""
    with monkeypatch.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


def same_hits(got: list[dict], want: list[dict]) -> None:
    assert [h["id"] for h in got] == [h["id"] for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-4)


SEARCHES = [
    ("search", "a red circle", "-k", "6", "--json"),
    ("search", "-k", "6", "--json", "--", "circle", "2:red", "-blue"),
    ("search", "a photo of something", "-k", "6", "--json", "--type", "png", "--template", "a drawing of {}"),
]


def test_a_text_search_exports_once_then_answers_without_torch(
    indexed: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Path(indexed["MODEL_CACHE_DIR"])
    wants = [json.loads(here(capsys, monkeypatch, *argv, EMBEDDER_TEXT_SPEEDUP="off")) for argv in SEARCHES]
    assert all(wants) and not cache.exists()  # sentence-transformers' own path writes nothing
    first, imported = run(tmp_path, *SEARCHES[0])
    assert "torch" in imported  # the first search loads the model and exports its text tower
    assert list(cache.glob(f"{text_onnx.FOLDER}/*/{text_onnx.MODEL_FILE}"))
    same_hits(json.loads(first.stdout), wants[0])
    for argv, want in zip(SEARCHES, wants):  # text, composed, filtered with a template
        again, imported = run(tmp_path, *argv)
        assert imported == [] and again.stderr == ""
        same_hits(json.loads(again.stdout), want)


def test_duplicates_answer_without_a_model_once_the_text_tower_is_exported(
    indexed: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    here(capsys, monkeypatch, "search", "anything")  # exports the tower
    want = json.loads(here(capsys, monkeypatch, "duplicates", "--json", "--threshold", "0.9", EMBEDDER_TEXT_SPEEDUP="off"))
    lean, imported = run(tmp_path, "duplicates", "--json", "--threshold", "0.9")
    assert imported == []
    assert json.loads(lean.stdout) == want != []


def test_an_image_term_still_loads_the_whole_model(
    indexed: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    here(capsys, monkeypatch, "search", "anything")
    picture = str(tmp_path / "pics" / "red.jpg")
    want = json.loads(here(capsys, monkeypatch, "search", "--image", picture, "dark", "--json", EMBEDDER_TEXT_SPEEDUP="off"))
    got, imported = run(tmp_path, "search", "--image", picture, "dark", "--json")
    assert "torch" in imported
    same_hits(json.loads(got.stdout), want)


def test_a_model_cache_that_cannot_be_written_falls_back_with_one_line(
    indexed: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")  # nothing can be made below it, whoever runs this
    want = json.loads(here(capsys, monkeypatch, *SEARCHES[0], EMBEDDER_TEXT_SPEEDUP="off"))
    got, _ = run(tmp_path, *SEARCHES[0], MODEL_CACHE_DIR=str(blocked / "cache"))
    same_hits(json.loads(got.stdout), want)
    lines = got.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING could not keep the exported text tower in "), got.stderr
    assert "MODEL_CACHE_DIR" in lines[0]
