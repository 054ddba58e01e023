"""Reliability round 2, storage: an unusable QDRANT_PATH, a full disk, an interrupted migration,
and servers that answer too slowly or are not Qdrant at all.

Each fault must end in one clear line (a `StoreError`; in the CLI one `error:` line and exit 1),
lose nothing, and let the next run finish the job.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from embedder import cli
from embedder.encoder import Encoder
from embedder.store import LOCK_NAME


@pytest.fixture
def cli_env_in_process(monkeypatch: pytest.MonkeyPatch, model_path: Path, tmp_path: Path, encoder: Encoder):
    """The CLI in this process on an embedded store in tmp_path, reusing the session's model.

    Returns a function that sets more variables (e.g. QDRANT_PATH).
    """
    monkeypatch.setattr("embedder.engine.Encoder", lambda *a, **k: encoder)
    monkeypatch.setattr(encoder, "batch_size", 4)
    for name, value in {
        "EMBEDDER_MODEL": str(model_path),
        "EMBEDDER_DEVICE": "cpu",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }.items():
        monkeypatch.setenv(name, value)
    return lambda **env: [monkeypatch.setenv(k, v) for k, v in env.items()]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, out: str, err: str) -> str:
    """The run failed with exit 1 and exactly one `error:` line on stderr, no traceback."""
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    return lines[0]


# --- R2-11: a QDRANT_PATH that cannot hold a store ------------------------------------------------


def test_a_qdrant_path_that_is_a_file_is_one_line(cli_env_in_process, capsys, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for path, words in [(a_file, f"{a_file} is a file, not a folder"), (a_file / "qdrant", f"{a_file} is a file")]:
        cli_env_in_process(QDRANT_PATH=str(path))
        line = one_error_line(*run(capsys, "index", str(tmp_path)))
        assert words in line and "QDRANT_PATH" in line, line
        one_error_line(*run(capsys, "migrate"))  # "nothing to migrate", one line too
    assert a_file.read_text() == "not a folder"


def test_a_qdrant_path_without_write_permission_is_one_line(
    cli_env_in_process, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores permission bits, so the denial is also simulated where the store opens its lock."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)  # counts when the tests run as a normal user
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("embedder.store.open", denied, raising=False)
    cli_env_in_process(QDRANT_PATH=str(folder))
    try:
        line = one_error_line(*run(capsys, "info"))
    finally:
        folder.chmod(0o755)
    assert f"Cannot write to {folder}: permission denied" in line and "QDRANT_PATH" in line, line
    assert list(folder.iterdir()) == []
