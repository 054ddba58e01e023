"""`pip install .` into a fresh venv gives a working `embedder` command that finds one store from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from faultkit import ROOT

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the checkout installed; its dependencies are the ones already installed here
    (a .pth file points at them), so nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], ROOT, {}).stdout.strip())
    deps = sysconfig.get_paths()["purelib"]
    (site / "_embedder_test_deps.pth").write_text(deps + "\n")
    build = tmp_path_factory.mktemp("build")
    source = build / "source"  # a copy: building in place would leave build/ and *.egg-info in the checkout
    skipped = shutil.ignore_patterns(
        ".git", ".venv", "tests", "bench", "docs", "build", "*.egg-info", "__pycache__", ".pytest_cache"
    )

    def ignore(folder: str, names: list[str]) -> set[str]:  # the checkout's data/ (a store), not embedder/data/
        return skipped(folder, names) | ({"data"} if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, source, ignore=ignore)
    done = _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", str(source)],
        build,
        # the venv's own setuptools may predate wheels without the `wheel` package: build with ours
        {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(build), "PYTHONPATH": deps},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


def test_the_installed_command_finds_the_same_store_from_any_folder(
    installed: Path, tmp_path: Path, model_path: Path
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDER_", "QDRANT_", "UPLOAD_", "PYTHONPATH"))}
    env.update(
        XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"), HF_HUB_OFFLINE="1",
        EMBEDDER_MODEL=str(model_path), EMBEDDER_DEVICE="cpu",
    )
    version = _run([str(installed / "embedder"), "--version"], tmp_path, env)
    assert version.returncode == 0 and version.stdout.strip().startswith("embedder ")
    assert (installed / "embedder-app").exists()

    locations = []
    for folder in ("a", "b/c"):
        cwd = tmp_path / folder
        cwd.mkdir(parents=True)
        info = _run([str(installed / "embedder"), "info", "--json"], cwd, env)
        assert info.returncode == 0, info.stderr
        document = json.loads(info.stdout)
        assert document["images"] == 0 and document["settings"].startswith("none")
        locations.append(document["location"])
        imported = _run([str(installed / "python"), "-c", "import embedder, embedder_ui; print(embedder.__file__)"], cwd, env)
        assert str(installed.parent) in imported.stdout  # the installed copy, not the checkout
        vocabulary = "from embedder.indexing.tags import load_vocabulary; print(len(load_vocabulary(None)))"
        shipped = _run([str(installed / "python"), "-c", vocabulary], cwd, env)
        assert shipped.returncode == 0 and int(shipped.stdout) > 200, shipped.stderr  # the package data came along
    assert locations[0] == locations[1] == str(home / "data" / "embedder" / "qdrant")
    assert not (tmp_path / "a" / "data").exists()  # nothing was made in the working folder
