"""`embedder tune` end to end on the tiny CLIP (and a random SigLIP): the model folder it writes loads
through the product's own loader and searches; checkpoints, --resume, a full disk, and the bad inputs."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from faultkit import run_main as run
from safetensors.torch import load_file

from embedder import cli
from embedder.config import Settings
from embedder.evaluation import synthetic
from modelkit import tiny_siglip, tiny_vit

EPOCHS = ("--epochs", "2", "--batch-size", "8", "--lr", "1e-3")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New shapes with paraphrased captions (6 of each of 4 shapes) and a small library of known ones."""
    root = tmp_path_factory.mktemp("tune")
    synthetic.write_new_concepts(root / "new", 6, seed=1, image_size=64)
    library = root / "library"
    library.mkdir()
    for i, sample in enumerate(synthetic.generate(10, seed=3, image_size=64)):
        sample.image.save(library / f"{i:02d}.jpg", quality=90)
    return root


@pytest.fixture
def tune_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_path: Path) -> Path:
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "uploads"))
    return tmp_path


def labels(world: Path, tmp_path: Path) -> Path:
    """A copy of the labelled set's CSV in `tmp_path` (its split is made beside it, per test)."""
    target = tmp_path / "labels.csv"
    rows = (world / "new" / "labels.csv").read_text().splitlines()
    target.write_text("\n".join([rows[0], *(f"{(world / 'new').as_posix()}/{row}" for row in rows[1:])]) + "\n")
    return target


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def tuned(world: Path, tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> tuple[Path, dict, Path]:
    """One uninterrupted run with the library as the default kept pictures: (model folder, card, labels)."""
    tmp = tmp_path_factory.mktemp("tuned")
    env = {"EMBEDDER_MODEL": str(model_path), "EMBEDDER_DEVICE": "cpu", "QDRANT_PATH": str(tmp / "qdrant"),
           "UPLOAD_DIR": str(tmp / "uploads")}
    with pytest.MonkeyPatch.context() as mp:
        for var, value in env.items():
            mp.setenv(var, value)
        assert cli.main(["index", str(world / "library")]) == 0
        csv_file = labels(world, tmp)
        assert cli.main(["tune", str(csv_file), "--out", str(tmp / "model"), *EPOCHS, "--json"]) == 0
    return tmp / "model", json.loads((tmp / "model" / "tuning.json").read_text()), csv_file


@pytest.mark.slow
def test_a_tuned_model_is_a_model_folder_the_product_loads_and_searches_with(tuned, world: Path, tmp_path: Path) -> None:
    from embedder.engine import Engine
    from embedder.query.terms import Query

    folder, card, csv_file = tuned
    assert {"README.md", "tuning.json", "model.safetensors", "modules.json"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no partial folder, no checkpoint left
    assert card["split"] == {"file": str(csv_file.with_name("labels.splits.json")), "seed": 0,
                             "train": 16, "validation": 4, "test": 4}
    assert card["settings"]["trainable"] == "last" and card["settings"]["kept_pictures"] == 10  # the library
    assert [h["epoch"] for h in card["history"]] == [0, 1, 2] and card["alpha"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert set(card["test"]["tuned"]) == {"text→image", "image→image"} and card["kept"]["pictures"] == 2
    readme = (folder / "README.md").read_text()
    assert "## Before and after, on the test split" in readme and "| tuned | text→image |" in readme

    settings = Settings(model=str(folder), device="cpu", qdrant_path=tmp_path / "q", upload_dir=tmp_path / "u",
                        thumb_dir=tmp_path / "t", collection="tuned")
    engine = Engine.open(settings)  # the product's normal loader, EMBEDDER_MODEL=DIR
    try:
        assert engine.encoder.model_id == "model"
        assert len(engine.indexer.index([world / "new"]).added) == 24
        results = engine.searcher.search(Query.text("a heart"), 3)
        assert len(results) == 3 and all(r.path.endswith(".jpg") for r in results)
    finally:
        engine.close()


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights_and_resume_continues_a_killed_run(
    tuned, world: Path, tune_env: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, _ = tuned
    csv_file = labels(world, tune_env)
    out = tune_env / "again"
    argv = ["tune", str(csv_file), "--out", str(out), *EPOCHS, "--keep", str(world / "library")]

    def ctrl_c_after_epoch_one(progress) -> None:
        if progress.phase == "epoch" and progress.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr("embedder.cli._show_tune_progress", ctrl_c_after_epoch_one)
    code, out_text, err = run(capsys, *argv)
    assert code == 130 and "--resume" in err and not out.exists()
    assert (tune_env / ".again.tuning" / "checkpoint.pt").is_file()
    code, _, err = run(capsys, *argv)  # without --resume: refused, the checkpoint kept
    assert code == 1 and "add --resume to continue it" in err and err.count("\n") == 1

    steps: list[int] = []
    monkeypatch.setattr("embedder.cli._show_tune_progress", lambda p: steps.append(p.epoch) if p.phase == "training" else None)
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    assert set(steps) == {2}  # only the second epoch ran again
    assert not (tune_env / ".again.tuning").exists()
    mine, theirs = weights(out), weights(folder)  # the library and --keep hold the same pictures here
    assert mine.keys() == theirs.keys() and all(mine[k].equal(theirs[k]) for k in mine)


@pytest.mark.slow
def test_a_full_disk_while_saving_is_one_line_and_leaves_nothing_half_written(
    world: Path, tune_env: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_file = labels(world, tune_env)
    out = tune_env / "model"

    def full_disk(self, folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("embedder.evaluation.trainable.Trainable.save", full_disk)
        code, _, err = run(capsys, "tune", str(csv_file), "--out", str(out), "--epochs", "1", "--keep", str(world / "library"))
    error = err.splitlines()[-1]  # after the progress lines of the epoch it did train
    assert code == 1 and error.startswith("error: No space left on the disk while writing the tuned model")
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1 and "Traceback" not in err
    assert "--resume" in error and not out.exists()
    assert sorted(p.name for p in tune_env.iterdir() if p.name.startswith(".")) == [".model.tuning"]
    code, _, err = run(capsys, "tune", str(csv_file), "--out", str(out), "--epochs", "1", "--keep", str(world / "library"), "--resume")
    assert code == 0, err
    assert (out / "model.safetensors").stat().st_size > 100_000


@pytest.mark.slow
def test_siglip_tunes_with_its_own_loss_into_an_hf_folder(world: Path, tune_env: Path, capsys, monkeypatch) -> None:
    model = tiny_siglip(tune_env / "siglip")
    monkeypatch.setenv("EMBEDDER_MODEL", f"hf:{model}")
    csv_file = tune_env / "words.csv"  # captions in the random model's few words
    pictures = sorted((world / "new").rglob("*.jpg"))
    words = ["a red circle", "a blue square", "a green triangle", "a cat"]
    csv_file.write_text("path,caption\n" + "".join(f"{p},{words[i % 4]}\n" for i, p in enumerate(pictures)))
    code, out, err = run(capsys, "tune", str(csv_file), "--out", str(tune_env / "tuned"), "--epochs", "1",
                         "--keep", str(world / "library"), "--json")
    assert code == 0, err
    card = json.loads(out)
    assert card["loss"].startswith("sigmoid") and card["test"]["tuned"]["text→image"]["mAP"] >= 0
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md"} <= {p.name for p in (tune_env / "tuned").iterdir()}


@pytest.mark.parametrize("case", ["out exists", "visual-only model", "caption of no tokens", "one picture per label"])
def test_what_cannot_be_tuned_is_one_line(case: str, world: Path, tune_env: Path, capsys, monkeypatch) -> None:
    csv_file = labels(world, tune_env)
    out = tune_env / "model"
    if case == "out exists":
        out.mkdir()
        says = "exists already: choose another --out"
    elif case == "visual-only model":
        monkeypatch.setenv("EMBEDDER_MODEL", f"hf:{tiny_vit(tune_env / 'vit')}")
        says = "is not an image-text model"
    elif case == "caption of no tokens":
        monkeypatch.setenv("EMBEDDER_MODEL", f"hf:{tiny_siglip(tune_env / 'siglip')}")
        pictures = sorted((world / "new").rglob("*.jpg"))
        csv_file.write_text("path,caption\n" + "".join(f"{p},{'a red circle' if i % 2 else 'γάτα στον καναπέ'}\n"
                                                       for i, p in enumerate(pictures)))
        says = "the caption 'γάτα στον καναπέ' means nothing to the model's tokenizer"
    else:
        pictures = sorted((world / "new").rglob("*.jpg"))[:4]
        csv_file.write_text("path,caption\n" + "".join(f"{p},thing {i}\n" for i, p in enumerate(pictures)))
        says = "every label has one picture"
    capsys.readouterr()  # what building the test models printed
    code, stdout, err = run(capsys, "tune", str(csv_file), "--out", str(out), "--epochs", "1")
    assert code == 1 and stdout == "" and err.count("\n") == 1 and says in err and "Traceback" not in err, err
    assert not [p for p in tune_env.iterdir() if p.name.startswith(".model")]
