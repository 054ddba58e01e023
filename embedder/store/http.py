"""The HTTP connection to a Qdrant server: a deadline for each whole request, and replies checked
to be Qdrant's.

httpx (under qdrant-client) applies its timeouts to each socket read and write, so a server that
sends one byte a second never times out. `DeadlineTransport` gives every request one deadline,
QDRANT_TIMEOUT after it starts, which every later connect, read and write of that request must
meet: the socket's own timeout is cut to the time left, so a request ends when its time is up and
no thread is left behind.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import urllib.request
import warnings
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from qdrant_client import QdrantClient

log = logging.getLogger(__name__)

INSECURE_KEY_WARNING = "Api key is used with an insecure connection"  # qdrant-client's words
_warned_plain_http: set[str] = set()


class NotQdrantAnswer(Exception):
    """A reply no Qdrant sends: an HTML page (a reverse proxy's error page, another web app)."""

    def __init__(self, status: int, content_type: str) -> None:
        super().__init__(f"HTTP {status}, {content_type}")
        self.status = status


class _Deadline(threading.local):
    """When the request in flight on this thread must be over (`time.monotonic()` seconds)."""

    at: float | None = None

    def cut(self, timeout: float | None, error: type[Exception]) -> float | None:
        """`timeout`, shortened to the time left; `error` once none is left."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("timed out")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
        timeout = self._deadline.cut(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with every stream it opens bound to the thread's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend, deadline: _Deadline) -> None:
        self._backend = backend
        self._deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address=None, socket_options=None):
        timeout = self._deadline.cut(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        timeout = self._deadline.cut(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport, but each request (answer body included) must end within `total_s`.

    Replies with an HTML content type raise `NotQdrantAnswer` instead of reaching a JSON parser.
    """

    def __init__(self, total_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total_s = total_s
        self._deadline = _Deadline()
        # httpx offers no total timeout (encode/httpx#1450) and no public way to give httpcore's
        # pool a network backend, so the pool's own is wrapped; every connect, read and write
        # goes through it. The drip test in tests/test_faults_r2_storage.py fails if this stops working.
        pool = self._pool
        pool._network_backend = _DeadlineBackend(pool._network_backend, self._deadline)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The client reads the body after this returns, on this thread: the deadline covers it too.
        self._deadline.at = time.monotonic() + self.total_s
        response = super().handle_request(request)
        content_type = response.headers.get("content-type", "")
        if "html" in content_type.lower():
            response.close()
            raise NotQdrantAnswer(response.status_code, content_type)
        return response


def is_loopback(host: str | None) -> bool:
    """The host is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def proxy_for(url: str) -> str | None:
    """The proxy the environment sets for `url` (httpx's own choice when it builds the transport)."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def server_client(url: str, location: str, api_key: str | None, timeout_s: int) -> QdrantClient:
    """A qdrant-client for `url` whose every request ends within `timeout_s` (QDRANT_TIMEOUT).

    qdrant-client's "Api key is used with an insecure connection" warning (three lines with its
    source, on every run) becomes one logged line, once per server and process, and only where
    the key leaves this machine. Its background version check, which warns the same way at a random
    moment, is off: `check_version` does it in line.
    """
    host = urlsplit(url).hostname
    # qdrant-client's choice for a server on this machine: no keep-alive (it can add delays there).
    limits = httpx.Limits(max_keepalive_connections=0) if is_loopback(host) else httpx.Limits()
    transport = DeadlineTransport(timeout_s, limits=limits, proxy=proxy_for(url))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=INSECURE_KEY_WARNING, category=UserWarning)
        client = QdrantClient(
            url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False, transport=transport
        )
    if api_key and url.startswith("http://") and not is_loopback(host) and location not in _warned_plain_http:
        _warned_plain_http.add(location)
        log.warning(
            "QDRANT_API_KEY is sent to %s over plain http, readable on the way; use https:// "
            "unless the network between here and the server is private",
            location,
        )
    return client


def check_version(client: QdrantClient, location: str) -> None:
    """Log one line when the server's version is too far from this qdrant-client's."""
    from importlib.metadata import version

    from qdrant_client.common.version_check import is_compatible

    server_version = client.info().version
    client_version = version("qdrant-client")
    if not is_compatible(client_version, server_version):
        log.warning(
            "Qdrant at %s is version %s, too far from this app's qdrant-client %s (same major version "
            "and at most one minor version apart are supported)",
            location,
            server_version,
            client_version,
        )
