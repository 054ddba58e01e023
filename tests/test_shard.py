"""Scaling out: `--shard I/N` workers split the files by content hash, and a server collection gets
the cluster's shard and replication settings.

The sharded runs are real: the indexer decodes and encodes real image files with the test model
into embedded Qdrant stores. The cluster's collection creation runs `QdrantStore.server` on a
recording stand-in for `QdrantClient`, with the settings the cluster compose file gives the app.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedder import cli
from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.indexing.indexer import Indexer, IndexReport, shard_of
from embedder.store import KEYWORD_FIELDS, NUMBER_FIELDS, PAYLOAD_INDEXES, QdrantStore, open_store
from embedder.store.policy import POLICY
from embedder.store.schema import TEXT_FIELDS
from faultkit import distinct_folder
from test_deploy import CLUSTER, SINGLE, app_settings

# --------------------------------------------------------------------------------------------
# shard_of: a partition of any set of digests


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_shard_of_splits_digests_into_disjoint_complete_stable_parts(n: int) -> None:
    rng = random.Random(n)
    digests = [hashlib.sha256(rng.randbytes(32)).hexdigest() for _ in range(700)]
    parts = [{d for d in digests if shard_of(d, n) == i} for i in range(n)]
    assert set().union(*parts) == set(digests), "every file belongs to some worker"
    assert sum(len(p) for p in parts) == len(digests), "and to one only"
    assert all(shard_of(d, n) == shard_of(d, n) for d in digests), "the same answer on every machine"
    # Content hashes are uniform, so the work is shared evenly.
    for part in parts:
        assert abs(len(part) - len(digests) / n) < 0.25 * len(digests) / n + 10


@pytest.mark.parametrize(("text", "expected"), [("0/1", (0, 1)), ("2/3", (2, 3)), ("9/10", (9, 10))])
def test_shard_argument_is_i_of_n(text: str, expected: tuple[int, int]) -> None:
    assert cli.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", "1/2/3"])
def test_shard_argument_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--shard"):
        cli.parse_shard(text)


# --------------------------------------------------------------------------------------------
# Sharded indexing over real files


SHARDS = 3


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """14 distinct images in subfolders, 2 byte-copies, a damaged JPEG and a text file named .png."""
    root = tmp_path / "photos"
    distinct_folder(root, 14, copies=2, size=(64, 48))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.png").write_text("just text")
    return root


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def contents(store) -> dict[str, tuple[frozenset[str], np.ndarray]]:
    """Point id -> (its paths, its vector)."""
    return {pid: (frozenset(payload["paths"]), vector) for pid, payload, vector in store.scroll(with_vectors=True)}


def run(encoder: Encoder, settings: Settings, folder: Path, shard: tuple[int, int] | None) -> tuple[IndexReport, dict]:
    with open_store(settings, encoder.model_id, encoder.dim) as store:
        report = Indexer(encoder, store, settings.max_image_pixels, settings.workers, shard=shard).index([folder])
        return report, contents(store)


@pytest.mark.slow
def test_sharded_runs_add_up_to_one_unsharded_run(
    encoder: Encoder, settings: Settings, photos: Path, tmp_path: Path
) -> None:
    whole, whole_points = run(encoder, replace(settings, qdrant_path=tmp_path / "whole"), photos, None)
    assert len(whole.added) == 14 and len(whole.copies) == 2 and len(whole.failed) == 2 and len(whole_points) == 14

    parts = [
        run(encoder, replace(settings, qdrant_path=tmp_path / f"shard{i}"), photos, (i, SHARDS)) for i in range(SHARDS)
    ]

    # Points: disjoint between workers, together exactly the unsharded run's, same paths, same vectors.
    ids = [set(points) for _, points in parts]
    for i in range(SHARDS):
        for j in range(i + 1, SHARDS):
            assert not ids[i] & ids[j], f"workers {i} and {j} both indexed {ids[i] & ids[j]}"
    assert set().union(*ids) == set(whole_points)
    for _, points in parts:
        for pid, (paths, vector) in points.items():
            assert paths == whole_points[pid][0], "copies of one image stay with one worker, as one point"
            np.testing.assert_allclose(vector, whole_points[pid][1], atol=1e-5)
    assert all(ids), "with 14 images every one of 3 workers gets some"

    # Reports: every file accounted for once: added, or failed by the one worker that owns it.
    added = [p for report, _ in parts for p in report.added + report.copies]
    failed = [f.path for report, _ in parts for f in report.failed]
    assert sorted(added) == sorted(whole.added + whole.copies) and len(added) == len(set(added))
    assert sorted(failed) == sorted(f.path for f in whole.failed) and len(failed) == len(set(failed))
    for i, (report, _) in enumerate(parts):
        owned = report.added + report.copies + [f.path for f in report.failed]
        assert all(shard_of(digest(p), SHARDS) == i for p in owned), f"worker {i} took a file of another"


@pytest.mark.slow
def test_workers_on_one_shared_collection_through_the_cli(
    photos: Path, tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """As on the cluster: N `python -m embedder index --shard I/N` runs into one collection."""
    for key, value in {
        "EMBEDDER_MODEL": str(model_path),
        "EMBEDDER_DEVICE": "cpu",
        "QDRANT_PATH": str(tmp_path / "shared"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }.items():
        monkeypatch.setenv(key, value)

    def index(*argv: str) -> dict[str, Any]:
        assert cli.main(["index", str(photos), "--json", *argv]) == 0
        return json.loads(capsys.readouterr().out)

    reports = [index("--shard", f"{i}/{SHARDS}") for i in range(SHARDS)]
    added = [p for r in reports for p in r["added"] + r["copies"]]
    assert len(added) == len(set(added)) == 16, "every image file indexed, by one worker"
    assert all(not r["unchanged"] for r in reports), "a worker never even looks at another's files"

    # Running a worker again finds all of its own files done, and only those.
    again = index("--shard", f"1/{SHARDS}")
    assert again["added"] == [] and sorted(again["unchanged"]) == sorted(reports[1]["added"] + reports[1]["copies"])

    # An unsharded run afterwards finds nothing left to do.
    final = index()
    assert final["added"] == [] and len(final["unchanged"]) == 16
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 14


# --------------------------------------------------------------------------------------------
# Collection creation on a server: the cluster's settings reach Qdrant


class RecordingClient:
    """Stands in for `qdrant_client.QdrantClient` in embedder.store.http and records every call."""

    existing: dict[str, dict[str, Any]] = {}
    instances: list[RecordingClient] = []
    create_error: Exception | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[str, tuple, dict]] = []
        self.collections = dict(self.existing)
        RecordingClient.instances.append(self)

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def info(self) -> SimpleNamespace:  # the server's version, checked once after the first request
        from importlib.metadata import version

        return SimpleNamespace(version=version("qdrant-client"))

    def get_collections(self) -> SimpleNamespace:
        self._record("get_collections")
        return SimpleNamespace(collections=[SimpleNamespace(name=n) for n in self.collections])

    def collection_exists(self, name: str) -> bool:
        self._record("collection_exists", name)
        return name in self.collections

    def create_collection(self, name: str, **kwargs: Any) -> bool:
        self._record("create_collection", name, **kwargs)
        self.collections[name] = {
            "size": kwargs["vectors_config"].size, "metadata": kwargs.get("metadata"),
            "sparse": kwargs.get("sparse_vectors_config") or {},
        }
        if self.create_error:  # another worker created the same collection a moment earlier
            raise self.create_error
        return True

    def create_payload_index(self, collection: str, field_name: str, schema: Any) -> None:
        self._record("create_payload_index", collection, field_name, schema)

    def get_collection(self, name: str) -> SimpleNamespace:
        self._record("get_collection", name)
        info = self.collections[name]
        vectors = SimpleNamespace(size=info["size"], distance=models.Distance.COSINE)
        return SimpleNamespace(
            config=SimpleNamespace(
                params=SimpleNamespace(vectors=vectors, sparse_vectors=info.get("sparse", {})), metadata=info["metadata"]
            ),
            payload_schema=dict.fromkeys(info.get("indexed", PAYLOAD_INDEXES), "indexed"),
        )

    def count(self, name: str, exact: bool = True) -> SimpleNamespace:
        self._record("count", name)
        return SimpleNamespace(count=0)

    def update_collection(self, name: str, **kwargs: Any) -> None:
        self._record("update_collection", name, **kwargs)

    def close(self) -> None:
        self._record("close")

    def named(self, name: str) -> list[tuple[tuple, dict]]:
        return [(args, kwargs) for call, args, kwargs in self.calls if call == name]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[RecordingClient]:
    monkeypatch.setattr(RecordingClient, "existing", {})
    monkeypatch.setattr(RecordingClient, "instances", [])
    monkeypatch.setattr(RecordingClient, "create_error", None)
    monkeypatch.setattr("embedder.store.http.QdrantClient", RecordingClient)  # a server
    monkeypatch.setattr("embedder.store.server.QdrantClient", RecordingClient)  # local mode
    return RecordingClient


def test_the_cluster_app_creates_its_collection_sharded_and_replicated(recorder) -> None:
    settings = app_settings(CLUSTER, {"QDRANT_API_KEY": "cluster-key"})
    store = QdrantStore.server(settings, "clip-ViT-B-32", 512)
    store.close()

    (client,) = recorder.instances
    connection = {k: client.kwargs[k] for k in ("url", "api_key", "timeout")}
    assert connection == {"url": "http://qdrant-1:6333", "api_key": "cluster-key", "timeout": settings.qdrant_timeout}
    ((args, kwargs),) = client.named("create_collection")
    assert args == ("images",)
    assert (kwargs["shard_number"], kwargs["replication_factor"], kwargs["write_consistency_factor"]) == (6, 2, 1)
    # the search policy's collection (embedder/store/policy.py): originals on disk, HNSW, int8 in RAM
    assert kwargs["vectors_config"] == models.VectorParams(size=512, distance=models.Distance.COSINE, on_disk=True)
    assert (kwargs["hnsw_config"].m, kwargs["hnsw_config"].ef_construct) == (POLICY.m, POLICY.ef_construct)
    assert kwargs["optimizers_config"].indexing_threshold == POLICY.indexing_threshold_kb(512)
    assert kwargs["quantization_config"].scalar.type == models.ScalarType.INT8
    assert kwargs["metadata"] == {"model": "clip-ViT-B-32", "dim": 512}
    # Filters run inside Qdrant, so a server gets an index on every field they use.
    indexes = {args[1]: args[2] for args, _ in client.named("create_payload_index")}
    assert indexes == {
        **{name: models.PayloadSchemaType.KEYWORD for name in KEYWORD_FIELDS},
        **{name: models.PayloadSchemaType.FLOAT for name in NUMBER_FIELDS},
        # the date filter's day: a range index whose values order the points of each segment
        "day": models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=False, range=True, is_principal=True),
        # the words of pictures, names and tags: full-text indexes for the exact-match conditions
        **dict.fromkeys(TEXT_FIELDS, models.TextIndexParams(
            type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WHITESPACE, lowercase=True,
        )),
    }
    assert all(args[0] == "images" for args, _ in client.named("create_payload_index"))


def test_compose_overrides_of_the_cluster_settings_reach_qdrant(recorder) -> None:
    environ = {"QDRANT_SHARD_NUMBER": "12", "QDRANT_REPLICATION_FACTOR": "3", "QDRANT_WRITE_CONSISTENCY_FACTOR": "2"}
    QdrantStore.server(app_settings(CLUSTER, environ), "m", 16).close()
    ((_, kwargs),) = recorder.instances[0].named("create_collection")
    assert (kwargs["shard_number"], kwargs["replication_factor"], kwargs["write_consistency_factor"]) == (12, 3, 2)


def test_the_single_server_creates_one_shard(recorder) -> None:
    QdrantStore.server(app_settings(SINGLE), "m", 16).close()
    (client,) = recorder.instances
    assert client.kwargs["url"] == "http://qdrant:6333" and client.kwargs["api_key"] is None
    ((_, kwargs),) = client.named("create_collection")
    assert (kwargs["shard_number"], kwargs["replication_factor"], kwargs["write_consistency_factor"]) == (1, 1, 1)


def test_a_second_worker_reuses_the_collection_without_recreating_it(recorder) -> None:
    recorder.existing = {"images": {"size": 512, "metadata": {"model": "clip-ViT-B-32", "dim": 512}}}
    QdrantStore.server(app_settings(CLUSTER), "clip-ViT-B-32", 512).close()
    (client,) = recorder.instances
    assert client.named("create_collection") == [] and client.named("create_payload_index") == []
    assert client.named("get_collection"), "it checked the model instead"


def test_a_collection_made_before_a_new_payload_field_gets_its_index_on_open(recorder) -> None:
    older = [name for name in PAYLOAD_INDEXES if name != "tags"]
    recorder.existing = {"images": {"size": 512, "metadata": {"model": "m", "dim": 512}, "indexed": older}}
    QdrantStore.server(app_settings(CLUSTER), "m", 512).close()
    indexes = [(args[1], args[2]) for args, _ in recorder.instances[0].named("create_payload_index")]
    assert indexes == [("tags", models.PayloadSchemaType.KEYWORD)]


def test_the_embedded_store_never_gets_cluster_settings(recorder, settings: Settings) -> None:
    clustered = replace(settings, shard_number=6, replication_factor=2, write_consistency_factor=2)
    QdrantStore.embedded(clustered, "m", 16).close()
    ((_, kwargs),) = recorder.instances[0].named("create_collection")
    assert not {"shard_number", "replication_factor", "write_consistency_factor"} & set(kwargs)
    assert recorder.instances[0].named("create_payload_index") == []


def test_workers_racing_to_create_the_collection_all_succeed(recorder) -> None:
    # Worker A saw no collection, but worker B created it before A's create_collection arrived.
    recorder.create_error = UnexpectedResponse(
        409, "Conflict", b'{"status":{"error":"Collection `images` already exists!"}}', {}
    )
    QdrantStore.server(app_settings(CLUSTER), "clip-ViT-B-32", 512).close()
