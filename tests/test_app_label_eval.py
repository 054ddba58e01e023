"""The Label and Evaluate pages and the Index page's collection switch, in the real app (AppTest):
label a folder in the browser, measure the model on it with paraphrases and plots, and switch the
app to another collection and back — the same core as `embedder label`, `eval` and `use`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from appkit import CLASSES, app_env, assert_clean, errors, goto, index_folder, open_page, texts, unescape, write_images  # noqa: F401 - app_env is a fixture
from modelkit import tiny_siglip

from embedder.config import Settings
from embedder.evaluation.datasets import load_dataset

pytestmark = pytest.mark.slow

HOSTILE = "*bold* [link](x) <b>"  # no slash: it names a folder too


def captions_of(at) -> dict[str, str]:
    """Each picture's caption box, by the file name shown above it."""
    names = [unescape(c.value) for c in at.caption if c.value.endswith(".jpg") or ".jpg ·" in c.value]
    boxes = [t for t in at.text_area if t.key and t.key.startswith("label-captions-")]
    return {name.split(" · ")[0]: box.value for name, box in zip(names, boxes)}


def test_a_folder_is_labelled_in_the_page_and_saved_as_the_csv_eval_reads(app_env: Path) -> None:
    folder = app_env / f"family {HOSTILE}"
    write_images(folder)
    at = open_page("label")
    assert_clean(at)
    at.text_input(key="label-folder").input(str(folder))
    at.button(key="label-draft").click().run()
    assert_clean(at)
    drafted = captions_of(at)
    assert drafted == {f"{c}-{s}.jpg": f"{c} {s}" for c, s in CLASSES}  # from the names: nothing indexed yet
    assert HOSTILE in unescape(texts(at))  # the folder name shown as typed

    boxes = {name: box for name, box in zip(drafted, (t for t in at.text_area if t.key.startswith("label-captions-")))}
    boxes["red-circle.jpg"].input("red circle\n  a   round red shape  \n" + HOSTILE)
    groups = dict(zip(drafted, (t for t in at.text_input if t.key and t.key.startswith("label-group-"))))
    groups["red-circle.jpg"].input("red ones")
    boxes["blue-square.jpg"].input("")  # skipped: no caption
    at.button(key="label-save").click().run()
    assert_clean(at)
    target = folder / "labels.csv"
    assert str(target) in [c.value for c in at.code]

    dataset = load_dataset(target)
    assert dataset.labels[str(folder / "red-circle.jpg")] == {"red circle", "a round red shape", HOSTILE}
    assert dataset.labels[str(folder / "blue-square.jpg")] == set()
    assert dataset.paraphrases() == {"red ones": sorted(["red circle", "a round red shape", HOSTILE])}
    with open(target, newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == ["path", "caption", "group"]
    before = target.read_bytes()

    at.button(key="label-save").click().run()  # again, without "Replace"
    assert any("exists already" in e for e in errors(at))
    assert target.read_bytes() == before


def test_labels_that_eval_would_refuse_are_refused_before_anything_is_written(app_env: Path) -> None:
    folder = app_env / "pictures"
    write_images(folder, CLASSES[:2])
    at = open_page("label")
    at.text_input(key="label-folder").input(str(folder))
    at.button(key="label-draft").click().run()
    boxes = [t for t in at.text_area if t.key.startswith("label-captions-")]
    boxes[0].input("Red Circle")
    boxes[1].input("red circle")
    at.button(key="label-save").click().run()
    assert any("differ only in case or spacing" in e for e in errors(at))
    assert not (folder / "labels.csv").exists()


def write_dataset(folder: Path) -> Path:
    """The test pictures with two captions each, paraphrases of one another."""
    write_images(folder)
    target = folder / "labels.csv"
    with open(target, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "caption", "group"])
        for colour, shape in CLASSES:
            group = f"{colour} {shape}"
            writer.writerow([f"{colour}-{shape}.jpg", f"{colour} {shape}", group])
            writer.writerow([f"{colour}-{shape}.jpg", f"a {shape} coloured {colour}", group])
    return target


def test_the_evaluate_page_shows_the_leaderboard_with_robustness_and_the_plots(app_env: Path) -> None:
    dataset = write_dataset(app_env / "labelled")
    at = open_page("evaluate")
    assert_clean(at)
    at.text_input(key="evaluate-dataset").input(str(dataset))
    at.checkbox(key="evaluate-templates").check()
    at.button(key="evaluate-button").click().run()
    assert_clean(at)

    board = at.dataframe[0].value
    assert list(board["mode"]) == ["text→image", "text→image", "image→image"]
    assert {"mAP", "P@1", "R@10", "paraphrase AP spread", "paraphrase min AP"} <= set(board.columns)
    assert any(c.startswith("paraphrase overlap@") for c in board.columns)
    assert board["mAP"].between(0, 1).all() and board["mAP"].iloc[0] > 0.5  # the trained tiny CLIP finds them
    groups = at.dataframe[1].value
    assert len(groups) == len(CLASSES) and {"mean AP", "min AP", "AP spread"} <= set(groups.columns)
    assert "Prompt templates as paraphrases" in texts(at)
    shown = at.get("image")
    assert len(shown) == 5  # leaderboard, P@K, R@K, AP per query, paraphrase spread
    assert at.sidebar.metric[0].value == "0"  # measured in a store of its own: the app's index is untouched


def test_a_split_measures_only_its_pictures_against_another_model_and_is_written_beside_the_dataset(
    app_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = f"hf:{tiny_siglip(tmp_path_factory.mktemp('other') / 'other-siglip')}"  # as a tuned folder would be named
    folder = app_env / "labelled"
    dataset = folder / "labels.csv"
    rows = [["path", "caption"]]
    for seed in range(5):  # five pictures of each label: one or more in every part
        for path in write_images(folder / f"take{seed}", CLASSES[:3], seed=seed):
            rows.append([path.relative_to(folder).as_posix(), path.stem.replace("-", " ")])
    with open(dataset, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    at = open_page("evaluate")
    at.text_input(key="evaluate-dataset").input(str(dataset))
    at.selectbox(key="evaluate-split").select("test")
    at.text_area(key="evaluate-models").input(other)
    at.button(key="evaluate-button").click().run()
    assert_clean(at)
    board = at.dataframe[0].value
    assert list(board["model"]) == ["tiny-clip", "tiny-clip", "hf:other-siglip", "hf:other-siglip"]
    split = json.loads((folder / "labels.splits.json").read_text())
    tested = len(split["pictures"]["test"]) if "pictures" in split else None
    assert f"{tested} pictures, test split" in texts(at)

    at.text_input(key="evaluate-dataset").input(str(app_env / "nowhere.csv"))
    at.button(key="evaluate-button").click().run()
    assert any("nowhere.csv" in e for e in errors(at))


def collections_table(at) -> dict[str, tuple[int, bool]]:
    """The Index page's collections: name → (images, in use)."""
    found = {}
    for caption in at.caption:
        parts = unescape(caption.value).split(" · ")
        if len(parts) >= 3 and parts[2].endswith(" images"):
            found[parts[0]] = (int(parts[2].removesuffix(" images").replace(",", "")), parts[-1] == "**in use**")
    return found


def test_the_index_page_switches_to_a_new_collection_and_back(app_env: Path, model_path: Path, monkeypatch) -> None:
    env_file = app_env / "qdrant.env"
    env_file.write_text("# mine\nTAGS=false\n")
    monkeypatch.setenv("EMBEDDER_ENV_FILE", str(env_file))
    monkeypatch.delenv("QDRANT_COLLECTION", raising=False)
    first = Settings.from_env().collection
    write_images(app_env / "old", CLASSES[:3])
    at = index_folder(app_env / "old")
    assert at.sidebar.metric[0].value == "3"

    at.text_input(key="switch-new").input("nowhere")  # no such collection, and no model to start one
    at.button(key="switch-button").click().run()
    assert not at.exception
    assert any("There is no collection 'nowhere'" in unescape(e.value) for e in at.error)
    assert env_file.read_text() == "# mine\nTAGS=false\n"  # nothing written
    assert "Last run" in [h.value for h in at.subheader]  # the rest of the Index page (below it) is still drawn

    at.text_input(key="switch-new").input("tuned")
    at.text_input(key="switch-model").input(str(model_path))
    at.button(key="switch-button").click().run()
    assert_clean(at)
    assert "QDRANT_COLLECTION=tuned" in env_file.read_text() and env_file.read_text().startswith("# mine\nTAGS=false\n")
    assert at.sidebar.metric[0].value == "0"  # the app reopened on the new, empty collection
    assert "tuned" in unescape(texts(at))
    write_images(app_env / "new", CLASSES[3:5])
    at = index_folder(app_env / "new", at=at)
    assert at.sidebar.metric[0].value == "2"
    assert collections_table(at) == {first: (3, False), "tuned": (2, True)}

    at.button(key="switch-back").click().run()
    assert_clean(at)
    assert f"QDRANT_COLLECTION={first}" in env_file.read_text()
    assert at.sidebar.metric[0].value == "3"  # nothing was deleted either way
    at = goto(at, "index")
    assert collections_table(at) == {first: (3, True), "tuned": (2, False)}
