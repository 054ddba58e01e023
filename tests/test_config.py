"""Settings: environment over qdrant.env, defaults, and one clear message per bad value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedder.config import CONFIG_DIR, DATA_DIR, Settings
from embedder.errors import ConfigError


def test_defaults_are_the_embedded_store_and_the_real_model(tmp_path: Path) -> None:
    s = Settings.from_env(environ={}, env_file=tmp_path / "missing.env")
    assert s.model == "clip-ViT-B-32"
    assert s.storage_mode == "embedded"
    assert s.qdrant_path == DATA_DIR / "qdrant" and s.upload_dir == DATA_DIR / "uploads"
    assert str(DATA_DIR).startswith(os.environ["XDG_DATA_HOME"])  # the user's data folder (here a scratch one)
    assert s.env_file is None


def test_settings_files_are_looked_up_in_order_and_their_paths_are_relative_to_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = CONFIG_DIR / "qdrant.env"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text("QDRANT_PATH=library/qdrant\nQDRANT_COLLECTION=from-user-config\n")
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    try:
        monkeypatch.chdir(here)
        s = Settings.from_env(environ={})
        assert (s.env_file, s.collection) == (user, "from-user-config")
        assert s.qdrant_path == CONFIG_DIR / "library" / "qdrant"  # beside the file, not the working folder
        monkeypatch.chdir(there)
        assert Settings.from_env(environ={}).qdrant_path == s.qdrant_path  # the same store from anywhere

        (there / "qdrant.env").write_text("QDRANT_PATH=data/qdrant\nIMAGE_DIRS=photos:/abs\n")
        s = Settings.from_env(environ={})  # ./qdrant.env comes before the user's
        assert s.env_file == there / "qdrant.env" and s.collection == "images"
        assert s.qdrant_path == there / "data" / "qdrant" and s.image_dirs == (there / "photos", Path("/abs"))
        assert Settings.from_env(environ={"QDRANT_PATH": "rel"}).qdrant_path == Path("rel")  # the shell's: as given

        named = tmp_path / "elsewhere.env"
        named.write_text("QDRANT_COLLECTION=named\n")
        assert Settings.from_env(environ={"EMBEDDER_ENV_FILE": str(named)}).collection == "named"
        with pytest.raises(ConfigError, match="EMBEDDER_ENV_FILE"):
            Settings.from_env(environ={"EMBEDDER_ENV_FILE": str(tmp_path / "missing.env")})
    finally:
        user.unlink()


def test_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "qdrant.env"
    env_file.write_text("EMBEDDER_MODEL=from-file\nQDRANT_COLLECTION=photos\nEMBEDDER_BATCH_SIZE=8\n")
    s = Settings.from_env(environ={"EMBEDDER_MODEL": "from-env"}, env_file=env_file)
    assert (s.model, s.collection, s.batch_size) == ("from-env", "photos", 8)


def test_server_mode_when_url_is_set() -> None:
    s = Settings.from_env(environ={"QDRANT_URL": "http://localhost:6333/", "QDRANT_API_KEY": "s3cret-key"}, env_file="/none")
    assert s.storage_mode == "server"
    assert s.storage_location == "http://localhost:6333"
    assert "s3cret-key" not in repr(s)
    assert "QDRANT_API_KEY" not in s.env()


def test_empty_values_fall_back_to_defaults() -> None:
    s = Settings.from_env(environ={"QDRANT_URL": "", "EMBEDDER_BATCH_SIZE": ""}, env_file="/none")
    assert s.qdrant_url is None and s.batch_size == 0


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EMBEDDER_BATCH_SIZE", "lots"),
        ("EMBEDDER_BATCH_SIZE", "-4"),
        ("EMBEDDER_DEVICE", "tpu"),
        ("QDRANT_URL", "localhost:6333"),
        ("QDRANT_COLLECTION", "my photos"),
        ("MAX_IMAGE_PIXELS", "0"),
        ("QDRANT_SHARD_NUMBER", "x"),
        ("DUPLICATE_THRESHOLD", "high"),
        ("DUPLICATE_THRESHOLD", "1.5"),
        ("DUPLICATE_THRESHOLD", "0"),
    ],
)
def test_invalid_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env(environ={var: value}, env_file="/none")


def test_image_dirs_is_a_path_list() -> None:
    s = Settings.from_env(environ={"IMAGE_DIRS": "/a:/b/c"}, env_file="/none")
    assert s.image_dirs == (Path("/a"), Path("/b/c"))


def test_duplicate_threshold_is_a_cosine() -> None:
    assert Settings.from_env(environ={}, env_file="/none").duplicate_threshold == 0.95
    assert Settings.from_env(environ={"DUPLICATE_THRESHOLD": " 0.994"}, env_file="/none").duplicate_threshold == 0.994


def test_every_setting_is_declared_once_and_documented_in_the_readme() -> None:
    """One table (the Settings fields) drives the variables, parsers and help; the README lists them all."""
    from dataclasses import fields

    from embedder.config import ENV_NAMES, HELP, setting_fields

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for f in setting_fields():
        var = f.metadata["var"]
        assert ENV_NAMES[f.name] == var and HELP[var] and callable(f.metadata["parse"])
        assert f"| `{var}` |" in readme, f"README's settings table misses {var}"
    assert len(set(ENV_NAMES.values())) == len(setting_fields()) == len(fields(Settings)) - 1  # env_file
