"""Metrics against hand-computed values, and the eval command on both dataset layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedder import cli
from embedder.evaluation.datasets import load_dataset
from embedder.evaluation.metrics import score_ranking


def test_metrics_match_hand_computed_values() -> None:
    # Relevant at ranks 1 and 3, 3 relevant in all (one never retrieved).
    s = score_ranking("q", [True, False, True, False], relevant=3, ks=(1, 2, 4))
    assert s.precision == {1: 1.0, 2: 0.5, 4: 0.5}
    assert s.recall == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3), 4: pytest.approx(2 / 3)}
    assert s.average_precision == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert s.reciprocal_rank == 1.0
    late = score_ranking("q", [False, False, True], relevant=1, ks=(1, 5))
    assert late.reciprocal_rank == pytest.approx(1 / 3)
    assert late.precision[5] == pytest.approx(1 / 5) and late.recall[5] == 1.0
    none = score_ranking("q", [False, False], relevant=2, ks=(1,))
    assert (none.average_precision, none.reciprocal_rank, none.precision[1]) == (0.0, 0.0, 0.0)


def test_both_dataset_layouts_give_the_same_labels(tmp_path: Path) -> None:
    from imagefiles import solid

    solid(tmp_path / "ds" / "red thing" / "1.png", "red")
    solid(tmp_path / "ds" / "blue thing" / "2.png", "blue")
    (tmp_path / "ds" / "captions.csv").write_text("path,caption\nred thing/1.png,red thing\nblue thing/2.png,blue thing|sky\n")
    folders = load_dataset(tmp_path / "ds")
    table = load_dataset(tmp_path / "ds" / "captions.csv")
    assert folders.queries == ["blue thing", "red thing"]
    assert table.queries == ["blue thing", "red thing", "sky"]
    assert folders.labels[str(tmp_path / "ds" / "red thing" / "1.png")] == {"red thing"}


def test_bad_dataset_is_one_clear_error(tmp_path: Path, monkeypatch, model_path: Path, capsys) -> None:
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    (tmp_path / "bad.csv").write_text("file,text\nx.jpg,hello\n")
    assert cli.main(["eval", str(tmp_path / "bad.csv")]) == 1
    assert "needs the columns path,caption" in capsys.readouterr().err


def test_eval_leaves_the_live_store_alone(tmp_path: Path, monkeypatch, model_path: Path, capsys) -> None:
    from embedder.evaluation.synthetic import write_dataset

    write_dataset(tmp_path / "ds", n_per_class=1, seed=3)
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "live"))
    assert cli.main(["eval", str(tmp_path / "ds"), "--k", "1,5", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [e["mode"] for e in document["evaluations"]] == ["text→image", "image→image"]
    assert document["images"] == 30 and document["evaluations"][0]["queries"] == 30
    assert set(document["evaluations"][0]["overall"]) == {"P@1", "P@5", "R@1", "R@5", "mAP", "MRR"}
    assert not (tmp_path / "live").exists()
