"""Crash and resume: `python -m embedder index` killed partway (SIGKILL, Ctrl-C) loses nothing.

The CLI runs as a user runs it, its stderr on a pseudo-terminal so it prints progress after each
stored batch. The test waits for real progress, then stops the terminal's output (Ctrl-S), which
parks the process at its next progress line: it cannot finish behind the test's back, so "partway"
is guaranteed, not hoped for. Then the signal; then a re-run must finish the job exactly once.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from pathlib import Path

import pytest

from embedder.engine import Engine
from embedder.media.images import decode, file_hash, point_id
from embedder.query.terms import Query
from faultkit import TerminalRun, cli_env, distinct_folder, run_cli

pytestmark = pytest.mark.slow

DISTINCT = 60
COPIES = 4  # byte-identical files under other names: one point each, several paths


@pytest.fixture
def folder(tmp_path: Path) -> list[Path]:
    return distinct_folder(tmp_path / "photos", DISTINCT, copies=COPIES, size=(320, 240))


@pytest.fixture
def env(tmp_path: Path, model_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, model_path, EMBEDDER_BATCH_SIZE="4", EMBEDDER_WORKERS="1")


def interrupt_partway(env: dict[str, str], root: Path, signum: int) -> tuple[int, str]:
    run = TerminalRun(env, "index", str(root))
    try:
        done, total = run.wait_progress(at_least=20)  # several batches stored, most still to come
        run.freeze()  # the process now blocks at its next progress line
        assert done < total == DISTINCT + COPIES
        run.signal(signum)
        code, _, terminal = run.finish()
        return code, terminal
    finally:
        run.close()


def assert_complete(engine: Engine, files: list[Path]) -> None:
    """Exactly one point per distinct image, every path once, every image finds itself first."""
    hashes = {p: file_hash(p) for p in files}
    assert len(set(hashes.values())) == DISTINCT
    points = list(engine.store.scroll())
    assert engine.store.count() == len(points) == DISTINCT
    assert sorted(payload["sha256"] for _, payload, _ in points) == sorted(set(hashes.values()))
    paths = Counter(path for _, payload, _ in points for path in payload["paths"])
    assert paths == Counter(str(p) for p in files)  # every file once, none twice, nothing else
    for pid, payload, _ in points:
        assert pid == point_id(payload["sha256"]) and payload["model"] == engine.encoder.model_id
    for path in files:
        image = decode(path, engine.settings.max_image_pixels, engine.encoder.image_size).image
        best = engine.searcher.search(Query.image(image), 2)
        assert best[0].id == point_id(hashes[path]), f"{path.name} does not find itself first"
        assert best[0].score > best[1].score


def stored_count(reopen) -> int:
    engine = reopen()
    try:
        return engine.store.count()
    finally:
        engine.close()


def test_sigkill_partway_then_rerun_finishes_exactly_once(folder: list[Path], env, tmp_path: Path, reopen) -> None:
    code, _ = interrupt_partway(env, tmp_path / "photos", signal.SIGKILL)
    assert code == -signal.SIGKILL
    landed = stored_count(reopen)  # the killed process's lock is gone: the store opens
    assert 20 - COPIES <= landed < DISTINCT  # every batch reported stored was stored

    done = run_cli(env, "index", str(tmp_path / "photos"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["failed"] == []
    assert len(report["added"]) + len(report["copies"]) + len(report["unchanged"]) == DISTINCT + COPIES
    assert len(report["unchanged"]) >= landed  # what landed before the kill was not encoded again

    engine = reopen()
    try:
        assert_complete(engine, folder)
    finally:
        engine.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_exits_130_with_the_message_and_leaves_a_clean_store(
    folder: list[Path], env, tmp_path: Path, reopen, signum: int
) -> None:
    """Ctrl-C exits 130; SIGTERM (a service manager stopping it) is taken the same way and exits 143."""
    code, terminal = interrupt_partway(env, tmp_path / "photos", signum)
    assert code == 128 + signum, terminal
    assert "interrupted: run the same command again to finish" in terminal
    assert "Traceback" not in terminal

    engine = reopen()  # clean: lock released, collection readable and writable
    try:
        landed = engine.store.count()
        assert 20 - COPIES <= landed < DISTINCT  # every batch reported stored was stored
        assert len(list(engine.store.scroll())) == landed
    finally:
        engine.close()

    done = run_cli(env, "index", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    added, unchanged = map(int, re.search(r"(\d+) added, (\d+) unchanged", done.stdout).groups())
    copies = re.search(r"(\d+) already indexed \(another copy\)", done.stdout)
    assert added + unchanged + (int(copies[1]) if copies else 0) == DISTINCT + COPIES and unchanged >= landed
    assert "failed" not in done.stdout  # the summary names only what happened

    engine = reopen()
    try:
        assert_complete(engine, folder)
    finally:
        engine.close()
