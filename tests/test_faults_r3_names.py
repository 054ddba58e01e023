"""Reliability round 3, the command line: arguments that are not UTF-8, names that are paths, and
nothing written outside the folders the settings name.

Arguments are real bytes (`subprocess.run([b"..."])`), as a shell passes `$'caf\\xe9'`: Python
keeps the undecodable ones as lone surrogates, which a tokenizer or Qdrant cannot take.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from embedder import cli
from embedder.config import Settings, collection_name
from embedder.errors import ConfigError
from faultkit import ROOT, cli_env, distinct_folder, distinct_image

pytestmark = pytest.mark.slow


def run_bytes(env: dict[str, str], *argv: str | bytes, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m embedder ARGV` with each argument as the exact bytes given."""
    command = [os.fsencode(sys.executable), b"-m", b"embedder", *(os.fsencode(a) for a in argv)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, errors="surrogateescape", timeout=120)


def one_usage_error(done: subprocess.CompletedProcess[str], option: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("usage: python -m embedder"), done.stderr
    assert f"error: argument {option}: " in lines[-1], done.stderr
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# R3-3: text that is not UTF-8 is one line, exit 2; a path that is not UTF-8 is a path


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        ([b"search", b"caf\xe9"], "terms"),
        ([b"search", b"x", b"--tag", b"\xff"], "--tag"),
        ([b"search", b"x", b"--template", b"a photo of \xff{}"], "--template"),
        ([b"search", b"x", b"--like", b"\xff"], "--like"),
        ([b"search", b"x", b"--type", b"jp\xe9g"], "--type"),
        ([b"search", b"x", b"-k", b"1\xff"], "-k/--limit"),
        ([b"search", b"x", b"--min-score", b"0.\xff"], "--min-score"),
        ([b"search", b"x", b"--after", b"2024-\xff"], "--after"),
        ([b"search", b"x", b"--threshold", b"\xff"], "--threshold"),
        ([b"duplicates", b"--threshold", b"\xff"], "--threshold"),
        ([b"index", b"/tmp", b"--exclude", b"\xff*"], "--exclude"),
        ([b"index", b"/tmp", b"--shard", b"0/\xff"], "--shard"),
        ([b"watch", b"/tmp", b"--poll", b"\xff"], "--poll"),
        ([b"eval", b"/tmp", b"--model", b"\xff"], "--model"),
        ([b"eval", b"/tmp", b"--template", b"\xff {}"], "--template"),
        ([b"eval", b"/tmp", b"--at", b"1,\xff"], "--at/--k"),
        ([b"restore", b"/tmp/x.tar", b"--collection", b"\xff"], "--collection"),
    ],
)
def test_text_that_is_not_utf8_is_one_line_with_its_bytes_shown_and_exit_2(
    tmp_path: Path, model_path: Path, argv: list[bytes], option: str
) -> None:
    env = cli_env(tmp_path, model_path)
    line = one_usage_error(run_bytes(env, *argv), option)
    assert "is not UTF-8 text" in line and ("\\xff" in line or "\\xe9" in line), line
    assert not (tmp_path / "qdrant").exists()  # refused before the store (or the model) was opened


def test_paths_that_are_not_utf8_are_opened_by_every_command(tmp_path: Path, model_path: Path) -> None:
    env = cli_env(tmp_path, model_path)
    library = os.fsencode(tmp_path) + b"/Photos-\xff"
    classes = [b"caf\xe9", b"plain"]
    for c, name in enumerate(classes):
        for i in range(2):
            os.makedirs(library + b"/" + name, exist_ok=True)
            distinct_image(10 * c + i).save(os.fsdecode(library + b"/" + name + b"/img%d-\xe9.png" % i))
    done = run_bytes(env, b"index", library)
    assert done.returncode == 0 and "4 added" in done.stdout, done.stdout + done.stderr

    image = library + b"/caf\xe9/img0-\xe9.png"
    done = run_bytes(env, b"search", b"--image", image, b"--folder", library + b"/caf\xe9", b"--paths")
    assert done.returncode == 0, done.stderr
    assert os.fsencode(done.stdout.splitlines()[0]) == image  # --paths gives the file's own bytes back

    done = run_bytes(env, b"eval", library, b"--json")  # class folders that are not UTF-8 are classes too
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["images"] == 4 and report["dataset"].endswith("Photos-\\xff")

    archive = os.fsencode(tmp_path) + b"/backup-\xff.tar"
    assert run_bytes(env, b"backup", archive).returncode == 0 and os.path.isfile(archive)
    done = run_bytes(env, b"restore", archive, b"--force")
    assert done.returncode == 0 and "restored 4 images" in done.stdout, done.stderr


# ---------------------------------------------------------------------------------------------
# R3-5: a name that is a path


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "../x", "a\\b", "tab\there", "bell\x07", "rtl\u202e", "\udcff"])
def test_a_collection_name_that_would_be_a_path_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="QDRANT_COLLECTION must be a short name that can be a folder's"):
        collection_name("QDRANT_COLLECTION", name)


def test_names_people_use_are_collection_names() -> None:
    for name in ("images", "photos-2024", "clip_L.14", "café"):
        assert collection_name("QDRANT_COLLECTION", name) == name


def test_qdrant_collection_dot_dot_is_refused_and_nothing_is_made_beside_the_store(
    tmp_path: Path, model_path: Path
) -> None:
    store = tmp_path / "stores" / "qdrant"
    store.mkdir(parents=True)
    env = cli_env(tmp_path, model_path, QDRANT_PATH=str(store), QDRANT_COLLECTION="..")
    done = run_bytes(env, "info")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: QDRANT_COLLECTION must be a short name") and done.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path / "stores")) == ["qdrant"] and os.listdir(store) == []

    done = run_bytes(cli_env(tmp_path, model_path, QDRANT_PATH=str(store)), "restore", "x.tar", "--collection", "..")
    assert "--collection must be a short name" in one_usage_error(done, "--collection")


def test_with_a_server_the_job_journal_stays_in_upload_dir(tmp_path: Path) -> None:
    settings = Settings(qdrant_url="http://127.0.0.1:6333", upload_dir=tmp_path / "app" / "uploads")
    assert settings.jobs_journal.parent == tmp_path / "app" / "uploads"
    embedded = Settings(qdrant_path=tmp_path / "qdrant")
    assert embedded.jobs_journal.parent == tmp_path / "qdrant"


def _files(root: Path) -> dict[str, str]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_nothing_is_written_outside_the_folders_the_settings_name(tmp_path: Path, model_path: Path) -> None:
    inputs, named, cwd = tmp_path / "inputs", tmp_path / "named", tmp_path / "cwd"
    distinct_folder(inputs / "photos", 6, copies=1)
    (inputs / "tags.txt").write_text("red thing\nblue thing\ngreen thing\n")
    cwd.mkdir()
    home = tmp_path / "home"
    env = cli_env(
        tmp_path, model_path,
        QDRANT_PATH=str(named / "qdrant"), UPLOAD_DIR=str(named / "uploads"), THUMB_DIR=str(named / "thumbnails"),
        MODEL_CACHE_DIR=str(named / "model-cache"), TAGS_FILE=str(inputs / "tags.txt"), HOME=str(home), XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"), HF_HOME=str(home / "hf"),
    )
    (named / "backups").mkdir(parents=True)
    before = _files(tmp_path)
    for argv in (
        ["index", str(inputs / "photos")], ["search", "a red thing", "--tag", "red thing"], ["tags"], ["info"],
        ["duplicates"], ["backup", str(named / "backups")], ["eval", str(inputs / "photos")],
    ):
        done = run_bytes(env, *argv, cwd=cwd)
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, (argv, done.stderr)
    backup = next((named / "backups").iterdir())
    assert run_bytes(env, "restore", str(backup), "--force", cwd=cwd).returncode == 0
    after = _files(tmp_path)
    changed = {path for path, digest in after.items() if before.get(path) != digest}
    allowed = ("named/qdrant/", "named/uploads/", "named/thumbnails/", "named/model-cache/", "named/backups/")
    outside = sorted(path for path in changed if not path.startswith(allowed) and path != "empty.env")
    assert not outside, outside
    assert {p for p in before if p not in after} == set()  # nothing outside was deleted either
    assert any(p.startswith("named/qdrant/images/") for p in changed)  # the premise: the commands did write


# ---------------------------------------------------------------------------------------------
# R3-2: `embedder app` from any folder is as private as `make run`


def test_the_app_command_sets_what_the_checkouts_streamlit_config_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    private = {f"{section}.{key}": str(value).lower() for section, values in config.items()
               for key, value in values.items() if f"{section}.{key}" in cli.APP_OPTIONS}
    assert private == cli.APP_OPTIONS  # each option in both places, with the same value
    ran: list[list[str]] = []

    class App:  # Streamlit, as far as the command sees it: started, then done
        def __init__(self, command: list[str], env: dict[str, str]) -> None:
            ran.append(command)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", App)
    assert cli.app_main(["--server.port", "8502"]) == 0
    (command,) = ran
    for name, value in cli.APP_OPTIONS.items():
        assert command[command.index(f"--{name}") + 1] == value
    assert command[-2:] == ["--server.port", "8502"]
