"""The CLI as a tool people live with: --version, help for everything, paths for xargs, info's paths, watch."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import ROOT, cli_env, distinct_image, wait_until

from embedder import __version__, cli


@pytest.fixture
def env(tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = cli_env(tmp_path, model_path)
    for key in ("EMBEDDER_ENV_FILE", "EMBEDDER_MODEL", "EMBEDDER_DEVICE", "QDRANT_PATH", "UPLOAD_DIR"):
        monkeypatch.setenv(key, values[key])
    return values


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"embedder {__version__}"


def test_every_command_and_option_says_what_it_does() -> None:
    def actions(parser: argparse.ArgumentParser, where: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from actions(sub, f"{where} {name}")
                for choice in action._choices_actions:
                    yield f"{where} {choice.dest}", choice.help
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield f"{where} {'/'.join(action.option_strings) or action.dest}", action.help

    missing = [name for name, text in actions(cli.build_parser(), "embedder") if not text]
    assert not missing, f"no help text: {missing}"


def test_search_paths_prints_the_files_one_per_line_byte_for_byte(env, tmp_path: Path, capsysbinary) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")  # Latin-1: not a UTF-8 name
    distinct_image(1).save(odd.decode("utf-8", "surrogateescape"), format="PNG")
    distinct_image(2).save(folder / "plain.png")
    assert cli.main(["index", str(folder)]) == 0
    capsysbinary.readouterr()
    assert cli.main(["search", "a photo", "-k", "5", "--paths"]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    assert sorted(lines) == sorted([odd, os.fsencode(folder / "plain.png")])
    assert all(os.path.exists(line) for line in lines)


def test_info_names_every_path_in_use(env, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"location: {env['QDRANT_PATH']}" in out
    assert f"uploads: {env['UPLOAD_DIR']}" in out and f"settings: {env['EMBEDDER_ENV_FILE']}" in out


@pytest.mark.slow
def test_watch_indexes_now_then_whatever_arrives_until_ctrl_c(tmp_path: Path, model_path: Path) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    distinct_image(1).save(folder / "img001.png")
    out = tmp_path / "watch.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embedder", "watch", str(folder)],
            cwd=ROOT, env=cli_env(tmp_path, model_path), stdout=sink, stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: b"Catch up" in out.read_bytes() and b"1 added" in out.read_bytes(),
                       "the catch-up pass", deadline_s=120, step_s=0.1)
            distinct_image(2).save(folder / "img002.png")  # a photo dropped into the folder
            wait_until(lambda: b"New or changed" in out.read_bytes(), "the new photo to be indexed", deadline_s=60)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        finally:
            proc.kill()
    text = out.read_bytes().decode()
    assert f"New or changed: {folder / 'img002.png'}: 1 added" in text
    assert "stopped watching" in text and "Traceback" not in text


def test_a_busy_store_is_answered_before_torch_loads_and_says_what_it_is_doing(tmp_path: Path, model_path: Path) -> None:
    """The order of events, not a time: the in-use message comes before the model's libraries are imported."""
    from embedder.config import Settings
    from embedder.store import FolderLock

    env = cli_env(tmp_path, model_path)
    settings = Settings.from_env(environ=env)
    settings.jobs_journal.parent.mkdir(parents=True, exist_ok=True)
    settings.jobs_journal.write_text('{"format": 1, "jobs": [{"kind": "index", "paths": ["/p"], "label": "/home/me/Pictures"},'
                                     ' {"kind": "index", "paths": ["/q"], "label": "/q"}]}')
    lock = FolderLock(settings.qdrant_path)  # what the app holds while it runs
    try:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "embedder", "info"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
    finally:
        lock.release()
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1
    assert f"The storage folder {settings.qdrant_path} is in use by process {os.getpid()}" in errors[0]
    assert "It is indexing /home/me/Pictures (1 more queued)." in errors[0]
    assert "embedder.cli" in imported and not {"torch", "transformers", "qdrant_client", "qdrant_edge"} & imported
