"""Splits, paraphrase robustness and the label CSV: the torch-free data layer under `eval` and `tune`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedder import cli
from embedder.errors import DatasetError
from embedder.evaluation.datasets import Dataset, LabelRow, load_dataset, rows_of, write_labels
from embedder.evaluation.metrics import Evaluation, mean_average_precision, score_ranking
from embedder.evaluation.robustness import caption_groups, least_robust, overlap, summary, template_groups
from embedder.evaluation.splits import SPLITS, TEST, TRAIN, VALIDATION, dataset_split, make_split, split_path

ROOT = Path("/data/photos")


def dataset(counts: dict[str, int]) -> Dataset:
    """A dataset with `counts[label]` pictures of each label (paths under ROOT, never read)."""
    labels = {str(ROOT / label / f"{i}.jpg"): {label} for label, n in counts.items() for i in range(n)}
    return Dataset(ROOT, labels, source=ROOT / "labels.csv")


@settings(max_examples=60, deadline=None)
@given(counts=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(3, 12), min_size=1, max_size=6),
       seed=st.integers(0, 2**31))
def test_a_split_deals_every_picture_once_and_every_label_to_each_part(counts: dict[str, int], seed: int) -> None:
    data = dataset(counts)
    split = make_split(data, seed)
    parts = [set(split.of(name)) for name in SPLITS]
    assert sum(map(len, parts)) == len(data.labels) and set().union(*parts) == set(data.labels)
    for label, n in counts.items():
        per_part = [sum(data.stratum(p) == label for p in part) for part in parts]
        assert all(k >= 1 for k in per_part), (label, n, per_part)  # three or more pictures: some in each
        assert per_part[0] >= max(per_part[1:])  # train is the largest share
    assert make_split(data, seed) == split  # the same seed, the same split


def test_adding_pictures_of_one_label_moves_no_picture_of_another() -> None:
    before = make_split(dataset({"cat": 10, "dog": 10}), seed=4)
    after = make_split(dataset({"cat": 10, "dog": 15}), seed=4)
    for name in SPLITS:
        assert {p for p in before.of(name) if "/cat/" in p} == {p for p in after.of(name) if "/cat/" in p}
    assert make_split(dataset({"cat": 10, "dog": 10}), seed=5) != before


def test_labels_with_one_or_two_pictures_go_to_train_or_train_and_test(caplog) -> None:
    split = make_split(dataset({"cat": 6, "dog": 2, "rex": 1}), seed=0)
    where = {p: name for name in SPLITS for p in split.of(name)}
    assert where[str(ROOT / "rex" / "0.jpg")] == TRAIN and "one picture" in caplog.text
    assert sorted(where[str(ROOT / "dog" / f"{i}.jpg")] for i in range(2)) == [TEST, TRAIN]


@pytest.mark.parametrize(
    ("counts", "says"),
    [({"cat": 1, "dog": 1}, "every label has one picture"),
     ({"cat": 2, "dog": 2}, "the validation split would be empty")],
)
def test_a_dataset_that_cannot_be_split_is_one_line(counts: dict[str, int], says: str) -> None:
    with pytest.raises(DatasetError, match=says) as caught:
        make_split(dataset(counts), seed=0)
    assert "\n" not in str(caught.value)


def test_the_split_is_written_beside_the_dataset_and_read_back(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,caption\n" + "".join(f"{k}.jpg,{'cat' if k % 2 else 'dog'}\n" for k in range(10)))
    data = load_dataset(csv_file)
    first = dataset_split(data, seed=3)
    assert first.path == split_path(data) == tmp_path / "labels.splits.json" and first.path.is_file()
    document = json.loads(first.path.read_text())
    assert sorted(p for name in SPLITS for p in document["pictures"][name]) == sorted(f"{k}.jpg" for k in range(10))
    again = dataset_split(load_dataset(csv_file), seed=99)  # the file wins over a new seed: one split
    assert again.pictures == first.pictures and again.seed == 3

    with open(csv_file, "a") as fh:
        fh.write("new.jpg,cat\n")
    with pytest.raises(DatasetError, match=r"1 picture of the dataset \(e.g. new.jpg\) is not in its split"):
        dataset_split(load_dataset(csv_file))
    first.path.write_text("{not json")
    with pytest.raises(DatasetError, match="is not a split file"):
        dataset_split(load_dataset(csv_file))


def test_a_class_folder_dataset_keeps_its_split_inside(tmp_path: Path) -> None:
    from imagefiles import solid

    for label in ("red thing", "blue thing"):
        for k in range(3):
            solid(tmp_path / "ds" / label / f"{k}.png", label.split()[0])
    split = dataset_split(load_dataset(tmp_path / "ds"))
    assert split.path == tmp_path / "ds" / "splits.json" and split.counts() == {TRAIN: 2, VALIDATION: 2, TEST: 2}


def test_cli_split_names_are_the_splits() -> None:
    assert cli.SPLIT_NAMES == SPLITS


# --- robustness --------------------------------------------------------------------------------------


def test_robustness_of_a_group_by_hand() -> None:
    a = score_ranking("a black cat on a sofa", [True, True, False], 2, (1, 2), ["x", "y", "z"])
    b = score_ranking("sofa with a black cat", [False, True, True], 2, (1, 2), ["z", "x", "y"])
    ev = Evaluation("text→image", None, (1, 2), [a, b], "m")
    [group] = caption_groups(ev, {"cat": [a.query, b.query, "not measured"]}, k=2)
    assert group.average_precisions == (1.0, pytest.approx((1 / 2 + 2 / 3) / 2))
    assert group.min_ap == pytest.approx(7 / 12) and group.spread == pytest.approx(5 / 12)
    assert group.overlap == pytest.approx(1 / 3)  # top-2 {x, y} and {z, x}: one shared of three
    assert summary([group])["AP spread"] == pytest.approx(5 / 12)
    assert caption_groups(ev, {"alone": [a.query]}, k=2) == []  # one wording: nothing to compare


def test_templates_are_paraphrases_of_each_label() -> None:
    plain = Evaluation("text→image", None, (1,), [score_ranking("cat", [True], 1, (1,), ["x"])], "m")
    photo = Evaluation("text→image", "a photo of {}", (1,), [score_ranking("cat", [False, True], 1, (1,), ["y", "x"])], "m")
    images = Evaluation("image→image", None, (1,), [], "m")
    [group] = template_groups([plain, photo, images], k=1)
    assert group.group == "cat" and group.queries == ("{}", "a photo of {}") and group.spread == pytest.approx(0.5)
    assert template_groups([plain, images], k=1) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefg"), max_size=6, unique=True), min_size=1, max_size=5), st.integers(1, 6))
def test_overlap_is_a_fraction_that_is_one_for_identical_results(tops: list[list[str]], k: int) -> None:
    value = overlap(tops, k)
    assert 0.0 <= value <= 1.0
    assert overlap(list(reversed(tops)), k) == pytest.approx(value)
    assert overlap([tops[0]] * 3, k) == 1.0


def test_least_robust_comes_first() -> None:
    steady = caption_groups(*_group("steady", misses=[0, 0]))
    shaky = caption_groups(*_group("shaky", misses=[0, 3]))
    assert [g.group for g in least_robust(steady + shaky)] == ["shaky", "steady"]
    assert shaky[0].spread == pytest.approx(0.75)


def _group(name: str, misses: list[int]):
    """One evaluation whose group `name` has a wording per entry, finding its one picture after `misses` others."""
    scores = [score_ranking(f"{name} {i}", [False] * m + [True], 1, (1,), [str(i)]) for i, m in enumerate(misses)]
    return Evaluation("text→image", None, (1,), scores, "m"), {name: [s.query for s in scores]}, 1


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31))
def test_vectorised_map_equals_the_ranked_list_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    similarity = rng.normal(size=(4, 9))
    relevant = rng.random((4, 9)) < 0.3
    relevant[:, 0] |= ~relevant.any(axis=1)  # every query has something to find
    order = np.argsort(-similarity, axis=1, kind="stable")
    by_list = [score_ranking("q", relevant[i][order[i]], int(relevant[i].sum()), (1,)).average_precision for i in range(4)]
    assert mean_average_precision(similarity, relevant) == pytest.approx(float(np.mean(by_list)))


# --- the label CSV --------------------------------------------------------------------------------------


def test_groups_are_read_and_labels_that_differ_in_case_are_refused(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "path,caption,group\n1.jpg,black cat sitting on a couch,cat\n1.jpg,a black cat on a sofa|sofa with a black cat,cat\n"
        "2.jpg,our  dog Rex,\n"
    )
    data = load_dataset(csv_file)
    assert data.paraphrases() == {"cat": ["a black cat on a sofa", "black cat sitting on a couch", "sofa with a black cat"]}
    assert data.queries[2] == "our dog Rex"  # spaces collapsed
    csv_file.write_text("path,caption\n1.jpg,Rex\n2.jpg,rex\n")
    with pytest.raises(DatasetError, match="the labels 'Rex' and 'rex' differ only in case"):
        load_dataset(csv_file)
    csv_file.write_text("path,caption,group\n1.jpg,a cat,one\n2.jpg,a cat,two\n")
    with pytest.raises(DatasetError, match="line 3: the caption 'a cat' is in group 'one' already"):
        load_dataset(csv_file)


def test_a_label_csv_is_written_whole_and_never_over_another(tmp_path: Path) -> None:
    rows = [LabelRow(str(tmp_path / "pics" / "a, b.jpg"), 'a "quoted", caption', "g"), LabelRow(str(tmp_path / "pics" / "c.jpg"), "")]
    target = tmp_path / "labels.csv"
    write_labels(target, rows)
    data = load_dataset(target)
    assert data.labels == {str(tmp_path / "pics" / "a, b.jpg"): {'a "quoted", caption'}, str(tmp_path / "pics" / "c.jpg"): set()}
    assert rows_of(data) == rows
    with pytest.raises(DatasetError, match="exists already"):
        write_labels(target, rows[:1])
    write_labels(target, rows[:1], force=True)
    assert len(load_dataset(target).labels) == 1 and [p.name for p in tmp_path.iterdir()] == ["labels.csv"]


def test_the_data_layer_imports_no_torch() -> None:
    modules = "datasets splits metrics robustness leaderboard plots labels".split()
    code = "import sys\n" + "".join(f"import embedder.evaluation.{m}\n" for m in modules)
    code += "import embedder.store.switching, embedder.store.catalog\nassert 'torch' not in sys.modules, 'torch'\n"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
