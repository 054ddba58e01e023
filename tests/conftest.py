"""Shared fixtures: the tiny CLIP from tests/fixtures, an embedded Qdrant in a temp folder, real images."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Tests never touch the network, never read the developer's own qdrant.env and never write into
# their data folder: the user's data and config folders are a scratch folder for the whole run.
_HOME = tempfile.mkdtemp(prefix="embedder-tests-home-")
os.environ["XDG_DATA_HOME"] = os.path.join(_HOME, "data")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["EMBEDDER_ENV_FILE"] = str(FIXTURES / "empty.env")
for _var in ("QDRANT_URL", "QDRANT_API_KEY", "QDRANT_PATH", "EMBEDDER_MODEL", "UPLOAD_DIR", "THUMB_DIR"):
    os.environ.pop(_var, None)

from embedder.config import Settings  # noqa: E402
from embedder.models.base import Encoder  # noqa: E402
from embedder.models.sentence_transformers import SentenceTransformersEncoder
from embedder.engine import Engine  # noqa: E402

# The test model: a tiny CLIP trained offline on synthetic shapes (swap it here, in one place).
TEST_MODEL = Path(os.environ.get("EMBEDDER_TEST_MODEL", FIXTURES / "tiny-clip"))


@pytest.fixture(scope="session")
def model_path() -> Path:
    return TEST_MODEL


@pytest.fixture(scope="session")
def encoder(model_path: Path) -> Encoder:
    return SentenceTransformersEncoder(str(model_path), device="cpu", batch_size=16)


@pytest.fixture
def settings(tmp_path: Path, model_path: Path) -> Settings:
    return Settings(
        model=str(model_path),
        device="cpu",
        batch_size=16,
        workers=2,
        qdrant_path=tmp_path / "qdrant",
        upload_dir=tmp_path / "uploads",
        thumb_dir=tmp_path / "thumbnails",
    )


@pytest.fixture
def engine(settings: Settings, encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An engine on a fresh embedded store, reusing the session's loaded model."""
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    eng = Engine.open(settings)
    yield eng
    eng.close()


@pytest.fixture
def reopen(settings: Settings, encoder: Encoder, monkeypatch: pytest.MonkeyPatch):
    """Open another engine on the same settings (after closing the first)."""
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)

    def _open(**changes) -> Engine:
        return Engine.open(replace(settings, **changes))

    return _open


@pytest.fixture
def memory_engine(settings: Settings, encoder: Encoder) -> Iterator[Engine]:
    """An engine on the in-memory store (the same contract as Qdrant's): for fast indexer and search tests."""
    from embedder.store.memory import MemoryStore

    eng = Engine.open(settings, encoder=encoder, store=MemoryStore(encoder.model_id, encoder.dim))
    yield eng
    eng.close()


_SHARED_READER: list = []  # the one TextReader of the run (loading one takes 1-2 s)


@pytest.fixture(autouse=True)
def shared_text_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine of the run (the CLI's too) reads the text in pictures with one TextReader, loaded
    when a test first reads text."""

    def text_reader(self: Engine):
        if not _SHARED_READER:
            from embedder.models.ocr import TextReader

            _SHARED_READER.append(TextReader("cpu", threads=2))
        self.reader = _SHARED_READER[0]
        return self.reader

    monkeypatch.setattr(Engine, "text_reader", text_reader)
