"""`eval` as a leaderboard: several models and templates (and their ensemble) on one labelled
folder, one table with P@K, R@K, mAP, MRR, images/s and query ms per model and template."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.evaluation.datasets import load_dataset
from embedder.evaluation.evaluate import evaluate_text
from embedder.evaluation.synthetic import write_dataset
from modelkit import tiny_siglip

TEMPLATES = ["{}", "a photo of {}"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("leaderboard") / "ds"
    write_dataset(root, n_per_class=1, seed=5)
    return root


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"hf:{tiny_siglip(tmp_path_factory.mktemp('random') / 'random-siglip')}"


@pytest.fixture
def eval_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_path: Path) -> Path:
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "live"))
    return tmp_path / "live"


def test_two_models_two_templates_and_their_ensemble_in_one_table(
    dataset: Path, random_model: str, model_path: Path, eval_env: Path, capsys
) -> None:
    argv = ["eval", str(dataset), "--k", "1,5", "--model", str(model_path), "--model", random_model]
    argv += [arg for t in TEMPLATES for arg in ("--template", t)] + ["--ensemble"]
    assert cli.main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["evaluations"]
    trained, random = "tiny-clip", "hf:random-siglip"
    assert [(r["model"], r["mode"], r["template"]) for r in rows] == [
        (model, mode, template)
        for model in (trained, random)
        for mode, template in [*(("text→image", t) for t in [*TEMPLATES, "ensemble of 2"]), ("image→image", None)]
    ]
    for row in rows:
        assert set(row["overall"]) == {"P@1", "P@5", "R@1", "R@5", "mAP", "MRR"}
        assert row["images_per_s"] > 0 and (row["query_ms"] is not None) == (row["mode"] == "text→image")
        assert row["query_ms"] is None or row["query_ms"] > 0
    by = {(r["model"], r["template"]): r["overall"]["mAP"] for r in rows if r["mode"] == "text→image"}
    # The trained tiny CLIP knows the classes; random weights rank by chance.
    assert min(v for (m, _), v in by.items() if m == trained) > max(v for (m, _), v in by.items() if m == random) + 0.2
    assert not eval_env.exists()  # every model was measured in a scratch store

    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    table = out.splitlines()
    header = next(line for line in table if line.startswith("model"))
    assert all(c in header for c in ("P@1", "R@5", "mAP", "MRR", "img/s", "q ms"))
    assert sum(line.startswith(trained) for line in table) == 4 and sum(line.startswith(random) for line in table) == 4
    assert "ensemble of 2" in out


def test_the_ensemble_is_the_mean_of_the_templates_vectors(dataset: Path, engine) -> None:
    data = load_dataset(dataset)
    engine.indexer.index(sorted(data.labels))
    ensemble = evaluate_text(engine, data, (1, 5), ensemble=TEMPLATES)
    one = [evaluate_text(engine, data, (1, 5), t) for t in TEMPLATES]
    assert ensemble.template == "ensemble of 2" and len(ensemble.queries) == len(one[0].queries)
    query = data.queries[0]
    vectors = engine.encoder.encode_texts([t.replace("{}", query) for t in TEMPLATES])
    mean = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))
    best = engine.store.query(mean, 1)[0]
    first = next(q for q in ensemble.queries if q.query == query)
    assert (first.precision[1] == 1.0) == (query in data.labels[best.payload["paths"][0]])


@pytest.mark.parametrize(
    ("extra", "says"),
    [(["--ensemble", "--template", "{}"], "--ensemble needs two or more --template"),
     (["--live", "--model", "x"], "leave out --model")],
)
def test_a_leaderboard_that_cannot_run_says_why_in_one_line(extra, says, dataset: Path, eval_env: Path, capsys) -> None:
    assert cli.main(["eval", str(dataset), *extra]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
