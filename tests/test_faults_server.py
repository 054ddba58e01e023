"""Server mode faults (QDRANT_URL): unreachable, hung, rude, refusing, or dying mid-index.

Each fault must give one clear message (a `StoreError`; in the CLI one `error:` line, exit 1),
leave no half-written point, and let a later run finish with no duplicates. The API key must never
show up in logs (any logger, DEBUG), warnings, error messages or CLI output.

The servers are stubs on 127.0.0.1 (tests/faultkit.py), the richest a fake Qdrant that speaks the
REST subset this product uses, so the real qdrant-client and its real transport errors are used.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.errors import StoreError
from embedder.media.images import file_hash, point_id
from embedder.store import Point, open_store
from faultkit import ClosingServer, FakeQdrant, StatusServer, distinct_folder, free_port, server_mode

KEY = "sk-top-secret-9f8e7d6c5b4a"


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch, model_path: Path, tmp_path: Path, encoder: Encoder):
    """The CLI in this process, in server mode with an API key; the session's model reused."""
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    monkeypatch.setattr(encoder, "batch_size", 4)
    return server_mode(monkeypatch, model_path, tmp_path, KEY, timeout_s="2", EMBEDDER_DEVICE="cpu")


@pytest.fixture
def watch(caplog: pytest.LogCaptureFixture):
    """Everything logged (every logger, DEBUG) and every warning, to search for the key."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lambda: caplog.text + "\n".join(str(w.message) for w in caught)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, out: str, err: str) -> str:
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    return lines[0]


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return distinct_folder(tmp_path / "photos", 30, copies=2)


def test_closed_port_is_one_clear_line_and_the_key_stays_secret(server_env, watch, capsys, photos, tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    server_env(url)
    line = one_error_line(*run(capsys, "index", str(tmp_path / "photos")))
    assert f"Cannot reach the Qdrant server at {url}" in line and "QDRANT_URL" in line
    assert KEY not in line and KEY not in watch()


@pytest.mark.parametrize("hold", [False, True], ids=["accepts-and-closes", "accepts-and-hangs"])
def test_a_server_that_closes_or_hangs_is_one_clear_line(server_env, watch, capsys, tmp_path, hold: bool) -> None:
    with ClosingServer(hold=hold) as server:
        server_env(server.url)
        started = time.monotonic()
        line = one_error_line(*run(capsys, "info"))
        assert server.accepted >= 1
    assert server.url in line and ("Cannot reach" in line or "failed" in line)
    if hold:
        assert "timed out" in line.lower()
        assert time.monotonic() - started < 60  # QDRANT_TIMEOUT=2 holds; a hung server does not hang us
    assert KEY not in line and KEY not in watch()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_says_so_and_never_shows_the_key(server_env, watch, capsys, tmp_path, status: int) -> None:
    with StatusServer(status) as server:
        server_env(server.url)
        line = one_error_line(*run(capsys, "index", str(tmp_path)))
    assert f"refused the API key (HTTP {status})" in line and "QDRANT_API_KEY" in line
    assert any(h.get("api-key") == KEY for h in server.headers_seen)  # it was sent, in its header only
    assert KEY not in line and KEY not in watch()


def test_a_wrong_key_on_a_qdrant_is_refused_and_the_right_one_works(server_env, watch, capsys, photos, tmp_path) -> None:
    with FakeQdrant(api_key="the-right-key") as server:
        server_env(server.url)
        line = one_error_line(*run(capsys, "info"))
        assert "refused the API key (HTTP 401)" in line
        assert server.state.collections == {}  # nothing was created with a refused key
    assert KEY not in line and KEY not in watch()

    with FakeQdrant(api_key=KEY) as server:
        server_env(server.url)
        code, out, err = run(capsys, "index", str(tmp_path / "photos"))
        assert code == 0, err
        assert "30 added, 2 already indexed (another copy)" in out and "unchanged" not in out
        assert len(server.state.collections["images"].points) == 30
        code, out, err = run(capsys, "search", "a photo", "-k", "3")
        assert code == 0 and len(out.strip().splitlines()) == 3, err
    assert KEY not in out + err and KEY not in watch()


def check_points(state, expected: dict[str, set[str]], dim: int, complete: bool) -> None:
    """No partial garbage: every stored point is a whole one, with a unit vector of the model's size."""
    points = state.collections["images"].points
    for pid, (vector, payload) in points.items():
        assert payload["sha256"] in expected and pid == point_id(payload["sha256"])
        assert set(payload["paths"]) <= expected[payload["sha256"]]
        assert len(vector) == dim and abs(np.linalg.norm(vector) - 1) < 1e-3
        assert payload["model"] and payload["names"] and payload["width"] > 0
    if complete:
        assert {p["sha256"]: set(p["paths"]) for _, p in points.values()} == expected


def test_a_server_dying_mid_index_is_one_line_and_a_later_run_finishes(
    server_env, watch, capsys, photos, tmp_path, encoder: Encoder
) -> None:
    expected: dict[str, set[str]] = defaultdict(set)
    for path in photos:
        expected[file_hash(path)].add(str(path))
    with FakeQdrant(api_key=KEY, die_after_upserts=3) as server:
        server_env(server.url)
        line = one_error_line(*run(capsys, "index", str(tmp_path / "photos")))
        assert server.died.is_set()
    # Its fourth batch was stored, but the answer never came: the worst case for the client.
    assert server.url in line and ("Cannot reach" in line or "failed" in line), line
    state = server.state
    landed = len(state.collections["images"].points)
    assert 0 < landed < len(expected) and state.upsert_calls == 4
    check_points(state, expected, encoder.dim, complete=False)

    with FakeQdrant(api_key=KEY, state=state, port=server.port) as restored:
        code, out, err = run(capsys, "index", str(tmp_path / "photos"))
        assert code == 0, err
        counts = {word: int(m.group(1)) if (m := re.search(r"(\d+) " + word, out)) else 0 for word in ("added", "unchanged")}
        added, unchanged = counts["added"], counts["unchanged"]
        assert unchanged >= landed and added + unchanged == len(photos)
        check_points(restored.state, expected, encoder.dim, complete=True)
        assert len(restored.state.collections["images"].points) == len(expected)  # no duplicates
    assert KEY not in line + out + err and KEY not in watch()


def test_store_errors_from_the_api_never_carry_the_key(settings: Settings, watch) -> None:
    """The library path too (the pages use it): every failure is a StoreError without the key."""
    server_settings = replace(settings, qdrant_api_key=KEY)
    with FakeQdrant(api_key=KEY, die_after_upserts=0) as server:
        store = open_store(replace(server_settings, qdrant_url=server.url), "m", 3)

        with pytest.raises(StoreError) as info:
            store.upsert([Point(point_id("ab" * 32), np.array([1.0, 0, 0], dtype=np.float32), {"paths": ["/x.png"]})])
        with pytest.raises(StoreError) as after:
            store.count()  # the server is gone now
        store.close()
    for exc in (info.value, after.value):
        assert "\n" not in str(exc) and server.url in str(exc) and KEY not in str(exc)
    assert KEY not in repr(server_settings) and KEY not in watch()


def test_credentials_in_the_url_are_not_shown(server_env, watch, capsys) -> None:
    url = f"http://admin:hunter2-secret@127.0.0.1:{free_port()}"
    server_env(url)
    line = one_error_line(*run(capsys, "info"))
    assert "Cannot reach the Qdrant server at http://" in line and "127.0.0.1" in line
    assert "hunter2-secret" not in watch(), "LOG"
    assert "hunter2-secret" not in line
