"""`embedder backup` / `embedder restore` with a Qdrant server (QDRANT_URL), against a stub that
speaks the snapshot endpoints on top of tests/faultkit.py's fake Qdrant: the right requests (with
the API key), the archive written, the restore uploaded, every failure one line without the key.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import re
import tarfile
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest

from embedder.store.archive import MANIFEST_NAME
from embedder.models.ids import expected_model_id
from faultkit import FakeCollection, FakeQdrant, FakeState, _Http, _QdrantHandler, free_port, server_mode
from test_faults_server import one_error_line, run

KEY = "sk-backup-secret-1234567890"
SNAPSHOT = re.compile(r"^/collections/([^/]+)/snapshots(?:/([^/]+))?$")


class SnapshotQdrant(FakeQdrant):
    """The fake Qdrant plus collection snapshots: make, download, delete, upload (recover)."""

    def __init__(self, api_key: str | None = KEY, state: FakeState | None = None) -> None:
        self.api_key = api_key
        self.die_after_upserts = None
        self.state = state or FakeState()
        self.died = threading.Event()
        self.requests: list[tuple[str, str, dict[str, str], str | None]] = []
        self.snapshots: dict[tuple[str, str], bytes] = {}
        self.bad_download = False
        _Http.__init__(self, _SnapshotHandler)


def blob(col: FakeCollection) -> bytes:
    """What the fake's snapshot file holds: the whole collection."""
    document = {"size": col.size, "distance": col.distance, "metadata": col.metadata, "points": col.points}
    return json.dumps(document).encode()


class _SnapshotHandler(_QdrantHandler):
    def _snapshots(self, method: str) -> bool:
        url = urlsplit(self.path)
        match = SNAPSHOT.match(url.path)
        if not match:
            return False
        fake: SnapshotQdrant = self.fake  # type: ignore[assignment]
        query = dict(parse_qsl(url.query))
        fake.requests.append((method, url.path, query, self.headers.get("api-key")))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fake.api_key is not None and self.headers.get("api-key") != fake.api_key:
            self._send(401, {"status": {"error": "Invalid api-key"}, "time": 0.0})
            return True
        name, snapshot = match.groups()
        with fake.state.lock:
            col = fake.state.collections.get(name)
            if method == "POST" and snapshot is None:
                if col is None:
                    self._send(404, {"status": {"error": f"Collection `{name}` doesn't exist!"}, "time": 0.0})
                    return True
                data = blob(col)
                made = f"{name}-{len(fake.snapshots)}.snapshot"
                fake.snapshots[(name, made)] = data
                checksum = hashlib.sha256(data).hexdigest()
                result = {"name": made, "creation_time": None, "size": len(data), "checksum": checksum}
                self._send(200, {"result": result, "status": "ok", "time": 0.0})
            elif method == "POST" and snapshot == "upload":
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
                parts = message.iter_parts()
                (part,) = [p for p in parts if p.get_param("name", header="content-disposition") == "snapshot"]
                data = part.get_payload(decode=True)
                if query.get("checksum") not in (None, hashlib.sha256(data).hexdigest()):
                    self._send(400, {"status": {"error": "Checksum mismatch"}, "time": 0.0})
                    return True
                doc = json.loads(data)
                points = {pid: tuple(value) for pid, value in doc["points"].items()}
                fake.state.collections[name] = FakeCollection(doc["size"], doc["distance"], doc["metadata"], points)
                self._send(200, {"result": True, "status": "ok", "time": 0.0})
            elif method == "GET" and snapshot:
                data = fake.snapshots[(name, snapshot)]
                if fake.bad_download:
                    data = data[: len(data) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif method == "DELETE" and snapshot:
                del fake.snapshots[(name, snapshot)]
                self._send(200, {"result": True, "status": "ok", "time": 0.0})
            else:
                self._send(404, {"status": {"error": "no such route"}, "time": 0.0})
        return True

    def do_GET(self) -> None:
        self._snapshots("GET") or self._route("GET")

    def do_POST(self) -> None:
        self._snapshots("POST") or self._route("POST")

    def do_DELETE(self) -> None:
        self._snapshots("DELETE") or self._send(404, {"status": {"error": "no such route"}, "time": 0.0})


def collection(model: str, count: int, seed: int = 0) -> FakeCollection:
    rng = np.random.default_rng(seed)
    points = {}
    for i in range(count):
        vector = rng.normal(size=8).astype(np.float32)
        unit = (vector / np.linalg.norm(vector)).tolist()
        points[f"00000000-0000-0000-0000-{seed:04d}{i:08d}"] = (unit, {"paths": [f"/p/{seed}/{i}.jpg"]})
    return FakeCollection(8, "Cosine", {"model": model, "dim": 8}, points)


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch, model_path: Path, tmp_path: Path):
    """Server mode with an API key; returns a function that points QDRANT_URL at a stub."""
    return server_mode(monkeypatch, model_path, tmp_path, KEY, timeout_s="5")


@pytest.fixture
def model(model_path: Path) -> str:
    return expected_model_id(str(model_path))


def test_a_server_backup_is_a_downloaded_snapshot_with_its_manifest(
    server_env, model: str, tmp_path: Path, capsys
) -> None:
    with SnapshotQdrant() as server:
        server.state.collections["images"] = original = collection(model, 3)
        server_env(server.url)
        dest = tmp_path / "server.tar.gz"
        code, out, err = run(capsys, "backup", str(dest))
        assert code == 0 and err == "", err
        assert f"backed up 3 images (collection images, model {model}) to {dest}" in out
        snapshot_calls = [(m, p, q) for m, p, q, _ in server.requests]
        assert snapshot_calls == [
            ("POST", "/collections/images/snapshots", {"wait": "true"}),
            ("GET", "/collections/images/snapshots/images-0.snapshot", {}),
            ("DELETE", "/collections/images/snapshots/images-0.snapshot", {"wait": "true"}),
        ]
        assert all(key == KEY for *_, key in server.requests)
        assert server.snapshots == {}  # the snapshot made for the backup is not left on the server
    with tarfile.open(dest) as tar:
        names = [m.name for m in tar]
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
        data = tar.extractfile("snapshot/images-0.snapshot").read()  # type: ignore[union-attr]
    assert names[0] == MANIFEST_NAME
    assert (manifest["mode"], manifest["model"], manifest["points"], manifest["dim"]) == ("server", model, 3, 8)
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["files"] == {"snapshot/images-0.snapshot": entry}
    assert data == blob(original)
    assert KEY not in out + err


def test_a_server_restore_uploads_the_checked_snapshot(server_env, model: str, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "server.tar.gz"
    with SnapshotQdrant() as server:
        server.state.collections["images"] = original = collection(model, 3)
        server_env(server.url)
        assert run(capsys, "backup", str(dest))[0] == 0
        with tarfile.open(dest) as tar:
            manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
        sha = manifest["files"]["snapshot/images-0.snapshot"]["sha256"]

    with SnapshotQdrant() as fresh:  # a new server: nothing there yet
        server_env(fresh.url)
        code, out, err = run(capsys, "restore", str(dest))
        assert code == 0 and err == "", err
        assert f"restored 3 images (model {model}) into collection images at {fresh.url}" in out
        uploads = [(p, q, k) for m, p, q, k in fresh.requests if m == "POST"]
        query = {"wait": "true", "priority": "snapshot", "checksum": sha}
        assert uploads == [("/collections/images/snapshots/upload", query, KEY)]
        want = {pid: tuple(v) for pid, v in json.loads(blob(original))["points"].items()}
        assert fresh.state.collections["images"].points == want

        fresh.state.collections["images"] = newer = collection(model, 2, seed=7)
        line = one_error_line(*run(capsys, "restore", str(dest)))
        assert "holds 2 images already" in line and "--force" in line and "not deleted" in line, line
        assert fresh.state.collections["images"] is newer

        code, out, err = run(capsys, "restore", str(dest), "--force")
        assert code == 0, err
        kept = [(c, n) for c, n in fresh.snapshots if c == "images"]
        assert len(kept) == 1 and kept[0][1] in out and "kept" in out  # the replaced collection, saved on the server
        assert fresh.snapshots[kept[0]] == blob(newer)
        assert len(fresh.state.collections["images"].points) == 3


def test_server_backup_failures_are_one_line_without_the_key(server_env, model: str, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "server.tar.gz"
    with SnapshotQdrant(api_key="another-key") as server:
        server.state.collections["images"] = collection(model, 3)
        server_env(server.url)
        line = one_error_line(*run(capsys, "backup", str(dest)))
        assert "refused the API key" in line and "QDRANT_API_KEY" in line, line
    with SnapshotQdrant() as server:
        server.state.collections["images"] = collection(model, 3)
        server.bad_download = True
        server_env(server.url)
        line = one_error_line(*run(capsys, "backup", str(dest)))
        assert "is not the one the server made" in line and "run the backup again" in line, line
        assert server.snapshots == {}
        server.bad_download = False
        server.state.collections.clear()
        line = one_error_line(*run(capsys, "backup", str(dest)))
        assert "Nothing to back up" in line and "no collection 'images'" in line, line
    server_env(f"http://127.0.0.1:{free_port()}")
    line = one_error_line(*run(capsys, "backup", str(dest)))
    assert "Cannot reach the Qdrant server" in line, line
    assert not dest.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert KEY not in capsys.readouterr().err


def test_backups_of_one_kind_of_store_are_not_restored_into_the_other(
    server_env, model: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    dest = tmp_path / "server.tar.gz"
    with SnapshotQdrant() as server:
        server.state.collections["images"] = collection(model, 3)
        server_env(server.url)
        assert run(capsys, "backup", str(dest))[0] == 0
    monkeypatch.delenv("QDRANT_URL")
    line = one_error_line(*run(capsys, "restore", str(dest)))
    assert "backup of a Qdrant server's collection" in line and "QDRANT_URL" in line, line
    assert not (tmp_path / "embedded" / "images").exists()
