"""Reliability round 2, storage: an unusable QDRANT_PATH, a full disk, an interrupted migration,
and servers that answer too slowly or are not Qdrant at all.

Each fault must end in one clear line (a `StoreError`; in the CLI one `error:` line and exit 1),
lose nothing, and let the next run finish the job.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.errors import StoreError
from embedder.store.http import proxy_for, server_client
from embedder.store import LOCK_NAME, Point, QdrantStore, open_store
from embedder.store.edge import STAGING_DIR, is_local_mode_folder, migration_pending
from embedder.store.migrate import migrate_local
from faultkit import FakeQdrant, RawServer, cli_env, distinct_folder, free_port, http_response, run_cli, wait_until
from test_faults_server import one_error_line, run


@pytest.fixture
def cli_env_in_process(monkeypatch: pytest.MonkeyPatch, model_path: Path, tmp_path: Path, encoder: Encoder):
    """The CLI in this process on an embedded store in tmp_path, reusing the session's model.

    Returns a function that sets more variables (e.g. QDRANT_PATH).
    """
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    monkeypatch.setattr(encoder, "batch_size", 4)
    for name, value in {
        "EMBEDDER_MODEL": str(model_path),
        "EMBEDDER_DEVICE": "cpu",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }.items():
        monkeypatch.setenv(name, value)

    def setenv(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return setenv


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

    monkeypatch.setattr("embedder.store.lock.open", denied, raising=False)
    cli_env_in_process(QDRANT_PATH=str(folder))
    try:
        line = one_error_line(*run(capsys, "info"))
    finally:
        folder.chmod(0o755)
    assert f"Cannot write to {folder}: permission denied" in line and "QDRANT_PATH" in line, line
    assert list(folder.iterdir()) == []


# --- R2-10: servers that answer too slowly, or are not Qdrant ---------------------------------------

KEY = "sk-r2-secret-0a1b2c3d4e5f"
QDRANT_LIST = b'{"result":{"collections":[]},"status":"ok","time":0.0}'
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"


@pytest.fixture
def warnings_seen():
    """Every warning raised meanwhile (the CLI would print each as lines of its own)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def test_a_server_dripping_one_byte_at_a_time_times_out_as_a_whole(cli_env_in_process, capsys, warnings_seen) -> None:
    """httpx's timeout applies to each read; the drip never lets one wait that long."""
    timeout_s = 2
    drip = http_response("200 OK", "application/json", QDRANT_LIST)
    with RawServer(drip, drip_s=0.25, give_up_s=8 * timeout_s) as server:
        cli_env_in_process(QDRANT_URL=server.url, QDRANT_API_KEY=KEY, QDRANT_TIMEOUT=str(timeout_s))
        line = one_error_line(*run(capsys, "info"))
        wait_until(lambda: server.lasted, "the server to see the connection end")
    assert server.sent[0] < len(drip) and server.client_hung_up[0]  # the client gave up mid-answer
    assert server.lasted[0] < 3 * timeout_s, server.lasted
    assert server.url in line and "timed out" in line and f"QDRANT_TIMEOUT, {timeout_s} s" in line, line
    assert KEY not in line and [str(w.message) for w in warnings_seen] == []


@pytest.mark.parametrize("status", ["200 OK", "502 Bad Gateway", "401 Unauthorized"])
def test_an_html_page_instead_of_qdrant_says_so(cli_env_in_process, capsys, warnings_seen, status: str) -> None:
    with RawServer(http_response(status, "text/html; charset=utf-8", HTML_PAGE)) as server:
        cli_env_in_process(QDRANT_URL=server.url)
        line = one_error_line(*run(capsys, "info"))
    assert f"The server at {server.url} answered with HTML (HTTP {status.split()[0]})" in line, line
    assert "not Qdrant's API" in line and "QDRANT_URL" in line
    assert "Expecting value" not in line and "validation error" not in line.lower()
    assert [str(w.message) for w in warnings_seen] == []


def test_an_api_key_over_plain_http_is_one_logged_line_once(
    cli_env_in_process, capsys, warnings_seen, caplog: pytest.LogCaptureFixture
) -> None:
    """qdrant-client warns on every open, three lines with its source; we say it once, and only
    when the key leaves this machine (0.0.0.0 is not a loopback address, and nothing listens)."""
    caplog.set_level(logging.DEBUG)
    cli_env_in_process(QDRANT_API_KEY=KEY, QDRANT_TIMEOUT="2")
    remote, other_remote = f"http://0.0.0.0:{free_port()}", f"http://0.0.0.0:{free_port()}"
    for url in (f"http://127.0.0.1:{free_port()}", remote, remote, other_remote):
        cli_env_in_process(QDRANT_URL=url)
        assert "Cannot reach the Qdrant server" in one_error_line(*run(capsys, "info"))
    assert [str(w.message) for w in warnings_seen] == []
    plain_http = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(plain_http) == 2 and remote in plain_http[0] and other_remote in plain_http[1]  # once per server
    assert all("\n" not in r.getMessage() and KEY not in r.getMessage() for r in caplog.records)


def test_a_server_of_another_major_version_is_one_logged_line(
    cli_env_in_process, capsys, warnings_seen, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qdrant-client's own check warned from a background thread, at a random moment; ours logs in line."""
    monkeypatch.setattr(FakeQdrant, "VERSION", "2.0.0")
    with FakeQdrant() as server:
        cli_env_in_process(QDRANT_URL=server.url)
        code, out, err = run(capsys, "info")
    assert code == 0 and "images: 0" in out, err
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "version 2.0.0" in record.getMessage() and server.url in record.getMessage()
    assert [str(w.message) for w in warnings_seen] == []


def test_a_proxy_from_the_environment_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport is built by us now, not by httpx: HTTP_PROXY / NO_PROXY must still count."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with RawServer(http_response("200 OK", "application/json", QDRANT_LIST)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "bypassed.example")
        url = "http://qdrant.example:6333"
        client = server_client(url, url, None, 2)
        try:
            assert client.get_collections().collections == []
        finally:
            client.close()
        assert proxy.requests[0].startswith(b"GET http://qdrant.example:6333/collections ")
        assert proxy_for("http://bypassed.example:6333") is None


@pytest.mark.slow
def test_the_cli_process_prints_one_line_for_a_dripping_server_with_a_key(tmp_path: Path, model_path: Path) -> None:
    """The real process: library warnings would print on stderr here, each with its source line."""
    timeout_s = 2
    drip = http_response("200 OK", "application/json", QDRANT_LIST)
    with RawServer(drip, drip_s=0.25, give_up_s=8 * timeout_s) as server:
        env = cli_env(tmp_path, model_path, QDRANT_URL=server.url, QDRANT_API_KEY=KEY, QDRANT_TIMEOUT=str(timeout_s))
        result = run_cli(env, "info")
        wait_until(lambda: server.lasted, "the server to see the connection end")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: Cannot reach"), result.stderr
    assert "timed out" in result.stderr and KEY not in result.stdout + result.stderr
    assert server.client_hung_up[0] and server.lasted[0] < 3 * timeout_s, server.lasted


# --- R2-9: a full disk -------------------------------------------------------------------------------


class FillingDisk:
    """`shutil.disk_usage` for a disk that fills up: lots of room for the first `roomy` checks, then
    `left_mb`. (A real full disk is not made here; Edge would die of SIGBUS writing into it.)"""

    def __init__(self, roomy: int, left_mb: int) -> None:
        self.roomy, self.left_mb = roomy, left_mb
        self.paths: list[Path] = []
        self._real = shutil.disk_usage

    def __call__(self, path):
        self.paths.append(Path(path))
        free = 100 * 2**30 if len(self.paths) <= self.roomy else self.left_mb * 2**20
        return self._real(path)._replace(free=free)


def test_a_full_disk_stops_index_with_one_line_and_a_rerun_finishes(
    cli_env_in_process, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopen, settings
) -> None:
    photos = distinct_folder(tmp_path / "photos", 12)
    disk = FillingDisk(roomy=3, left_mb=5)  # the open and two batches of 4 fit
    monkeypatch.setattr(shutil, "disk_usage", disk)

    line = one_error_line(*run(capsys, "index", str(tmp_path / "photos")))

    assert f"Only 5 MB free on the disk of {settings.qdrant_path}" in line, line
    assert "free some space and run again (nothing was lost)" in line
    assert set(disk.paths) == {settings.qdrant_path}
    monkeypatch.setattr(shutil, "disk_usage", disk._real)  # space was freed
    engine = reopen()
    try:
        stored = list(engine.store.scroll(with_vectors=True))
        assert 0 < len(stored) < len(photos)  # it really stopped partway
        for _, payload, vector in stored:  # every point that landed is whole
            assert set(payload["paths"]) <= {str(p) for p in photos} and abs(np.linalg.norm(vector) - 1) < 1e-3
    finally:
        engine.close()

    code, out, err = run(capsys, "index", str(tmp_path / "photos"))
    assert code == 0, err
    assert f"{len(photos) - len(stored)} added, {len(stored)} unchanged" in out, out
    engine = reopen()
    try:
        paths = [path for _, payload, _ in engine.store.scroll() for path in payload["paths"]]
        assert sorted(paths) == sorted(map(str, photos))  # each exactly once
    finally:
        engine.close()


def test_a_full_disk_refuses_to_open_the_store_and_creates_nothing(
    cli_env_in_process, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "fresh"
    cli_env_in_process(QDRANT_PATH=str(folder))
    monkeypatch.setattr(shutil, "disk_usage", FillingDisk(roomy=0, left_mb=63))
    code, out, err = run(capsys, "info")  # info only reads (#25): there is nothing to open yet, and it says so
    assert code == 0 and "images: 0" in out, err
    line = one_error_line(*run(capsys, "index", str(tmp_path)))
    assert f"Only 63 MB free on the disk of {folder} (writing here needs 64 MB)" in line, line
    assert [p.name for p in folder.iterdir()] == [LOCK_NAME]  # no collection was begun


# --- R2-5: a migration killed at any step -------------------------------------------------------------


class Killed(BaseException):
    """Stands in for SIGKILL: no `except Exception` catches it, nothing after it runs."""


# Every call that changes the folder: the step boundaries of a migration (rmtree's own unlinks too).
FOLDER_CHANGES = [(os, "replace"), (os, "rename"), (os, "mkdir"), (os, "rmdir"), (os, "unlink"), (shutil, "rmtree")]


def run_killed(action, kill: Callable[[int], bool], monkeypatch: pytest.MonkeyPatch) -> tuple[int, bool]:
    """Run `action()`, killed just before the first change to the files for which `kill(changes
    made so far)` is true. Returns (changes made, whether it was killed)."""
    made = [0]

    def counted(real):
        def change(*args, **kwargs):
            if kill(made[0]):
                raise Killed
            made[0] += 1
            return real(*args, **kwargs)

        return change

    with monkeypatch.context() as patch:
        for module, name in FOLDER_CHANGES:
            patch.setattr(module, name, counted(getattr(module, name)))
        try:
            action()
        except Killed:
            return made[0], True
    return made[0], False


IMAGES = {f"00000000-0000-0000-0000-{n:012d}": {"paths": [f"/p/{n}.jpg"], "format": "JPEG", "width": n} for n in range(12)}
SECOND = {"00000000-0000-0000-0000-000000000099": {"paths": ["/q/1.png"]}}


def local_mode_index(settings: Settings, with_second: bool) -> None:
    """An old qdrant-client local-mode index: 'images' (12 points, 4-d, clip-a) and, if asked,
    'second' (1 point, 3-d, clip-b)."""
    rng = np.random.default_rng(5)
    with QdrantStore.embedded(settings, "clip-a", 4) as old:
        old.upsert([Point(i, unit(rng.normal(size=4)), p) for i, p in IMAGES.items()])
    if with_second:
        with QdrantStore.embedded(replace(settings, collection="second"), "clip-b", 3) as old:
            old.upsert([Point(i, unit([1, 2, 3]), p) for i, p in SECOND.items()])


def unit(values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def old_files(folder: Path) -> dict[str, bytes]:
    """The local-mode index's files (meta.json, collection/…) and their bytes."""
    files = [folder / "meta.json", *(folder / "collection").rglob("*")]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files if p.is_file()}


def assert_half_done_store_refuses(settings: Settings) -> None:
    """The store never opens empty while a migration is half done: it says to run migrate."""
    with pytest.raises(StoreError, match="migrate") as refused:
        open_store(settings, "clip-a", 4)
    assert "\n" not in str(refused.value)


def assert_migrated_once(settings: Settings, source: Path, with_second: bool) -> None:
    """Every point exactly once with its payload, the old files in one backup, nothing left over."""
    folder = settings.qdrant_path
    with open_store(settings, "clip-a", 4) as store:
        assert {pid: payload for pid, payload, _ in store.scroll()} == IMAGES and store.count() == len(IMAGES)
    if with_second:
        with open_store(replace(settings, collection="second"), "clip-b", 3) as store:
            assert {pid: payload for pid, payload, _ in store.scroll()} == SECOND
    [backup] = folder.glob("local-mode-backup-*")
    assert is_local_mode_folder(backup) and old_files(backup) == old_files(source)
    assert not (folder / STAGING_DIR).exists() and not migration_pending(folder)


@pytest.mark.slow
def test_a_migration_killed_while_copying_keeps_the_old_index_and_the_next_run_finishes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before each change to the files until the copies are committed (the journal written)."""
    source = replace(settings, qdrant_path=tmp_path / "source")
    local_mode_index(source, with_second=False)
    step = 0
    while True:
        target = replace(settings, qdrant_path=tmp_path / f"killed-at-{step}")
        shutil.copytree(source.qdrant_path, target.qdrant_path)
        made, killed = run_killed(partial(migrate_local, target), step.__eq__, monkeypatch)
        assert killed and made == step
        if migration_pending(target.qdrant_path):
            break  # past the copying: the next test takes it from here
        assert old_files(target.qdrant_path) == old_files(source.qdrant_path), f"killed at step {step}"
        assert_half_done_store_refuses(target)
        assert migrate_local(target) == {"images": len(IMAGES)}, f"killed at step {step}"
        assert_migrated_once(target, source.qdrant_path, with_second=False)
        shutil.rmtree(target.qdrant_path)
        step += 1
    assert step >= 5, step  # the copying really has that many steps: a staging folder, copies, meta files


@pytest.mark.slow
def test_a_migration_killed_while_moving_files_is_finished_by_the_next_run(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before each change once the copies are committed. The run that wrote the journal
    then does what every later run does (`_finish_migration` from the journal), so each step is
    reached by killing a resumed run, after one copy made for all."""
    source = replace(settings, qdrant_path=tmp_path / "source")
    local_mode_index(source, with_second=True)
    committed = replace(settings, qdrant_path=tmp_path / "committed")
    shutil.copytree(source.qdrant_path, committed.qdrant_path)
    journal_written = lambda _: migration_pending(committed.qdrant_path)  # noqa: E731
    _, killed = run_killed(partial(migrate_local, committed), journal_written, monkeypatch)
    assert killed and is_local_mode_folder(committed.qdrant_path)  # the journal is written; nothing moved yet
    step = 0
    while True:
        target = replace(settings, qdrant_path=tmp_path / f"killed-at-{step}")
        shutil.copytree(committed.qdrant_path, target.qdrant_path)
        made, killed = run_killed(partial(migrate_local, target), step.__eq__, monkeypatch)
        if not killed:
            break  # it finished before this step: every step has been tried
        assert made == step
        assert_half_done_store_refuses(target)
        assert migrate_local(target) == {"images": len(IMAGES), "second": len(SECOND)}, f"killed at step {step}"
        assert_migrated_once(target, source.qdrant_path, with_second=True)
        shutil.rmtree(target.qdrant_path)
        step += 1
    assert_migrated_once(target, source.qdrant_path, with_second=True)
    assert step >= 6, step  # backup folder, 3 old files, 2 copies, clean-up: each was a kill point
