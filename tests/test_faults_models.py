"""Model and collection mismatches: refused with the fix in the message, never silently mixed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.config import Settings
from embedder.models import load_encoder
from embedder.engine import Engine
from embedder.errors import CollectionMismatchError
from embedder.store import Point, open_store
from faultkit import FakeCollection, FakeQdrant, distinct_folder


@pytest.fixture
def other_model(model_path: Path, tmp_path: Path) -> Path:
    """Another model of the same size: a copy under another name is another model id."""
    return Path(shutil.copytree(model_path, tmp_path / "other-clip"))


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, model_path: Path):
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("UPLOAD_DIR", str(settings.upload_dir))
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    return monkeypatch


def refusal(capsys, *argv: str) -> str:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 1 and out == "", (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_another_model_on_the_collection_is_refused_everywhere_and_nothing_mixes(
    engine: Engine, other_model: Path, cli_env, capsys, tmp_path: Path, reopen
) -> None:
    distinct_folder(tmp_path / "a", 5)
    engine.indexer.index([tmp_path / "a"])
    assert engine.store.count() == 5
    engine.close()
    # From here on every opener loads the model it is told to (the fixtures hand out the session's).
    cli_env.setattr("embedder.engine.load_encoder", load_encoder)
    distinct_folder(tmp_path / "b", 4, start=50)
    cli_env.setenv("EMBEDDER_MODEL", str(other_model))

    for argv in (["index", str(tmp_path / "b")], ["search", "a photo"], ["info"]):
        line = refusal(capsys, *argv)
        assert "EMBEDDER_MODEL" in line and "QDRANT_COLLECTION" in line
        assert f"model '{engine.encoder.model_id}'" in line and "EMBEDDER_MODEL is 'other-clip'" in line

    with pytest.raises(CollectionMismatchError, match="EMBEDDER_MODEL.*QDRANT_COLLECTION"):
        reopen(model=str(other_model))  # the pages' way in, too
    again = reopen()
    try:
        assert again.store.count() == 5
        assert {p["model"] for _, p, _ in again.store.scroll()} == {engine.encoder.model_id}
    finally:
        again.close()

    # The fix the message names works: another collection for the other model, side by side.
    cli_env.setenv("QDRANT_COLLECTION", "other_clip")
    assert cli.main(["index", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    cli_env.delenv("QDRANT_COLLECTION")
    cli_env.setenv("EMBEDDER_MODEL", str(engine.settings.model))
    assert cli.main(["info", "--json"]) == 0
    assert '"images": 5' in capsys.readouterr().out


def test_another_dimension_on_the_collection_is_refused_and_left_alone(
    settings: Settings, cli_env, capsys, tmp_path: Path, encoder
) -> None:
    wrong = encoder.dim + 3
    with open_store(settings, encoder.model_id, wrong) as store:
        store.upsert([Point(f"00000000-0000-0000-0000-00000000000{i}", np.eye(wrong, dtype=np.float32)[i], {"paths": []}) for i in range(2)])
    distinct_folder(tmp_path / "b", 3)
    line = refusal(capsys, "index", str(tmp_path / "b"))
    assert f"{wrong}-d" in line and f"({encoder.dim}-d)" in line
    assert "EMBEDDER_MODEL" in line and "QDRANT_COLLECTION" in line
    with open_store(settings, encoder.model_id, wrong) as store:
        assert store.count() == 2


@pytest.mark.parametrize(
    ("size", "metadata", "points", "says"),
    [
        (None, {"model": "clip-ViT-L-14", "dim": None}, 1, "clip-ViT-L-14"),
        (8, {"model": None, "dim": 8}, 1, "8-d"),
        (None, {}, 3, "unknown"),  # filled by some other tool: no record of its model, and not empty
    ],
    ids=["other-model", "other-dimension", "unrecorded-model"],
)
def test_a_server_collection_of_another_model_is_refused_and_left_alone(
    encoder, cli_env, capsys, tmp_path: Path, size, metadata, points, says
) -> None:
    size = size or encoder.dim
    metadata = {k: (v if v is not None else (encoder.model_id if k == "model" else size)) for k, v in metadata.items()}
    with FakeQdrant() as server:
        col = FakeCollection(size, "Cosine", metadata)
        col.points = {f"00000000-0000-0000-0000-00000000000{i}": ([1.0] + [0.0] * (size - 1), {"paths": ["/x"]}) for i in range(points)}
        server.state.collections["images"] = col
        cli_env.setenv("QDRANT_URL", server.url)
        distinct_folder(tmp_path / "b", 3)
        line = refusal(capsys, "index", str(tmp_path / "b"))
        assert says in line and "EMBEDDER_MODEL" in line and "QDRANT_COLLECTION" in line
        assert len(col.points) == points and col.metadata == metadata and server.state.upsert_calls == 0
