"""The text pass ("Reading text", embedder/indexing/text_pass.py) on a real Edge store with real OCR:
it follows an index job as a job of its own, resumes after its process goes away without reading
anything twice, fails alone on a picture the reader chokes on (keeping its picture vector), skips a
file that changed since it was indexed, and fills in the words of points stored before they had any
without encoding a picture again."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from embedder.engine import Engine
from embedder.errors import TextReadError
from embedder.indexing.lexicon import FIELDS, needs_words
from embedder.indexing.text_pass import NOT_READ, TextPass
from embedder.jobs.kinds import KINDS
from embedder.jobs.runner import JobRequest, JobRunner
from embedder.query.terms import Query
from modelkit import photo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import text_set  # noqa: E402

WORDS_ON_CARDS = ("ALPHA", "BRAVO", "CHARLIE", "DELTA")


def cards(folder: Path) -> list[Path]:
    """A card for each word, and two photos without text."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for word in WORDS_ON_CARDS:
        path = folder / f"card-{len(paths)}.png"
        text_set.card([word, "Meeting room 4"], width=640).save(path)
        paths.append(path)
    for n in range(2):
        path = folder / f"photo-{n}.jpg"
        photo(40 + n, (320, 240)).save(path, quality=92)
        paths.append(path)
    return paths


class Counting:
    """A reader that counts what it reads (and can fail on chosen pictures, or signal after the first)."""

    def __init__(self, reader, fail_on_width: int | None = None) -> None:
        self.reader, self.version = reader, reader.version
        self.read_sizes: list[tuple[int, int]] = []
        self.fail_on_width = fail_on_width
        self.first = threading.Event()

    def read(self, image):
        self.read_sizes.append(image.size)
        self.first.set()
        if image.size[0] == self.fail_on_width:
            raise TextReadError("the reader ran out of its time budget on this picture")
        return self.reader.read(image)


@pytest.fixture
def counting(engine: Engine) -> Counting:
    return Counting(engine.text_reader())


def text_pass(engine: Engine, reader) -> TextPass:
    return TextPass(engine.store, lambda: reader, engine.settings.max_image_pixels, engine.indexer.payload_lock)


def found_by(engine: Engine, word: str) -> list[str]:
    return [Path(r.path).name for r in engine.searcher.search(Query.text(word, only="text"), 10)]


def test_an_index_job_is_followed_by_a_reading_text_job_and_words_find_the_cards(engine: Engine, tmp_path: Path) -> None:
    paths = cards(tmp_path / "album")
    runner = engine.jobs
    runner.start(resume=False)
    job = runner.submit(JobRequest("index", (str(tmp_path / "album"),), "album"))
    assert runner.wait(job.id, 120).state == "done"
    assert runner.wait_idle(180)
    reading = [j for j in runner.history() if j.request.kind == "text"]
    assert len(reading) == 1 and reading[0].state == "done" and reading[0].request.doing == "Reading text"
    assert set(reading[0].report.read) == {str(p) for p in paths}
    assert len(reading[0].report.with_text) == len(WORDS_ON_CARDS)
    assert found_by(engine, "charlie") == ["card-2.png"]
    stored = engine.store.retrieve([r.id for r in engine.searcher.search(Query.text("charlie", only="text"), 1)])
    payload = next(iter(stored.values()))
    line = payload["text_lines"][0]
    assert line["text"] == "CHARLIE" and len(line["box"]) == 4 and 0 < line["confidence"] <= 1
    width, height = payload["text_size"]  # what the boxes are in: the picture as the reader saw it
    assert all(0 <= x <= width and 0 <= y <= height for x, y in line["box"])


def test_every_kind_of_job_is_one_entry_of_the_table() -> None:
    assert set(KINDS) == {"index", "uploads", "prune", "text"}
    assert KINDS["index"].then is not None and KINDS["text"].then is None


def test_a_text_job_stopped_with_its_process_resumes_and_reads_nothing_twice(
    engine: Engine, tmp_path: Path, counting: Counting
) -> None:
    paths = cards(tmp_path / "album")
    engine.indexer.index([tmp_path / "album"])
    journal = tmp_path / "jobs.json"
    slow = threading.Event()
    real_read = counting.read

    def read_then_wait(image):  # the first reading, then the process "goes away" while the next waits
        reading = real_read(image)
        if len(counting.read_sizes) == 1:
            slow.wait(5)
        return reading

    counting.read = read_then_wait  # type: ignore[method-assign]
    runner = JobRunner(engine.indexer, journal=journal, text_pass=text_pass(engine, counting))
    runner.submit(JobRequest("text", (str(tmp_path / "album"),), "Reading text: album"))
    runner.start()
    assert counting.first.wait(60)
    closing = threading.Thread(target=runner.close)
    closing.start()
    slow.set()
    closing.join(60)
    assert '"text"' in journal.read_text()  # unfinished: kept for the next start
    read_before = len(counting.read_sizes)
    assert 1 <= read_before < len(paths)

    again = JobRunner(engine.indexer, journal=journal, text_pass=text_pass(engine, counting))
    resumed = again.start()
    assert [j.request.kind for j in resumed] == ["text"]
    assert again.wait(resumed[0].id, 120).state == "done"
    again.close()
    assert len(counting.read_sizes) == len(paths)  # every picture read exactly once over both runs
    assert all(not needs_words(p) and p["text_reader"] == counting.version for p in engine.store.retrieve(
        [pid for pid, _, _ in engine.store.scroll()]).values())


def test_a_picture_the_reader_fails_on_fails_alone_keeps_its_vector_and_is_not_read_again(
    engine: Engine, tmp_path: Path, counting: Counting
) -> None:
    cards(tmp_path / "album")
    odd = tmp_path / "album" / "strip.png"
    text_set.card(["ECHO"], width=1500).save(odd)
    counting.fail_on_width = 1500
    engine.indexer.index([tmp_path / "album"])
    vectors = {pid: engine.store.vector(pid) for pid, _, _ in engine.store.scroll()}
    report = text_pass(engine, counting).run([tmp_path / "album"])
    assert [f.path for f in report.text_failed] == [str(odd)]
    assert report.text_failed[0].reason.startswith(NOT_READ) and "time budget" in report.text_failed[0].reason
    assert len(report.read) == len(WORDS_ON_CARDS) + 2 and report.failed == []
    assert found_by(engine, "delta") == ["card-3.png"]
    for pid, vector in vectors.items():
        np.testing.assert_array_equal(engine.store.vector(pid), vector)
    again = text_pass(engine, counting).run([tmp_path / "album"])
    assert again.read == [] and again.text_failed == []  # this reader tried it once: the next reader may


def test_a_file_changed_since_it_was_indexed_is_skipped_with_the_reason(
    engine: Engine, tmp_path: Path, counting: Counting
) -> None:
    paths = cards(tmp_path / "album")
    engine.indexer.index([tmp_path / "album"])
    photo(99, (320, 240)).save(paths[0], format="PNG")  # other bytes at the same path
    report = text_pass(engine, counting).run([tmp_path / "album"])
    assert [f.path for f in report.text_failed] == [str(paths[0])]
    assert report.text_failed[0].reason.startswith(NOT_READ)
    assert len(report.read) == len(paths) - 1


def test_points_stored_before_they_had_words_get_them_on_the_next_run_without_encoding_again(
    engine: Engine, tmp_path: Path, counting: Counting
) -> None:
    folder = tmp_path / "trip" / "grandmas-birthday"
    folder.mkdir(parents=True)
    photo(7, (320, 240)).save(folder / "cakeAndCandles_01.jpg", quality=92)
    engine.indexer.index([tmp_path / "trip"])
    for pid, payload, _ in list(engine.store.scroll()):  # as a store from before words were kept
        engine.store.set_payload(pid, {k: v for k, v in payload.items() if k not in FIELDS})
        engine.store.set_words({pid: None})
    assert found_by(engine, "candles") == []
    encoded: list[int] = []
    real_encode = engine.encoder.encode_images
    engine.encoder.encode_images = lambda images: encoded.append(len(images)) or real_encode(images)
    try:
        report = engine.indexer.index([tmp_path / "trip"])
    finally:
        del engine.encoder.encode_images
    assert encoded == [] and report.added == []
    hits = engine.searcher.search(Query.text("birthday candles"), 3)
    assert hits[0].name == "cakeAndCandles_01.jpg" and "name" in hits[0].matched


def test_odd_pictures_go_through_the_text_pass_alone_and_keep_their_picture_vectors(
    engine: Engine, tmp_path: Path, counting: Counting
) -> None:
    from PIL import Image

    folder = tmp_path / "odd"
    folder.mkdir()
    text_set.card(["FOXTROT"], width=640).convert("CMYK").save(folder / "cmyk.jpg", quality=92)
    sixteen = (np.asarray(text_set.card(["GOLF"], width=640).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(sixteen).save(folder / "sixteen.png")
    frames = [text_set.card(["HOTEL"], width=480), photo(3, (480, 200))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGB", (1, 20000), "white").save(folder / "strip.png")
    Image.new("RGB", (12, 9), "white").save(folder / "tiny.png")
    engine.indexer.index([folder])
    vectors = {pid: engine.store.vector(pid) for pid, _, _ in engine.store.scroll()}
    assert len(vectors) == 5
    report = text_pass(engine, counting).run([folder])
    assert len(report.read) + len(report.text_failed) == 5
    assert all(f.reason.startswith(NOT_READ) for f in report.text_failed)
    assert found_by(engine, "foxtrot") == ["cmyk.jpg"] and found_by(engine, "golf") == ["sixteen.png"]
    assert found_by(engine, "hotel") == ["animated.gif"]
    for pid, vector in vectors.items():
        np.testing.assert_array_equal(engine.store.vector(pid), vector)
