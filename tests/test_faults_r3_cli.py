"""The CLI's manners (#25: 12): options after `--`, terms that look like options, pipes that close
early, a folder that is not there, and `info` / `tags` without a model.

The commands run as a user runs them (`python -m embedder` in a process of its own) where the point
is the process: its exit status, what reaches stderr, which libraries it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import ROOT, cli_env, distinct_folder, distinct_image, run_cli

from embedder import cli

SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for a program stopped by a closed pipe
HEAVY = {"torch", "transformers", "sentence_transformers"}


@pytest.fixture
def env(tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = cli_env(tmp_path, model_path, THUMB_DIR=str(tmp_path / "thumbnails"))
    for key in ("EMBEDDER_ENV_FILE", "EMBEDDER_MODEL", "EMBEDDER_DEVICE", "QDRANT_PATH", "UPLOAD_DIR", "THUMB_DIR"):
        monkeypatch.setenv(key, values[key])
    return values


@pytest.fixture
def indexed(env: dict[str, str], tmp_path: Path) -> Path:
    distinct_folder(tmp_path / "photos", 12)
    assert run_cli(env, "index", str(tmp_path / "photos")).returncode == 0
    return tmp_path / "photos"


def usage_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """Run `argv` in this process: it must exit 2 with usage and one error line; that line."""
    with pytest.raises(SystemExit) as stop:
        cli.main(list(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and err.startswith("usage:"), err
    return lines[0]


# --------------------------------------------------------------------------------------------
# `--` and terms that start with '-'


def test_options_after_dashes_are_refused_with_the_fix(env, capsys) -> None:
    """`search -- rice -k 3 --json` used to search for "rice", "-k", "3" and "--json", silently."""
    line = usage_error(capsys, "search", "--", "rice", "-k", "3", "--json")
    assert "-k after -- is a search term, not an option: put options before --" in line
    line = usage_error(capsys, "search", "--", "rice", "--limit=3")
    assert "--limit=3 after -- is a search term" in line


def test_a_term_that_looks_like_an_option_says_to_put_dashes_first(env, capsys) -> None:
    line = usage_error(capsys, "search", "rice", "-people")
    assert "-people is not an option of search; to subtract a term, put -- before the terms" in line


def test_terms_after_dashes_and_options_before_them_work(indexed, env, capsys) -> None:
    assert cli.main(["search", "-k", "3", "--json", "--", "a photo", "-people"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3


# --------------------------------------------------------------------------------------------
# Pipes that close early: `| head`


def closed_pipe_run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m embedder argv` writing into a pipe nobody reads any more (as after `head -1` exits)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes its first byte
    try:
        return subprocess.run(
            [sys.executable, "-m", "embedder", *argv], cwd=ROOT, env=env, stdout=write, stderr=subprocess.PIPE,
            text=True, timeout=180,
        )
    finally:
        os.close(write)


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ("search", "a photo", "--paths", "-k", "12"),
    ("search", "a photo", "-k", "12"),
    ("tags",),
    ("info", "--json"),
    ("index", "PHOTOS", "--json"),
    ("eval", "DATASET", "--json"),
], ids=["search-paths", "search", "tags", "info", "index", "eval"])
def test_output_into_a_closed_pipe_ends_quietly(indexed: Path, env, tmp_path: Path, argv: tuple[str, ...]) -> None:
    dataset = tmp_path / "dataset"
    for n, label in enumerate(("red", "blue")):
        (dataset / label).mkdir(parents=True)
        distinct_image(100 + n).save(dataset / label / "one.png")
    argv = tuple(str(indexed) if a == "PHOTOS" else str(dataset) if a == "DATASET" else a for a in argv)
    done = closed_pipe_run(env, *argv)
    assert done.returncode == SIGPIPE_STATUS, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr


# --------------------------------------------------------------------------------------------
# Paths that are not there


def test_index_of_a_missing_folder_is_one_line_and_exit_1_before_the_model_loads(env, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "embedder", "index", str(tmp_path / "nonexistent")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 1 and done.stdout == ""
    assert errors == [f"error: no such file or folder: {tmp_path / 'nonexistent'} (nothing was indexed)"]
    assert not HEAVY & imported(done.stderr)


def test_index_of_a_folder_and_a_missing_one_indexes_the_folder_and_exits_1(env, tmp_path: Path, capsys) -> None:
    distinct_folder(tmp_path / "photos", 2)
    assert cli.main(["index", str(tmp_path / "photos"), str(tmp_path / "unplugged")]) == 1
    out = capsys.readouterr().out
    assert f"failed: {tmp_path / 'unplugged'}: no such file or folder" in out and "2 added, 1 failed" in out


def test_watch_of_something_that_is_no_folder_is_one_line(env, tmp_path: Path, capsys) -> None:
    line = usage_error(capsys, "watch", str(tmp_path / "nonexistent"))
    assert line.endswith(f"argument FOLDER: {tmp_path / 'nonexistent'} does not exist: nothing to watch")


# --------------------------------------------------------------------------------------------
# `info` and `tags` without a model


def imported(stderr: str) -> set[str]:
    """The modules a `python -X importtime` run imported."""
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_info_loads_no_model_works_offline_and_names_every_folder(indexed: Path, env, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    offline = {**env, "IMAGE_DIRS": str(watched), "WATCH": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "embedder", "info"],
        cwd=ROOT, env=offline, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not HEAVY & imported(done.stderr)  # no model: it used to load it (10 s, and fail offline)
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in done.stdout.splitlines()}
    assert lines["images"] == "12" and lines["model"] == Path(env["EMBEDDER_MODEL"]).name
    assert lines["image folders"] == str(watched)
    assert lines["watched"].startswith("IMAGE_DIRS, by the app")
    assert lines["thumbnails"].startswith(env["THUMB_DIR"])


def test_info_with_a_model_that_is_not_here_still_answers(env, tmp_path: Path) -> None:
    """A hub model never downloaded, and no internet: info says what it can, with exit 0."""
    done = run_cli({**env, "EMBEDDER_MODEL": "clip-ViT-B-32", "HF_HOME": str(tmp_path / "hf")}, "info", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 0


def test_tags_answer_without_loading_a_model(indexed: Path, env) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "embedder", "tags", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not HEAVY & imported(done.stderr)
    counts = json.loads(done.stdout)
    assert counts and all(isinstance(n, int) and n > 0 for n in counts.values())
