"""Composed queries, filters and near-duplicates, with the trained tiny CLIP on synthetic shapes."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder import cli
from embedder.query.duplicates import near_duplicate_groups
from embedder.engine import Engine
from embedder.models.vectors import normalise
from embedder.errors import QueryError
from embedder.query.terms import Query, Term, describe_query, parse_term
from embedder.query.filters import folder_choices, make_filter
from embedder.evaluation.synthetic import write_dataset

# Measured on the synthetic set with the tiny test model (see README "Near-duplicates"):
# resized + re-encoded copies score ≥ 0.9959, distinct images ≤ 0.9921.
TINY_MODEL_NEAR_DUPLICATE = 0.994


@pytest.mark.parametrize(
    ("raw", "term"),
    [
        ("beach", Term(text="beach")),
        ("-people", Term(text="people", weight=-1.0)),
        ("2:sunset", Term(text="sunset", weight=2.0)),
        ("-0.5:crowd", Term(text="crowd", weight=-0.5)),
        ("time: 10:30", Term(text="time: 10:30")),
        ("-", Term(text="-")),
    ],
)
def test_query_syntax(raw: str, term: Term) -> None:
    assert parse_term(raw) == term


def test_a_query_reads_as_people_wrote_it() -> None:
    terms = [
        Term(text="beach"),
        Term(text="sunset", weight=2),
        Term(text="people", weight=-1),
        Term(point_id="p1", label="a.jpg", weight=-0.5),
        Term(vector=np.ones(4), label="b.png"),
        Term(text="ignored", weight=0),
    ]
    assert describe_query(terms) == (
        "“beach” + 2× “sunset” − “people” − 0.5× images like a.jpg + images like your picture b.png"
    )
    assert describe_query([Term(point_id="p1", label="a.jpg")]) == "images like a.jpg"


def test_filters_from_what_people_type() -> None:
    f = make_filter("/photos/2021/", ["jpg", " png", "JPEG"], date(2021, 7, 4), date(2021, 7, 4), 100, 0)
    assert f.folder == "/photos/2021"
    assert f.formats == ("JPEG", "MPO", "PNG")  # phones' multi-picture JPEGs are JPEGs
    # one whole day, inclusive, on the camera's clock: the stored day number of 2021-07-04
    assert f.day_from == f.day_to == datetime(2021, 7, 4, tzinfo=timezone.utc).timestamp() // 86_400
    assert (f.date_from, f.date_to) == (None, None)
    assert (f.min_width, f.min_height) == (100, None)
    assert make_filter().is_empty()


@pytest.fixture
def shapes(engine: Engine, tmp_path: Path) -> tuple[Engine, Path]:
    """Four images of each of the 30 colour+shape classes, indexed."""
    root = tmp_path / "shapes"
    write_dataset(root, n_per_class=4, seed=2024)
    engine.indexer.index([root])
    return engine, root


def classes_of(results) -> list[str]:
    return [Path(r.path).parent.name for r in results]


def test_composed_vector_is_the_normalised_weighted_sum(shapes) -> None:
    engine, _ = shapes
    a, b = engine.encoder.encode_texts(["a red circle", "a blue square"])
    composed = engine.searcher.compose([Term(text="a red circle", weight=2), Term(text="a blue square", weight=-1)])
    assert np.allclose(composed, normalise(2 * a - b), atol=1e-5)
    with pytest.raises(ValueError, match="cancel"):
        engine.searcher.compose([Term(text="x"), Term(text="x", weight=-1)])


def test_a_negative_term_pushes_a_class_down(shapes) -> None:
    engine, _ = shapes
    plain = classes_of(engine.searcher.search(Query.text("a red circle"), 12))
    minus = classes_of(
        engine.searcher.search(Query((Term(text="a red circle"), Term(text="a red square", weight=-0.5))), 12)
    )
    assert minus[:3] == ["red circle"] * 3  # the class asked for still comes first
    assert "red square" in plain[:5] and "red square" not in minus[:5]  # the excluded one goes down
    rank = minus.index("red square") if "red square" in minus else len(minus)  # absent: below them all
    assert rank > plain.index("red square")


def test_text_plus_image_terms(shapes) -> None:
    engine, _ = shapes
    from embedder.evaluation.synthetic import generate_classes

    held_out = next(s for s in generate_classes(1, seed=777) if s.label == "blue square")
    results = classes_of(engine.searcher.search(Query((Term(image=held_out.image), Term(text="a blue square"))), 4))
    assert results[0] == "blue square"
    assert all(c.startswith("blue") for c in results)


def test_filters_cut_results_exactly(shapes, tmp_path: Path) -> None:
    engine, root = shapes
    extra = tmp_path / "extra"
    extra.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2019:05:01 10:00:00"
    Image.open(next((root / "red circle").glob("*.jpg"))).save(extra / "old-red.png", exif=exif.tobytes())
    Image.open(next((root / "red circle").glob("*.jpg"))).resize((400, 400)).save(extra / "big.webp")
    engine.indexer.index([extra])

    def search(text: str, limit: int, where):
        return engine.searcher.search(Query.text(text, where=where), limit)

    assert {r.name for r in search("a red circle", limit=50, where=make_filter(types=["png"]))} == {"old-red.png"}
    assert {r.name for r in search("a red circle", limit=50, where=make_filter(folder=str(extra)))} == {"old-red.png", "big.webp"}
    in_2019 = make_filter(after=date(2019, 1, 1), before=date(2019, 12, 31))
    assert {r.name for r in search("a red circle", limit=50, where=in_2019)} == {"old-red.png"}
    assert {r.name for r in search("a red circle", limit=50, where=make_filter(min_width=300))} == {"big.webp"}
    assert len(search("a red circle", limit=500, where=make_filter(folder=str(root / "red circle")))) == 4


def test_near_duplicates_find_planted_copies_and_nothing_else(shapes, tmp_path: Path) -> None:
    engine, root = shapes
    copies = tmp_path / "copies"
    copies.mkdir()
    originals = [next((root / c).glob("*.jpg")) for c in ("red circle", "green star", "blue triangle", "yellow cross")]
    for i, original in enumerate(originals):
        image = Image.open(original)
        image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(copies / f"{i}.jpg", quality=60)
    engine.indexer.index([copies])
    groups = near_duplicate_groups(engine.store, TINY_MODEL_NEAR_DUPLICATE)
    found = sorted(sorted(Path(p["paths"][0]).name for p in g.payloads) for g in groups)
    planted = sorted(sorted([o.name, f"{i}.jpg"]) for i, o in enumerate(originals))
    assert found == planted
    for g in groups:  # and never two different classes in one group
        assert len({Path(p["paths"][0]).parent.name for p in g.payloads if "copies" not in p["paths"][0]}) == 1


def test_collapse_keeps_the_best_of_each_near_duplicate_set(shapes, tmp_path: Path) -> None:
    engine, root = shapes
    original = next((root / "red circle").glob("*.jpg"))
    (tmp_path / "dup").mkdir()
    Image.open(original).save(tmp_path / "dup" / "again.jpg", quality=70)
    engine.indexer.index([tmp_path / "dup"])
    results = engine.searcher.search(Query.text("a red circle"), 10)
    collapsed = engine.searcher.search(Query.text("a red circle", collapse=TINY_MODEL_NEAR_DUPLICATE), 9)
    ids = {r.id for r in collapsed}
    pair = [r for r in results if r.path in (str(original), str(tmp_path / "dup" / "again.jpg"))]
    assert len(pair) == 2 and len(ids & {r.id for r in pair}) == 1
    assert [r.score for r in collapsed] == sorted((r.score for r in collapsed), reverse=True)


def test_cli_terms_and_filters(shapes, monkeypatch, capsys) -> None:
    engine, root = shapes
    engine.close()
    s = engine.settings
    for key, value in {"EMBEDDER_MODEL": s.model, "QDRANT_PATH": str(s.qdrant_path), "EMBEDDER_DEVICE": "cpu"}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["search", "--json", "-k", "3", "--folder", str(root / "blue square"), "--", "a blue square", "-a red circle"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all("blue square" in h["path"] for h in hits)
    assert cli.main(["search", "--image", str(next((root / "green star").glob("*.jpg"))), "-k", "1", "--json"]) == 0
    assert "green star" in json.loads(capsys.readouterr().out)[0]["path"]
    assert cli.main(["duplicates", "--threshold", str(TINY_MODEL_NEAR_DUPLICATE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["search"]) == 1
    assert "at least one term" in capsys.readouterr().err


def test_an_image_gone_from_the_index_is_a_query_error(shapes) -> None:
    engine, _ = shapes
    gone = engine.searcher.search(Query.text("a red circle"), 1)[0]
    engine.store.delete([gone.id])
    with pytest.raises(QueryError, match=f"{gone.name} is no longer in the index"):
        engine.searcher.search(Query((Term(text="a red circle"), Term(point_id=gone.id, label=gone.name))))
    with pytest.raises(QueryError, match="no term"):
        engine.searcher.search(Query((Term(text="a red circle", weight=0),)))


def test_pages_fill_up_when_near_duplicates_are_collapsed(shapes, tmp_path: Path) -> None:
    engine, root = shapes
    copies = tmp_path / "copies"
    copies.mkdir()
    for i, original in enumerate(sorted((root / "red circle").glob("*.jpg"))):
        Image.open(original).save(copies / f"{i}.jpg", quality=60)  # every red circle twice
    engine.indexer.index([copies])
    calls: list[tuple[int, int]] = []
    real_query = engine.store.query

    def query(vector, limit, offset=0, **kw):
        calls.append((limit, offset))
        return real_query(vector, limit, offset, **kw)

    engine.store.query = query
    # By the picture alone: the words "red circle" are also the folders' names (a fused request).
    plain = engine.searcher.pages(Query.text("a red circle", only="picture")).first(5)[0]
    assert len(plain) == 5 and calls == [(5, 0)]
    pages = engine.searcher.pages(Query.text("a red circle", only="picture", collapse=TINY_MODEL_NEAR_DUPLICATE))
    first, more = pages.first(5)
    assert len(first) == 5 and more
    second, _ = pages.first(10)
    assert second[:5] == first  # paging never reshuffles what was shown
    red = [r for r in second if "red circle" in r.path or "copies" in r.path]
    assert len(red) == 4  # one of each pair of red circles, never both
    assert pages.hidden == 4
    assert len({r.id for r in second}) == 10
    everything, more = pages.first(1000)
    assert not more and len(everything) == engine.store.count() - 4


def test_folder_choices_are_image_folders_and_branch_points_below_the_common_one(shapes, tmp_path: Path) -> None:
    engine, root = shapes
    uploads = tmp_path / "uploads"
    report = engine.indexer.index_uploads(
        [("a.png", _png(Image.new("RGB", (64, 64), "red"))), ("b.png", _png(Image.new("RGB", (64, 64), "blue")))],
        uploads,
    )
    assert len(report.added) == 2, report.failed
    choices = folder_choices(engine.store, uploads)
    classes = sorted(str(p) for p in root.iterdir() if p.is_dir())
    assert choices == sorted([*classes, str(root), str(uploads)])  # not tmp_path: it holds every image


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_cli_collapse_still_gives_k_results(shapes, tmp_path: Path, monkeypatch, capsys) -> None:
    engine, root = shapes
    (tmp_path / "copies").mkdir()
    for i, original in enumerate(sorted((root / "red circle").glob("*.jpg"))):
        Image.open(original).save(tmp_path / "copies" / f"{i}.jpg", quality=60)
    engine.indexer.index([tmp_path / "copies"])
    engine.close()
    s = engine.settings
    env = {"EMBEDDER_MODEL": s.model, "QDRANT_PATH": str(s.qdrant_path), "EMBEDDER_DEVICE": "cpu",
           "DUPLICATE_THRESHOLD": str(TINY_MODEL_NEAR_DUPLICATE)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["search", "--json", "-k", "8", "--collapse", "a red circle"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 8
    red = [h for h in hits if "red circle" in h["path"] or "copies" in h["path"]]
    assert len(red) == 4
