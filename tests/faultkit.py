"""Helpers for the fault tests: distinct images, the CLI as a user runs it, and stub servers.

Nothing here sleeps on timing: every wait is on a condition (a line of output, a process ending,
a socket answering) with a bounded deadline, and fails loudly when the deadline passes.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from PIL.ExifTags import IFD, Base

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 120.0  # generous upper bound for one CLI run on a slow 2-core CI machine


# --------------------------------------------------------------------------------------------
# Images


def distinct_image(i: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Image number `i`: a seeded background with seeded rectangles, far from every other `i`."""
    rng = np.random.default_rng(i)
    img = Image.new("RGB", size, tuple(int(x) for x in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w * 3 // 4)), int(rng.integers(0, h * 3 // 4))
        x1, y1 = x0 + int(rng.integers(w // 16, w * 3 // 8)), y0 + int(rng.integers(h // 12, h * 5 // 12))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(x) for x in rng.integers(0, 256, 3)))
    return img


def dated_jpeg(path: Path, i: int = 1, **tags: object) -> Path:
    """A real JPEG whose EXIF holds `tags` (Pillow's names: DateTimeOriginal=…, DateTime=… in IFD0)."""
    exif = Image.Exif()
    details = exif.get_ifd(IFD.Exif)
    for name, value in tags.items():
        (exif if name == "DateTime" else details)[Base[name]] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    distinct_image(i).save(path, "JPEG", exif=exif, quality=90)
    return path


def distinct_folder(
    folder: Path, count: int, copies: int = 0, size: tuple[int, int] = (160, 120), start: int = 0
) -> list[Path]:
    """Images number `start`.. `start+count-1` (PNG and JPEG, in subfolders) plus `copies` byte-copies."""
    paths: list[Path] = []
    for i in range(start, start + count):
        sub = folder / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / (f"img{i:03d}.png" if i % 2 else f"img{i:03d}.jpg")
        distinct_image(i, size).save(path)
        paths.append(path)
    for j in range(copies):
        src = paths[j * 7 % count]  # a copy of an image of this folder
        dst = folder / "copies" / f"copy{j:02d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        paths.append(dst)
    return paths


def encode_png(img: Image.Image, **save: Any) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# The CLI as a user runs it


def cli_env(tmp_path: Path, model_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for `python -m embedder`: no developer settings, no network, no env file."""
    empty = tmp_path / "empty.env"
    empty.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDER_", "QDRANT_", "UPLOAD_", "MAX_"))}
    env.update(
        EMBEDDER_ENV_FILE=str(empty),
        EMBEDDER_MODEL=str(model_path),
        EMBEDDER_DEVICE="cpu",
        QDRANT_PATH=str(tmp_path / "qdrant"),
        UPLOAD_DIR=str(tmp_path / "uploads"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def server_mode(
    monkeypatch: Any, model_path: Path, tmp_path: Path, api_key: str, timeout_s: str, **extra: str
) -> Callable[[str], None]:
    """This process in server mode with `api_key`; returns the function that points QDRANT_URL at a server."""
    for name, value in {
        "EMBEDDER_MODEL": str(model_path),
        **extra,
        "QDRANT_API_KEY": api_key,
        "QDRANT_TIMEOUT": timeout_s,
        "QDRANT_PATH": str(tmp_path / "embedded"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }.items():
        monkeypatch.setenv(name, value)
    return lambda url: monkeypatch.setenv("QDRANT_URL", url)


def run_main(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """`python -m embedder ARGV` in this process: (exit code, stdout, stderr), with sys.argv as `python -m` sets it."""
    from embedder import cli

    saved, sys.argv = sys.argv, [str(Path(cli.__file__).with_name("__main__.py")), *argv]
    try:
        code = cli.main(list(argv))
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(env: dict[str, str], *argv: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedder", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


PROGRESS = re.compile(rb"([\d,]+) of ([\d,]+) files")  # `340 of 1,802 files · …`


class TerminalRun:
    """`python -m embedder ...` with stderr on a pseudo-terminal, as when a person runs it.

    On a terminal the CLI prints its progress line after every batch is stored, so the test can
    wait for real progress. `freeze()` stops the terminal's output (as Ctrl-S does): the process
    then blocks at its next progress line, so it cannot finish behind the test's back.
    """

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.master, self.slave = pty.openpty()
        attrs = termios.tcgetattr(self.slave)
        attrs[1] &= ~termios.ONLCR  # keep output bytes as written
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embedder", *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.slave,
            start_new_session=True,  # signals from the test only, never the terminal's
        )
        self.err = b""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError as exc:  # EIO: every writer has gone
            if exc.errno != errno.EIO:
                raise
            return False
        self.err += chunk
        return bool(chunk)

    def wait_progress(self, at_least: int, deadline_s: float = DEADLINE_S) -> tuple[int, int]:
        """Wait until the progress line says at least `at_least` files are done; return (done, total)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            found = [(int(d.replace(b",", b"")), int(t.replace(b",", b""))) for d, t in PROGRESS.findall(self.err)]
            if found and found[-1][0] >= at_least:
                return found[-1]
            if self.proc.poll() is not None and not self._read(0):
                raise AssertionError(f"the run ended (rc {self.proc.returncode}) before progress {at_least}: {self.text}")
            self._read(0.2)
        raise AssertionError(f"no progress to {at_least} within {deadline_s} s: {self.text}")

    def wait_for(self, condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
        """Keep reading the terminal (so the process never blocks on it) until `condition` holds."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if condition():
                return
            if self.proc.poll() is not None and not self._read(0):
                raise AssertionError(f"the run ended (rc {self.proc.returncode}) before {what}: {self.text}")
            self._read(0.2)
        raise AssertionError(f"no {what} within {deadline_s} s: {self.text}")

    def freeze(self) -> None:
        termios.tcflow(self.slave, termios.TCOOFF)

    def thaw(self) -> None:
        termios.tcflow(self.slave, termios.TCOON)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def finish(self, deadline_s: float = DEADLINE_S) -> tuple[int, str, str]:
        """Let output flow, read it all, wait for the exit: (exit code, stdout, terminal output)."""
        self.thaw()
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.read()), daemon=True)
        reader.start()
        end = time.monotonic() + deadline_s
        while self.proc.poll() is None and time.monotonic() < end:
            self._read(0.2)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"the run did not end within {deadline_s} s: {self.text}")
        while self._read(0.05):
            pass
        reader.join(deadline_s)
        self.close()
        return self.proc.returncode, (out[0] if out else b"").decode(errors="replace"), self.text

    @property
    def text(self) -> str:
        return self.err.decode(errors="replace")

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE_S)
        if self.proc.stdout:
            self.proc.stdout.close()


# --------------------------------------------------------------------------------------------
# Stub servers on 127.0.0.1


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClosingServer:
    """Accepts every connection and closes it at once, without a byte of answer.

    With `hold=True` it keeps every connection open and never answers: a hung server.
    """

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.held: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if self.hold:
                self.held.append(conn)
            else:
                conn.close()

    def __enter__(self) -> ClosingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self.held:
            conn.close()
        self.sock.close()


class RawServer:
    """Answers the first request of each connection with `response` (raw HTTP bytes), then closes.

    With `drip_s` it sends one byte every `drip_s` seconds (a slow or hostile server), for at most
    `give_up_s` seconds, then closes. `gave_up` records how long each connection lasted, seen from
    the server, until the client hung up or the server stopped.
    """

    def __init__(self, response: bytes, drip_s: float | None = None, give_up_s: float = 30.0) -> None:
        self.response = response
        self.drip_s = drip_s
        self.give_up_s = give_up_s
        self.requests: list[bytes] = []  # each connection's request head
        self.sent: list[int] = []  # bytes sent on each connection
        self.lasted: list[float] = []  # seconds each connection lasted
        self.client_hung_up: list[bool] = []
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        started = time.monotonic()
        sent, hung_up = 0, False
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.requests.append(request.partition(b"\r\n\r\n")[0])
            step = 1 if self.drip_s else len(self.response)
            while sent < len(self.response) and time.monotonic() - started < self.give_up_s:
                try:
                    conn.sendall(self.response[sent : sent + step])
                except OSError:
                    hung_up = True
                    break
                sent += step
                # Between drips, watch for the client hanging up (a read of b"" or a reset).
                if self.drip_s and select.select([conn], [], [], self.drip_s)[0]:
                    try:
                        hung_up = conn.recv(65536) == b""
                    except OSError:
                        hung_up = True
                    if hung_up:
                        break
        self.sent.append(sent)
        self.client_hung_up.append(hung_up)
        self.lasted.append(time.monotonic() - started)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


def http_response(status: str, content_type: str, body: bytes) -> bytes:
    """A whole raw HTTP/1.1 response."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def _send(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Http:
    """A ThreadingHTTPServer in a daemon thread, on `port` (0: any free one)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.httpd.stub = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._stop_lock = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        """Stop listening; returns once the port is free (also when another thread began the stop)."""
        with self._stop_lock:
            if not self._stopped:
                self.httpd.shutdown()
                self.httpd.server_close()
                self._stopped = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StatusServer(_Http):
    """Answers every request with one HTTP status, e.g. 401 for a wrong API key; records headers seen."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.headers_seen: list[dict[str, str]] = []
        super().__init__(_StatusHandler)


class _StatusHandler(_Quiet):
    def _any(self) -> None:
        stub: StatusServer = self.server.stub  # type: ignore[attr-defined]
        stub.headers_seen.append(dict(self.headers))
        self._body()
        self._send(stub.status, {"status": {"error": "Invalid api key or JWT token"}, "time": 0.0})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any


@dataclass
class FakeCollection:
    size: int
    distance: str
    metadata: dict[str, Any]
    points: dict[str, tuple[list[float], dict[str, Any]]] = field(default_factory=dict)


@dataclass
class FakeState:
    """What the fake Qdrant holds; survives the server's death, so a restored server has it all."""

    collections: dict[str, FakeCollection] = field(default_factory=dict)
    upsert_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeQdrant(_Http):
    """Enough of Qdrant's REST API for this product's store: open, check, upsert, query, scroll.

    `api_key`: requests without that `api-key` header get 401, as Qdrant answers.
    `die_after_upserts=N`: the (N+1)-th upsert is applied, then the server drops the connection
    without answering and stops listening: the worst moment for a server to disappear.
    """

    VERSION = "1.20.0"

    def __init__(
        self, api_key: str | None = None, die_after_upserts: int | None = None, state: FakeState | None = None, port: int = 0
    ) -> None:
        self.api_key = api_key
        self.die_after_upserts = die_after_upserts
        self.state = state or FakeState()
        self.died = threading.Event()
        super().__init__(_QdrantHandler, port)

    def die(self) -> None:
        self.died.set()
        threading.Thread(target=self.stop, daemon=True).start()


def _pid(value: Any) -> str:
    return str(uuid.UUID(str(value))) if not isinstance(value, int) else str(value)


def _record(pid: str, vector: list[float], payload: dict[str, Any], with_payload: Any, with_vector: Any) -> dict:
    return {
        "id": pid,
        "payload": payload if with_payload not in (False, None) else None,
        "vector": vector if with_vector else None,
    }


class _QdrantHandler(_Quiet):
    ROUTES: list[tuple[str, re.Pattern[str], str]] = [
        ("GET", re.compile(r"^/$"), "root"),
        ("GET", re.compile(r"^/collections$"), "list"),
        ("GET", re.compile(r"^/collections/([^/]+)/exists$"), "exists"),
        ("PUT", re.compile(r"^/collections/([^/]+)$"), "create"),
        ("PATCH", re.compile(r"^/collections/([^/]+)$"), "update"),
        ("GET", re.compile(r"^/collections/([^/]+)$"), "info"),
        ("PUT", re.compile(r"^/collections/([^/]+)/index$"), "index"),
        ("POST", re.compile(r"^/collections/([^/]+)/points/count$"), "count"),
        ("POST", re.compile(r"^/collections/([^/]+)/points$"), "retrieve"),
        ("PUT", re.compile(r"^/collections/([^/]+)/points$"), "upsert"),
        ("PUT", re.compile(r"^/collections/([^/]+)/points/payload$"), "overwrite"),
        ("POST", re.compile(r"^/collections/([^/]+)/points/payload$"), "merge"),
        ("PUT", re.compile(r"^/collections/([^/]+)/points/vectors$"), "vectors"),
        ("POST", re.compile(r"^/collections/([^/]+)/points/vectors/delete$"), "vectors"),
        ("POST", re.compile(r"^/collections/([^/]+)/points/delete$"), "delete"),
        ("POST", re.compile(r"^/collections/([^/]+)/points/query$"), "query"),
        ("POST", re.compile(r"^/collections/([^/]+)/points/scroll$"), "scroll"),
        ("POST", re.compile(r"^/collections/([^/]+)/facet$"), "facet"),
    ]

    @property
    def fake(self) -> FakeQdrant:
        return self.server.stub  # type: ignore[attr-defined]

    def _route(self, method: str) -> None:
        fake = self.fake
        if fake.died.is_set():
            self.close_connection = True
            return
        path = self.path.split("?", 1)[0]
        body = self._body()
        if fake.api_key is not None and self.headers.get("api-key") != fake.api_key:
            self._send(401, {"status": {"error": "Invalid api-key"}, "time": 0.0})
            return
        for verb, pattern, name in self.ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                with fake.state.lock:
                    result = getattr(self, f"_{name}")(body, *match.groups())
                if result is _DROP:
                    self.close_connection = True
                    fake.die()
                    return
                if name == "root":
                    self._send(200, result)
                elif isinstance(result, tuple):
                    self._send(result[0], {"status": {"error": result[1]}, "time": 0.0})
                else:
                    self._send(200, {"result": result, "status": "ok", "time": 0.0})
                return
        self._send(404, {"status": {"error": f"fake Qdrant has no {method} {path}"}, "time": 0.0})

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _col(self, name: str) -> FakeCollection | None:
        return self.fake.state.collections.get(name)

    def _root(self, body: dict) -> dict:
        return {"title": "qdrant - vector search engine", "version": FakeQdrant.VERSION}

    def _list(self, body: dict) -> dict:
        return {"collections": [{"name": n} for n in self.fake.state.collections]}

    def _exists(self, body: dict, name: str) -> dict:
        return {"exists": name in self.fake.state.collections}

    def _create(self, body: dict, name: str):
        if name in self.fake.state.collections:
            return (409, f"Collection `{name}` already exists!")
        vectors = body["vectors"]
        self.fake.state.collections[name] = FakeCollection(vectors["size"], vectors["distance"], body.get("metadata") or {})
        return True

    def _update(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, f"Collection `{name}` doesn't exist!")
        col.metadata.update(body.get("metadata") or {})
        return True

    def _info(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, f"Collection `{name}` doesn't exist!")
        return {
            "status": "green",
            "optimizer_status": "ok",
            "points_count": len(col.points),
            "indexed_vectors_count": 0,
            "segments_count": 1,
            "config": {
                "params": {
                    "vectors": {"size": col.size, "distance": col.distance},
                    "sparse_vectors": {"words": {"modifier": "idf"}},
                    "shard_number": 1,
                    "replication_factor": 1,
                    "write_consistency_factor": 1,
                    "on_disk_payload": True,
                },
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "metadata": col.metadata,
            },
            "payload_schema": {},
        }

    def _index(self, body: dict, name: str):
        return {"operation_id": 0, "status": "completed"}

    def _count(self, body: dict, name: str):
        col = self._col(name)
        return {"count": len(col.points)} if col else (404, "no collection")

    def _retrieve(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        ids = [_pid(i) for i in body.get("ids", [])]
        return [
            _record(i, *col.points[i], body.get("with_payload", True), body.get("with_vector"))
            for i in ids
            if i in col.points
        ]

    def _upsert(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        if "points" in body:
            rows = [(p["id"], p["vector"], p.get("payload") or {}) for p in body["points"]]
        else:
            batch = body["batch"]
            rows = list(zip(batch["ids"], batch["vectors"], batch.get("payloads") or [{}] * len(batch["ids"])))
        rows = [(pid, vector.get("", []) if isinstance(vector, dict) else vector, payload) for pid, vector, payload in rows]
        for pid, vector, payload in rows:  # a named vector: the unnamed CLIP one (sparse WORDS vectors are not kept)
            if len(vector) != col.size:
                return (400, f"Wrong input: Vector dimension error: expected dim: {col.size}, got {len(vector)}")
        for pid, vector, payload in rows:
            col.points[_pid(pid)] = (list(vector), dict(payload))
        self.fake.state.upsert_calls += 1
        if self.fake.die_after_upserts is not None and self.fake.state.upsert_calls > self.fake.die_after_upserts:
            return _DROP
        return {"operation_id": self.fake.state.upsert_calls, "status": "completed"}

    def _vectors(self, body: dict, name: str):
        """Named vectors of existing points (the sparse WORDS ones): accepted, not kept."""
        if self._col(name) is None:
            return (404, "no collection")
        return {"operation_id": 0, "status": "completed"}

    def _overwrite(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        for pid in map(_pid, body.get("points", [])):
            if pid in col.points:
                col.points[pid] = (col.points[pid][0], dict(body["payload"]))
        return {"operation_id": 0, "status": "completed"}

    def _merge(self, body: dict, name: str):
        """Set some payload keys of points, keeping the others (the store's `fill_days`)."""
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        for pid in map(_pid, body.get("points", [])):
            if pid in col.points:
                col.points[pid] = (col.points[pid][0], {**col.points[pid][1], **body["payload"]})
        return {"operation_id": 0, "status": "completed"}

    def _delete(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        for pid in map(_pid, body.get("points", [])):
            col.points.pop(pid, None)
        return {"operation_id": 0, "status": "completed"}

    def _query(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        if not col.points:
            return {"points": []}
        raw = body["query"] if "prefetch" not in body else body["prefetch"][0]["query"]  # fused: by the CLIP part alone
        query = np.asarray(raw.get("nearest", raw) if isinstance(raw, dict) else raw, dtype=np.float64)
        ids = list(col.points)
        matrix = np.asarray([col.points[i][0] for i in ids], dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = matrix @ query / np.where(norms == 0, 1.0, norms)
        order = np.argsort(-scores, kind="stable")
        offset, limit = int(body.get("offset") or 0), int(body.get("limit") or 10)
        threshold = body.get("score_threshold")
        hits = [
            {"id": ids[j], "version": 0, "score": float(scores[j]), "payload": col.points[ids[j]][1]}
            for j in order
            if threshold is None or scores[j] >= threshold
        ]
        return {"points": hits[offset : offset + limit]}

    def _scroll(self, body: dict, name: str):
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        ids = sorted(col.points)
        start = ids.index(_pid(body["offset"])) if body.get("offset") is not None else 0
        limit = int(body.get("limit") or 10)
        page = ids[start : start + limit]
        nxt = ids[start + limit] if start + limit < len(ids) else None
        return {
            "points": [_record(i, *col.points[i], body.get("with_payload", True), body.get("with_vector")) for i in page],
            "next_page_offset": nxt,
        }

    def _facet(self, body: dict, name: str):
        """Counts of each value of a keyword field (filters ignored, like the other fake reads)."""
        col = self._col(name)
        if col is None:
            return (404, "no collection")
        counts: dict[Any, int] = {}
        for _, payload in col.points.values():
            value = payload.get(body["key"])
            for item in dict.fromkeys(value if isinstance(value, list) else [value]):
                if item is not None:
                    counts[item] = counts.get(item, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[: int(body.get("limit") or 10)]
        return {"hits": [{"value": value, "count": count} for value, count in ranked]}


_DROP = object()


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 30.0, step_s: float = 0.02) -> None:
    """Poll `condition` until true; fail naming `what` after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        threading.Event().wait(step_s)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
