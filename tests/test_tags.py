"""Tags from images: the trained tiny CLIP tags real synthetic images in the real embedded store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.evaluation import synthetic
from embedder.config import Settings
from embedder.errors import ConfigError
from embedder.query.terms import Query
from embedder.query.filters import make_filter
from embedder.store import SearchFilter
from embedder.indexing.tags import CACHE_DIR as TAGS_CACHE_DIR
from embedder.indexing.tags import (
    DEFAULT_SCALE,
    Tagger,
    default_vocabulary_text,
    load_vocabulary,
    logit_scale,
    open_tagger,
    parse_vocabulary,
    retag,
    tag_counts,
)

# What the tiny CLIP knows: colour + shape classes, and the colours and shapes alone.
VOCABULARY = [*synthetic.class_names(), *synthetic.COLOURS, *synthetic.SHAPES]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two images of each of the 30 colour + shape classes, in class folders (`red circle/0001.jpg`)."""
    root = tmp_path_factory.mktemp("shapes")
    synthetic.write_dataset(root, 2, seed=5)
    return root


@pytest.fixture
def vocabulary(tmp_path: Path) -> Path:
    path = tmp_path / "tags.txt"
    path.write_text("# shapes and colours the tiny CLIP was trained on\n" + "\n".join(VOCABULARY) + "\n")
    return path


def stored(engine) -> dict[str, dict]:
    """Payload of each stored image by its class folder + file name."""
    return {f"{Path(p['paths'][0]).parent.name}/{p['name']}": p for _, p, _ in engine.store.scroll()}


def related(tag: str, label: str) -> bool:
    """A tag says something true of an image of class `label` (`red circle`): its colour or its shape."""
    colour, shape = label.split()
    return bool({colour, shape} & set(tag.split()))


def test_images_get_the_labels_of_what_they_show_and_no_unrelated_ones(reopen, vocabulary: Path, dataset: Path) -> None:
    engine = reopen(tags_file=vocabulary)
    try:
        report = engine.indexer.index([dataset])
        assert len(report.added) == 60
        payloads = stored(engine)
        tagger = engine.indexer.tagger
    finally:
        engine.close()
    assert len(payloads) == 60
    right = 0
    for key, payload in payloads.items():
        label = key.split("/")[0]
        tags = payload["tags"]
        assert payload["tags_by"] == tagger.key and 1 <= len(tags) <= 5 and set(tags) <= set(VOCABULARY), key
        # every tag names the picture's colour or its shape: never an unrelated label
        assert all(related(tag, label) for tag in tags), (key, tags)
        right += label in tags or any(t in tags for t in label.split())
    assert right >= 54, f"only {right} of 60 images got their class, colour or shape"
    red_circles = [p["tags"] for k, p in payloads.items() if k.startswith("red circle/")]
    assert all({"red circle", "red", "circle"} & set(tags) for tags in red_circles), red_circles
    assert not any({"blue", "green", "square", "star"} & set(tags) for tags in red_circles)


def test_the_tag_filter_and_counts_come_from_the_store(reopen, vocabulary: Path, dataset: Path) -> None:
    engine = reopen(tags_file=vocabulary)
    try:
        engine.indexer.index([dataset])
        counts = tag_counts(engine.store)
        payloads = stored(engine)
        expected: dict[str, int] = {}
        for payload in payloads.values():
            for tag in payload["tags"]:
                expected[tag] = expected.get(tag, 0) + 1
        assert counts == expected and list(counts.values()) == sorted(counts.values(), reverse=True)
        tag = next(iter(counts))  # the commonest tag
        results = engine.searcher.search(Query.text("a shape", where=SearchFilter(tags=(tag,))), limit=100)
        assert len(results) == counts[tag] and all(tag in r.payload["tags"] for r in results)
        pair = next(tuple(p["tags"][:2]) for p in payloads.values() if len(p["tags"]) >= 2)
        both = engine.searcher.search(Query.text("a shape", where=make_filter(tags=pair)), limit=100)
        assert both and all(set(pair) <= set(r.payload["tags"]) for r in both)  # all of them
        assert len(both) == sum(set(pair) <= set(p["tags"]) for p in payloads.values())
        browsed = engine.searcher.browse(SearchFilter(tags=(tag,))).first(100)[0]
        assert len(browsed) == counts[tag]
    finally:
        engine.close()


def test_a_plain_index_run_tags_stored_images_without_encoding_them_again(
    reopen, vocabulary: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = reopen(tags=False)
    try:
        first.indexer.index([dataset])
        assert not any("tags" in p for p in stored(first).values())
    finally:
        first.close()
    engine = reopen(tags_file=vocabulary)
    try:
        def no_encoding(*args, **kwargs):
            raise AssertionError("an image was encoded again")

        monkeypatch.setattr(engine.encoder, "encode_images", no_encoding)
        report = engine.indexer.index([dataset])
        assert report.added == [] and len(report.unchanged) == 60
        payloads = stored(engine)
        assert all(p["tags"] and p["tags_by"] == engine.indexer.tagger.key for p in payloads.values())
        assert all(len(p["paths"]) == 1 and p["format"] == "JPEG" for p in payloads.values())  # the rest kept
        red = [p["tags"] for k, p in payloads.items() if k.startswith("red circle/")]
        assert all({"red circle", "red", "circle"} & set(tags) for tags in red)
    finally:
        engine.close()


def test_refresh_retags_only_what_another_vocabulary_made(reopen, vocabulary: Path, dataset: Path) -> None:
    engine = reopen(tags_file=vocabulary)
    try:
        engine.indexer.index([dataset])
        old_key = engine.indexer.tagger.key
        colours = Tagger(engine.encoder, list(synthetic.COLOURS))
        assert colours.key != old_key
        assert retag(engine.store, colours) == 0  # every image has tags: a plain pass leaves them
        assert retag(engine.store, colours, refresh=True) == 60
        payloads = stored(engine)
        assert all(p["tags_by"] == colours.key and set(p["tags"]) <= set(synthetic.COLOURS) for p in payloads.values())
        assert sum(k.split()[0] in p["tags"] for k, p in payloads.items()) >= 54
        assert retag(engine.store, colours, refresh=True) == 0  # nothing left to do
    finally:
        engine.close()


# --- the calibration ------------------------------------------------------------------------------


class FakeEncoder:
    """Label vectors on the axes: cosines are whatever the test's image vector says."""

    model_id = "fake"
    dim = 16
    text_model = None

    def __init__(self) -> None:
        self.encoded = 0

    def encode_texts(self, texts):
        self.encoded += len(texts)
        return np.eye(16, dtype=np.float32)[: len(texts)]


def cosines(*values: float) -> np.ndarray:
    """An image vector whose cosine with the fake encoder's label i is values[i]."""
    return np.pad(np.asarray(values, dtype=np.float32), (0, FakeEncoder.dim - len(values)))


def test_probabilities_ignore_where_a_models_cosines_sit_and_keep_few_labels() -> None:
    tagger = Tagger(FakeEncoder(), ["dog", "cat", "car", "tree"])
    assert tagger.scale == DEFAULT_SCALE  # a model that does not say: CLIP's own 100
    image = cosines(0.30, 0.29, 0.20, 0.20)  # raw cosines, as real CLIP gives them
    shifted = image - 0.15  # another model: the same differences in another band
    assert np.allclose(tagger.probabilities(image), tagger.probabilities(shifted), atol=1e-6)
    (tagged,) = tagger.tag(image)
    assert tagged.tags == ["dog", "cat"]  # 0.73, 0.27; car and tree e^-10 of dog: far below MIN_PROBABILITY
    assert tagger.tag(cosines(0.30, 0.27, 0.20, 0.20))[0].tags == ["dog"]  # cat only 1/e^3 as likely
    many = Tagger(FakeEncoder(), [f"label {i}" for i in range(16)])
    assert many.tag(cosines(*[0.25] * 16))[0].tags == []  # fits nothing in particular: 1/16 each
    assert many.tag(cosines(0.26, 0.25, 0.26, *[0.25] * 13))[0].tags == ["label 0", "label 2"]
    assert Tagger(FakeEncoder(), ["dog", "cat", "car", "tree"], max_tags=1).tag(image)[0].tags == ["dog"]


def test_the_scale_is_the_models_own(encoder) -> None:
    assert logit_scale(encoder) == pytest.approx(20.72, abs=0.05)  # tests/fixtures/tiny-clip-train.log


def test_label_vectors_are_encoded_once_and_cached(tmp_path: Path) -> None:
    first = FakeEncoder()
    Tagger(first, ["dog", "cat"], cache_dir=tmp_path).label_vectors()
    assert first.encoded == 2 and len(list(tmp_path.glob("*.npy"))) == 1
    again = FakeEncoder()
    vectors = Tagger(again, ["dog", "cat"], cache_dir=tmp_path).label_vectors()
    assert again.encoded == 0 and vectors.shape == (2, 16)
    other = FakeEncoder()
    Tagger(other, ["dog", "cat", "car"], cache_dir=tmp_path).label_vectors()  # another vocabulary
    assert other.encoded == 3 and len(list(tmp_path.glob("*.npy"))) == 2
    next(tmp_path.glob("*.npy")).write_bytes(b"garbage")  # a damaged cache only costs time
    assert Tagger(FakeEncoder(), ["dog", "cat"], cache_dir=tmp_path).label_vectors().shape == (2, 16)


def test_a_new_store_of_the_same_model_reuses_the_label_vectors_and_changed_weights_do_not(
    settings: Settings, tmp_path: Path
) -> None:
    """The label cache is MODEL_CACHE_DIR's, shared by every store (a new store's first index paid
    2.5-13 s for the vocabulary): keyed by the model's files, so a local folder whose weights changed
    under the same name is encoded again."""
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"one")
    cache, labels = tmp_path / "model-cache", tmp_path / "tags.txt"
    labels.write_text("dog\ncat\ncar\n")
    first_store = replace(
        settings, model=str(model), model_cache_dir=cache, qdrant_path=tmp_path / "a", tags=True, tags_file=labels
    )
    second_store = replace(first_store, qdrant_path=tmp_path / "b")
    first = FakeEncoder()
    open_tagger(first_store, first).label_vectors()
    again = FakeEncoder()
    open_tagger(second_store, again).label_vectors()
    assert first.encoded > 0 and again.encoded == 0
    assert [p.parent for p in cache.rglob("*.npy")] == [cache / TAGS_CACHE_DIR]
    (model / "weights.bin").write_bytes(b"two, tuned")  # the same folder, other weights
    changed = FakeEncoder()
    open_tagger(second_store, changed).label_vectors()
    assert changed.encoded == first.encoded


# --- the vocabulary ------------------------------------------------------------------------------


def test_a_vocabulary_file_is_one_label_a_line() -> None:
    text = "# comment\n\ndog\n  golden   retriever  # a breed\nDog\ncat\n" + "x" * 101 + "\n"
    assert parse_vocabulary(text) == ["dog", "golden retriever", "cat"]


def test_the_built_in_vocabulary_is_a_few_hundred_distinct_labels() -> None:
    labels = parse_vocabulary(default_vocabulary_text())
    assert 200 <= len(labels) <= 500
    assert len({label.casefold() for label in labels}) == len(labels)
    assert load_vocabulary(None) == labels


def test_tags_can_be_turned_off_or_replaced(settings: Settings, encoder, tmp_path: Path) -> None:
    assert open_tagger(replace(settings, tags=False), encoder) is None
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    assert open_tagger(replace(settings, tags_file=empty), encoder) is None
    mine = tmp_path / "mine.txt"
    mine.write_text("red\nblue\n")
    assert open_tagger(replace(settings, tags_file=mine), encoder).labels == ["red", "blue"]
    with pytest.raises(ConfigError, match=r"TAGS_FILE .*missing.txt cannot be read .*TAGS=false"):
        open_tagger(replace(settings, tags_file=tmp_path / "missing.txt"), encoder)
    assert Settings.from_env({"TAGS": "no", "TAGS_FILE": str(mine)}, env_file="/none").tags is False
    assert Settings.from_env({"TAGS_FILE": str(mine)}, env_file="/none").tags_file == mine


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, vocabulary: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI on the same store as `settings` (and `reopen`), tagging with the shapes vocabulary."""
    for var, value in {
        "EMBEDDER_MODEL": settings.model, "EMBEDDER_DEVICE": "cpu", "QDRANT_PATH": str(settings.qdrant_path),
        "UPLOAD_DIR": str(settings.upload_dir), "TAGS_FILE": str(vocabulary),
    }.items():
        monkeypatch.setenv(var, value)
    return settings


def test_cli_lists_tags_with_counts_and_searches_by_tag(cli_env, dataset: Path, reopen, capsys) -> None:
    assert cli.main(["tags"]) == 0
    assert "no tags yet" in capsys.readouterr().out
    assert cli.main(["index", str(dataset), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["tags", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert sum(counts.values()) >= 60 and list(counts.values()) == sorted(counts.values(), reverse=True)
    assert cli.main(["tags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(None, 1)[1] for line in lines] == list(counts)
    assert [int(line.split()[0].replace(",", "")) for line in lines] == list(counts.values())

    first, second = "red", "red circle"
    assert cli.main(["search", "a shape", "--tag", first, "-k", "100", "--json"]) == 0
    red = json.loads(capsys.readouterr().out)
    assert cli.main(["search", "a shape", "--tag", first, "--tag", second, "-k", "100", "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert len(red) == counts.get(first, 0) and len(both) <= len(red)
    engine = reopen()
    try:
        payloads = engine.store.retrieve([hit["id"] for hit in red + both])
    finally:
        engine.close()
    assert all(first in payloads[hit["id"]]["tags"] for hit in red)
    assert all({first, second} <= set(payloads[hit["id"]]["tags"]) for hit in both)


def test_cli_refresh_retags_after_the_vocabulary_changes(
    cli_env, dataset: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    assert cli.main(["index", str(dataset), "--json"]) == 0
    colours = tmp_path / "colours.txt"
    colours.write_text("\n".join(synthetic.COLOURS))
    monkeypatch.setenv("TAGS_FILE", str(colours))
    capsys.readouterr()
    assert cli.main(["tags", "--json"]) == 0  # a changed vocabulary changes nothing until asked
    assert set(json.loads(capsys.readouterr().out)) - set(synthetic.COLOURS)
    assert cli.main(["tags", "--refresh", "--json"]) == 0
    captured = capsys.readouterr()
    assert "re-tagged 60 images" in captured.err and set(json.loads(captured.out)) <= set(synthetic.COLOURS)
    monkeypatch.setenv("TAGS", "false")
    assert cli.main(["tags", "--refresh"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: tagging is off (TAGS=false, or TAGS_FILE has no labels): nothing to refresh with"
    )
