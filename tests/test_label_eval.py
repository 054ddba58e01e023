"""`embedder label` (a draft label CSV from what the index knows) and `eval --split / --plot` with
paraphrase robustness, on the tiny CLIP, a real embedded store and real image files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from faultkit import run_main as run

from embedder.engine import Engine
from embedder.evaluation import synthetic
from embedder.evaluation.datasets import load_dataset
from embedder.errors import DatasetError
from embedder.evaluation.datasets import labels_csv
from embedder.evaluation.labels import Edited, draft_captions, edited_rows, name_caption
from embedder.store import SearchFilter

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings, encoder) -> None:
    monkeypatch.setenv("EMBEDDER_MODEL", settings.model)
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("UPLOAD_DIR", str(settings.upload_dir))
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)


def test_file_names_give_words_and_camera_names_none() -> None:
    assert name_caption("/x/Rex_at-the.beach 03.jpg") == "Rex at the beach"
    assert name_caption("/x/IMG_20240101_123456.JPG") == "" and name_caption("/x/DSC01234.jpg") == ""
    assert name_caption("/x/Zürich—Hauptbahnhof.heic") == "Zürich Hauptbahnhof"
    payload = {"tags": ["dog", "beach", "sea", "sky"], "text": "  OPEN   24 hours a day every day of the week please "}
    assert draft_captions("/x/dog-beach.jpg", payload) == ("dog, beach, sea", "OPEN 24 hours a day every day of", "dog beach")
    assert draft_captions("/x/Dog,  Beach.jpg", {"tags": ["dog", "beach"]}) == ("dog, beach",)  # said once


def test_label_drafts_captions_from_tags_text_and_names(tmp_path: Path, settings, encoder, cli_env, capsys) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    samples = list(synthetic.generate(3, seed=4, image_size=64))
    names = ["rex-at-the-beach.jpg", "IMG_0001.jpg", "sign.jpg"]
    for sample, name in zip(samples, names):
        sample.image.save(folder / name, quality=90)
    engine = Engine.open(settings, encoder=encoder)
    try:
        engine.indexer.index([folder / "rex-at-the-beach.jpg", folder / "sign.jpg"])  # IMG_0001 not indexed
        [(pid, payload, _)] = engine.store.scroll(where=SearchFilter(paths=(str(folder / "sign.jpg"),)))
        engine.store.set_payload(pid, {**payload, "text": "OPEN 24 HOURS", "tags": ["shop", "night"]})
    finally:
        engine.close()
    out_csv = tmp_path / "labels.csv"
    code, out, err = run(capsys, "label", str(folder), "--out", str(out_csv))
    assert code == 0, err
    assert "3 pictures" in out and "1 of them are not in the index" in err and "1 pictures have no caption" in err
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_path: dict[str, list[str]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row["caption"])
    assert by_path["pictures/sign.jpg"] == ["shop, night", "OPEN 24 HOURS", "sign"]
    assert by_path["pictures/IMG_0001.jpg"] == [""] and "rex at the beach" in by_path["pictures/rex-at-the-beach.jpg"]
    assert len(by_path["pictures/rex-at-the-beach.jpg"]) == 2  # its tags, then its name
    assert set(load_dataset(out_csv).labels) == {str(folder / n) for n in names}  # what eval reads

    before = out_csv.read_bytes()
    code, out, err = run(capsys, "label", str(folder), "--out", str(out_csv))
    assert (code, out) == (1, "") and "exists already" in err and "--force" in err and out_csv.read_bytes() == before
    code, _, err = run(capsys, "label", str(folder), "--out", str(out_csv), "--force")
    assert code == 0, err


def test_eval_on_the_test_split_searches_only_pictures_never_trained_on(tmp_path: Path, cli_env, capsys) -> None:
    synthetic.write_dataset(tmp_path / "ds", n_per_class=3, seed=5, image_size=64)
    code, out, err = run(capsys, "eval", str(tmp_path / "ds"), "--split", "test", "--k", "1,5", "--json", "--per-query")
    assert code == 0, err
    document = json.loads(out)
    assert document["split"] == "test" and document["images"] == 30  # one of each class's three
    text, images = document["evaluations"]
    assert text["split"] == "test" and text["queries"] == 30 and {q["relevant"] for q in text["per_query"]} == {1}
    assert images["queries"] == 30 and {q["relevant"] for q in images["per_query"]} == {0}  # itself left out
    split = json.loads((tmp_path / "ds" / "splits.json").read_text())
    assert {k: len(v) for k, v in split["pictures"].items()} == {"train": 30, "validation": 30, "test": 30}
    code, again, _ = run(capsys, "eval", str(tmp_path / "ds"), "--split", "test", "--k", "1,5", "--json", "--per-query")
    assert json.loads(again)["evaluations"][0]["per_query"] == text["per_query"]  # the same split, read back


@pytest.mark.slow
def test_eval_measures_paraphrases_and_templates_and_draws_plots(tmp_path: Path, cli_env, capsys) -> None:
    labels = synthetic.write_new_concepts(tmp_path / "new", 5, seed=2, image_size=64)
    plots = tmp_path / "plots"
    argv = ["eval", str(labels), "--k", "1,5", "--compare-templates", "--plot", str(plots)]
    code, out, err = run(capsys, *argv, "--per-query")
    assert code == 0, err
    assert "spread" in out.splitlines()[1] and "templates as paraphrases, tiny-clip: AP spread" in out
    assert "least robust groups of paraphrases" in out and "labels whose template matters most" in out
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        ["leaderboard.png", "precision_at_k.png", "recall_at_k.png", "per_query_ap.png", "paraphrase_spread.png"]
    )
    assert all(p.read_bytes().startswith(PNG) for p in plots.iterdir())
    code, out, err = run(capsys, *argv[:-2], "--json", "--per-query")
    document = json.loads(out)
    first = document["evaluations"][0]
    assert first["robustness"]["groups"] == 4 and set(first["robustness"]) >= {"AP spread", "min AP", "overlap@5"}
    assert [g["group"] for g in first["paraphrase_groups"]] and len(first["paraphrase_groups"][0]["queries"]) == 3
    assert document["template_robustness"]["tiny-clip"]["groups"] == 12  # each caption under two templates


def test_captions_typed_on_the_label_page_become_the_rows_eval_reads(tmp_path: Path) -> None:
    pictures = [
        Edited(str(tmp_path / "a.jpg"), "a black cat\n\n  a  black cat on a sofa  \na black cat", "cat"),
        Edited(str(tmp_path / "b.jpg"), "   \n"),  # nothing typed: one empty caption, the picture stays
    ]
    rows = edited_rows(pictures, tmp_path / "labels.csv")
    (tmp_path / "labels.csv").write_text(labels_csv(rows, tmp_path), encoding="utf-8")
    dataset = load_dataset(tmp_path / "labels.csv")
    assert dataset.labels == {str(tmp_path / "a.jpg"): {"a black cat", "a black cat on a sofa"}, str(tmp_path / "b.jpg"): set()}
    assert dataset.paraphrases() == {"cat": ["a black cat", "a black cat on a sofa"]}


@pytest.mark.parametrize(("typed", "message"), [
    ([("a black cat", "cat"), ("a black cat", "pets")], "is in group 'cat' already, not 'pets'"),
    ([("a black | cat", "")], "put each caption on a line of its own"),
    ([("A Black Cat", ""), ("a black cat", "")], "differ only in case or spacing"),
])
def test_captions_eval_would_refuse_are_one_line_before_anything_is_written(tmp_path: Path, typed, message) -> None:
    pictures = [Edited(str(tmp_path / f"{i}.jpg"), captions, group) for i, (captions, group) in enumerate(typed)]
    with pytest.raises(DatasetError, match=message.replace("|", r"\|")):
        edited_rows(pictures, tmp_path / "labels.csv")
