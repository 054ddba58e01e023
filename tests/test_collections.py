"""Switching safely: which collections exist (with their model and size), and `embedder use` pointing
the settings file at one of them and back; nothing deleted, no model loaded, the store's lock not needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from faultkit import run_main as run

from embedder.config import Settings
from embedder.errors import ConfigError
from embedder.store.settings_file import update_settings_file
from embedder.store import FolderLock, Point, open_store
from embedder.store.catalog import list_collections
from embedder.store.switching import switch_collection


def fill(settings: Settings, collection: str, model: str, images: int, dim: int = 8) -> None:
    """A collection made by `model` holding `images` points (closed cleanly: its count recorded)."""
    from dataclasses import replace

    store = open_store(replace(settings, collection=collection), model, dim)
    rng = np.random.default_rng(images)
    vectors = rng.normal(size=(images, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert([Point(f"00000000-0000-0000-0000-{i:012d}", v, {"paths": [f"/p/{i}.jpg"]}) for i, v in enumerate(vectors)])
    store.close()


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A settings file (with a comment) pointing at `images` (3 images, model `base`, a hub-style
    name) beside `family` (2 images, made by the model folder `models/family`)."""
    (tmp_path / "models" / "family").mkdir(parents=True)
    env_file = tmp_path / "qdrant.env"
    env_file.write_text("# my settings\nQDRANT_PATH=store\nEMBEDDER_MODEL=org/base  # the usual one\nTAGS=true\n")
    monkeypatch.setenv("EMBEDDER_ENV_FILE", str(env_file))
    for var in ("QDRANT_PATH", "QDRANT_COLLECTION", "EMBEDDER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings.from_env()
    fill(settings, "images", "org/base", 3)
    fill(settings, "family", "family", 2)
    return env_file


def test_collections_are_listed_with_their_model_and_size_while_the_store_is_in_use(library: Path, capsys) -> None:
    settings = Settings.from_env()
    held = FolderLock(settings.qdrant_path)  # the app has the store open
    try:
        found = {c.name: c for c in list_collections(settings)}
        assert {n: (c.model, c.dim, c.images, c.current) for n, c in found.items()} == {
            "family": ("family", 8, 2, False), "images": ("org/base", 8, 3, True),
        }
        code, out, err = run(capsys, "collections", "--json")
        assert code == 0, err
        assert [(c["name"], c["images"], c["current"]) for c in json.loads(out)] == [("family", 2, False), ("images", 3, True)]
        code, out, _ = run(capsys, "collections")
        assert out.splitlines()[2].startswith("* images") and "org/base (8-d)" in out
    finally:
        held.release()


def test_use_switches_to_a_tuned_collection_and_back_keeping_the_rest_of_the_file(library: Path, capsys) -> None:
    folder = library.parent / "models" / "family"
    code, out, err = run(capsys, "use", "family", "--model", str(folder))
    assert code == 0, err
    assert "now using collection family (2 images)" in out and "embedder use images" in out
    text = library.read_text()
    assert text.startswith("# my settings\nQDRANT_PATH=store\n") and "TAGS=true" in text
    settings = Settings.from_env()
    assert (settings.collection, settings.model) == ("family", str(folder.resolve()))

    code, out, err = run(capsys, "use", "images")  # back: the model it was used with, remembered
    assert code == 0, err
    settings = Settings.from_env()
    assert (settings.collection, settings.model) == ("images", "org/base")
    code, out, err = run(capsys, "use", "family")  # and forth again, without naming the folder
    assert code == 0 and Settings.from_env().model == str(folder.resolve())
    assert sorted(c.name for c in list_collections(Settings.from_env())) == ["family", "images"]  # nothing deleted


@pytest.mark.parametrize(
    ("argv", "says"),
    [(["use", "images", "--model", "org/other"], "holds vectors made by model 'org/base', not 'org/other'"),
     (["use", "family"], "a model folder this machine has not used it with: name the folder"),
     (["use", "nothing-here"], "There is no collection 'nothing-here' with images yet"),
     (["use", "bad/name"], "must be a short name")],
)
def test_a_switch_that_cannot_be_made_is_one_line_and_changes_nothing(library: Path, argv, says, capsys) -> None:
    before = library.read_text()
    if argv[1] == "bad/name":
        with pytest.raises(SystemExit):  # argparse: a usage line and the reason
            run(capsys, *argv)
        assert says in capsys.readouterr().err
    else:
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, "") and says in err and err.count("\n") == 1, err
    assert library.read_text() == before


def test_a_new_collection_for_a_tuned_model_and_a_variable_the_environment_sets(
    library: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("QDRANT_COLLECTION", "images")
    folder = library.parent / "models" / "family"
    done = switch_collection(Settings.from_env(), "fresh", model=str(folder))
    assert done.images == 0 and not done.exists and done.overridden == ("QDRANT_COLLECTION",)
    code, _, err = run(capsys, "use", "images")  # what the environment says already: nothing to warn about
    assert code == 0 and "is set in the environment" not in err
    code, _, err = run(capsys, "use", "family", "--model", str(folder))
    assert code == 0 and "warning: QDRANT_COLLECTION is set in the environment, which wins" in err


def test_the_settings_file_keeps_what_it_does_not_change(tmp_path: Path) -> None:
    path = tmp_path / "qdrant.env"
    path.write_text("# note\nexport QDRANT_COLLECTION=old\nQDRANT_COLLECTION=older\n\nOTHER='x y'\n")
    update_settings_file(path, {"QDRANT_COLLECTION": "new", "EMBEDDER_MODEL": "/models/with space", "TAGS": None})
    assert path.read_text() == "# note\nQDRANT_COLLECTION=new\n\nOTHER='x y'\nEMBEDDER_MODEL='/models/with space'\n"
    with pytest.raises(ConfigError, match="cannot be written into a settings file"):
        update_settings_file(path, {"EMBEDDER_MODEL": "it's ${HOME}"})
    assert "with space" in path.read_text()
