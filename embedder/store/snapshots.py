"""Server backups (QDRANT_URL): a collection snapshot made, downloaded and uploaded through Qdrant's
REST API, packed into and out of the backup archive by `backup.py`.

Plain httpx rather than qdrant-client: the client gives every request one deadline (QDRANT_TIMEOUT,
see `http.py`), but making or restoring the snapshot of a large collection takes the server minutes
before it answers, and a download is as long as the snapshot. Here QDRANT_TIMEOUT bounds connecting
and each wait for more bytes of a download; only waits for the server to finish making or
restoring a snapshot may last up to SNAPSHOT_WAIT_S. The API key goes in the `api-key` header and
is never shown.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from embedder.config import Settings
from embedder.errors import StoreError
from embedder.durable import written_whole
from embedder.store.archive import (
    SNAPSHOT_DIR, BackupResult, RestoreResult, compressed, loading_setting, model_to_set, new_manifest, write_archive,
)
from embedder.store.http import proxy_for

log = logging.getLogger(__name__)

SNAPSHOT_WAIT_S = 6 * 3600.0  # the longest the server may work on a snapshot before it answers
CHUNK = 1024 * 1024


class _Server:
    """The few snapshot calls, each failure one `StoreError` line naming the server (never the key)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.qdrant_url
        self.location = settings.storage_location
        self.timeout_s = settings.qdrant_timeout
        headers = {"api-key": settings.qdrant_api_key} if settings.qdrant_api_key else {}
        self.http = httpx.Client(
            base_url=settings.qdrant_url,
            headers=headers,
            timeout=httpx.Timeout(settings.qdrant_timeout),
            proxy=proxy_for(settings.qdrant_url),
        )

    def close(self) -> None:
        self.http.close()

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException:
            raise StoreError(
                f"Qdrant at {self.location} did not answer in time while {doing} "
                f"(QDRANT_TIMEOUT, {self.timeout_s} s, bounds each wait)."
            ) from None
        except httpx.HTTPError as exc:
            text = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise StoreError(
                f"Cannot reach the Qdrant server at {self.location} ({text}) while {doing}. Start it "
                "(docker compose up qdrant), or unset QDRANT_URL to use the embedded store."
            ) from None

    def check(self, response: httpx.Response, doing: str) -> None:
        """A non-2xx answer as one line."""
        if response.is_success:
            return
        response.read()
        if response.status_code in (401, 403):
            raise StoreError(
                f"Qdrant at {self.location} refused the API key (HTTP {response.status_code}) while {doing}. "
                "Check QDRANT_API_KEY."
            )
        if "html" in response.headers.get("content-type", "").lower():
            raise StoreError(
                f"The server at {self.location} answered with HTML (HTTP {response.status_code}), not Qdrant's API, "
                f"while {doing}: is QDRANT_URL right?"
            )
        try:
            error = response.json()["status"]["error"]
        except (ValueError, KeyError, TypeError):
            error = response.text[:200]
        raise StoreError(f"Qdrant at {self.location} failed while {doing}: HTTP {response.status_code}: {error}")

    def call(self, method: str, path: str, doing: str, wait_s: float | None = None, **kwargs: Any) -> Any:
        """A JSON call; its `result`. `wait_s`: how long the server may work before it answers."""
        timeout = httpx.Timeout(self.timeout_s, read=wait_s) if wait_s else None
        with self.errors(doing):
            response = self.http.request(method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs)
            self.check(response, doing)
            try:
                return response.json()["result"]
            except (ValueError, KeyError, TypeError):
                raise StoreError(
                    f"Qdrant at {self.location} gave an answer that is not Qdrant's while {doing}."
                ) from None

    def collection(self, name: str) -> dict[str, Any] | None:
        """The collection's model, size and exact point count; None if there is no such collection."""
        path = f"/collections/{quote(name, safe='')}"
        with self.errors(f"reading collection {name!r}"):
            response = self.http.get(path)
        if response.status_code == 404:
            return None
        self.check(response, f"reading collection {name!r}")
        try:
            config = response.json()["result"]["config"]
            vectors = config["params"]["vectors"]
            model = (config.get("metadata") or {}).get("model")
            size = vectors.get("size") if isinstance(vectors, dict) else None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(
                f"Qdrant at {self.location} described collection {name!r} in a way this app cannot read."
            ) from None
        count = self.call("POST", f"{path}/points/count", f"counting collection {name!r}", json={"exact": True})
        return {"model": model, "dim": size, "points": int(count["count"])}

    def create_snapshot(self, name: str) -> dict[str, Any]:
        path = f"/collections/{quote(name, safe='')}/snapshots"
        result = self.call("POST", path, f"making a snapshot of {name!r}", SNAPSHOT_WAIT_S, params={"wait": "true"})
        if not isinstance(result, dict) or not isinstance(result.get("name"), str) or not result["name"]:
            raise StoreError(f"Qdrant at {self.location} made a snapshot of {name!r} but did not say its name.")
        return result

    def download(self, name: str, snapshot: str, into: Path) -> tuple[int, str]:
        """Stream the snapshot into the file `into`: (bytes, SHA-256)."""
        path = f"/collections/{quote(name, safe='')}/snapshots/{quote(snapshot, safe='')}"
        doing = f"downloading snapshot {snapshot}"
        sha, size = hashlib.sha256(), 0
        with self.errors(doing), self.http.stream("GET", path) as response:
            self.check(response, doing)
            with open(into, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
        return size, sha.hexdigest()

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        """Best effort: the snapshot made for a backup, once it is downloaded (it fills the server's disk)."""
        path = f"/collections/{quote(name, safe='')}/snapshots/{quote(snapshot, safe='')}"
        try:
            self.call("DELETE", path, f"removing snapshot {snapshot} from the server", params={"wait": "true"})
        except StoreError as exc:
            log.warning("the snapshot %s stays on the server: %s", snapshot, exc)

    def upload(self, name: str, snapshot: Path, sha256: str) -> None:
        """Restore collection `name` from the snapshot file (created if missing, replaced if there)."""
        path = f"/collections/{quote(name, safe='')}/snapshots/upload"
        params = {"wait": "true", "priority": "snapshot", "checksum": sha256}
        with open(snapshot, "rb") as fh:
            self.call(
                "POST", path, f"restoring collection {name!r} from the backup", SNAPSHOT_WAIT_S,
                params=params, files={"snapshot": (snapshot.name, fh, "application/octet-stream")},
            )


def backup_server(settings: Settings, target: Path) -> BackupResult:
    """Snapshot the configured collection on the server and pack it into the archive `target`."""
    name = settings.collection
    server = _Server(settings)
    try:
        info = server.collection(name)
        if info is None:
            raise StoreError(f"Nothing to back up: Qdrant at {server.location} has no collection {name!r}.")
        if not isinstance(info["model"], str) or not isinstance(info["dim"], int):
            raise StoreError(f"Nothing to back up: collection {name!r} on {server.location} holds no images yet.")
        snapshot = server.create_snapshot(name)
        download = target.with_name(f".{target.name}.snapshot-{os.getpid()}")
        try:
            try:
                size, sha = server.download(name, snapshot["name"], download)
            finally:
                server.delete_snapshot(name, snapshot["name"])
            expected = snapshot.get("checksum")
            if (isinstance(expected, str) and expected != sha) or snapshot.get("size") not in (None, size):
                raise StoreError(
                    f"The snapshot downloaded from {server.location} is not the one the server made "
                    f"({size} bytes); run the backup again."
                )
            member = f"{SNAPSHOT_DIR}/{snapshot['name']}"
            manifest = new_manifest(
                "server", name, info["model"], info["dim"], info["points"], snapshot=snapshot["name"],
                **loading_setting(settings, info["model"]),
            )
            manifest["files"][member] = {"size": size, "sha256": sha}
            with written_whole(target) as tmp:
                write_archive(tmp, manifest, {member: download}, [SNAPSHOT_DIR], compressed(target))
        finally:
            download.unlink(missing_ok=True)
    finally:
        server.close()
    log.info("backed up %d images of %s on %s to %s", info["points"], name, server.location, target)
    return BackupResult(target, name, info["model"], info["points"], target.stat().st_size)


def restore_server(
    settings: Settings, snapshot: Path, manifest: dict[str, Any], target: str, force: bool
) -> RestoreResult:
    """Upload the (checked) snapshot file as collection `target`; one that holds images is first
    saved as a snapshot on the server, and only with `force`."""
    server = _Server(settings)
    try:
        current = server.collection(target)
        aside = None
        if current is not None and current["points"] > 0:
            if not force:
                raise StoreError(
                    f"Collection {target!r} on {server.location} holds {current['points']} images already. Add "
                    "--force to restore over it: it is first saved as a snapshot on the server, not deleted."
                )
            made = server.create_snapshot(target)
            aside = f"snapshot {made['name']} of collection {target!r} on {server.location}"
        entry = next(iter(manifest["files"].values()))
        server.upload(target, snapshot, entry["sha256"])
        restored = server.collection(target)
    finally:
        server.close()
    if restored is None:
        raise StoreError(f"Qdrant at {settings.storage_location} took the backup but shows no collection {target!r}.")
    return RestoreResult(
        target, manifest["model"], restored["points"], settings.storage_location, aside, model_to_set(manifest, settings)
    )
