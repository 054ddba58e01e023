"""Concurrency: searches during indexing, two sessions indexing at once, a second process.

Within one process the app shares one Engine between browser sessions (threads). Searches while
indexing must only ever see whole points; two runs over overlapping folders must not double or
lose anything; a second process must be told the embedded store is in use and do no harm.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from embedder.engine import Engine
from embedder.media.images import file_hash, point_id
from embedder.indexing.indexer import Progress
from embedder.query.terms import Query
from faultkit import cli_env, distinct_folder, distinct_image, run_cli

WAIT_S = 60.0
HAMMER_SEARCHES = 200


class Crew:
    """Threads whose exceptions are kept and raised in the test, never lost in a thread."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, target, *args) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in join()
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def join(self) -> None:
        for thread in self.threads:
            thread.join(WAIT_S)
            assert not thread.is_alive(), "a thread did not finish in time"
        if self.errors:
            raise self.errors[0]


def check_hit(engine: Engine, hit) -> None:
    """A hit is a whole point: a payload with its own hash, paths that exist, this model."""
    payload = hit.payload
    assert payload.get("sha256") and hit.id == point_id(payload["sha256"]), payload
    assert payload["paths"] and all(os.path.exists(p) for p in payload["paths"]), payload
    assert payload["names"] and payload["model"] == engine.encoder.model_id


def files_by_hash(files: list[Path]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for path in files:
        out[file_hash(path)].add(str(path))
    return out


def test_searches_during_indexing_see_only_whole_points_and_never_fewer(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = distinct_folder(tmp_path / "photos", 60)
    monkeypatch.setattr(engine.encoder, "batch_size", 4)
    crew = Crew()
    stored = threading.Event()
    searched = threading.Event()
    finished = threading.Event()
    lockstep: list[int] = []

    def after_each_batch(p: Progress) -> None:
        # Hand over to the searcher after every stored batch and wait until it has looked.
        searched.clear()
        stored.set()
        assert searched.wait(WAIT_S), "the searcher never looked"

    def index() -> None:
        try:
            engine.indexer.index([tmp_path / "photos"], on_progress=after_each_batch)
        finally:
            finished.set()
            stored.set()

    free_counts: list[int] = []

    def hammer() -> None:  # free-running, no handshake: real overlap with the writes (capped: it starves the GIL)
        while not finished.is_set() and len(free_counts) < HAMMER_SEARCHES:
            hits = engine.searcher.search(Query.text("a red square"), 100)
            for hit in hits:
                check_hit(engine, hit)
            free_counts.append(len(hits))

    crew.start(index)
    crew.start(hammer)
    while not finished.is_set():
        assert stored.wait(WAIT_S), "indexing stalled"
        stored.clear()
        if finished.is_set():
            break
        hits = engine.searcher.search(Query.text("a photo"), 100)
        for hit in hits:
            check_hit(engine, hit)
        lockstep.append(len(hits))
        assert engine.store.count() == len(hits)
        searched.set()
    crew.join()

    assert lockstep == sorted(lockstep) and 0 < lockstep[0] < 60  # seen partway, never shrinking
    assert len(lockstep) >= 60 // 4 - 1
    assert free_counts == sorted(free_counts) and len(free_counts) > 1
    assert engine.store.count() == len(engine.searcher.search(Query.text("anything"), 100)) == len(files)


def overlapping_album(root: Path) -> tuple[list[Path], list[Path]]:
    """X: images 0..39. Y: images 20..59 (20..39 are the same bytes as in X) plus copies of 0..9."""
    x = [root / "X" / f"x{i:02d}.png" for i in range(40)]
    y = [root / "Y" / f"y{i:02d}.png" for i in range(20, 60)] + [root / "Y" / "copies" / f"c{i:02d}.png" for i in range(10)]
    for i, path in enumerate(x):
        path.parent.mkdir(parents=True, exist_ok=True)
        distinct_image(i).save(path)
    for path in y:
        path.parent.mkdir(parents=True, exist_ok=True)
        i = int(path.stem[1:])
        path.write_bytes(x[i].read_bytes()) if i < 40 else distinct_image(i).save(path)
    return x, y


@pytest.mark.slow
def test_two_sessions_indexing_overlapping_folders_at_once_double_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = overlapping_album(tmp_path / "album")
    monkeypatch.setattr(engine.encoder, "batch_size", 4)
    start = threading.Barrier(2, timeout=WAIT_S)
    crew = Crew()
    reports = {}

    def session(name: str, roots: list[Path]) -> None:
        start.wait()
        reports[name] = engine.indexer.index(roots)

    crew.start(session, "one", [tmp_path / "album" / "X"])
    crew.start(session, "two", [tmp_path / "album"])  # X again, and Y
    crew.join()

    expected = files_by_hash(x + y)
    assert len(expected) == 60
    points = list(engine.store.scroll())
    assert engine.store.count() == len(points) == 60
    assert {p["sha256"] for _, p, _ in points} == set(expected)
    for pid, payload, _ in points:
        assert pid == point_id(payload["sha256"])
        assert len(payload["paths"]) == len(set(payload["paths"]))
        assert set(payload["paths"]) <= expected[payload["sha256"]]  # nothing foreign, no garbage
    assert not reports["one"].failed and not reports["two"].failed
    # After both, a plain re-run repairs any path a race left out, and adds nothing.
    again = engine.indexer.index([tmp_path / "album"])
    assert again.added == [] and engine.store.count() == 60
    assert {p["sha256"]: set(p["paths"]) for _, p, _ in engine.store.scroll()} == expected


def test_two_sessions_racing_on_the_same_new_images_keep_every_path(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scripted interleaving of the race above: both sessions look up the same images before either
    stores them; the session over the whole album finishes first; the one over X writes last."""
    x, y = overlapping_album(tmp_path / "album")
    looked = threading.Barrier(2, timeout=WAIT_S)
    whole_done = threading.Event()
    first_lookup: set[str] = set()
    real_retrieve, real_encode = engine.store.retrieve, engine.encoder.encode_images

    def retrieve(ids):
        name = threading.current_thread().name
        if name not in first_lookup:
            first_lookup.add(name)
            looked.wait()  # both runs have hashed everything and asked what is already stored
        return real_retrieve(ids)

    def encode_images(images):
        if threading.current_thread().name == "only-X":
            assert whole_done.wait(WAIT_S)
        return real_encode(images)

    monkeypatch.setattr(engine.store, "retrieve", retrieve)
    monkeypatch.setattr(engine.encoder, "encode_images", encode_images)
    errors: list[BaseException] = []

    def run(roots: list[Path], done: threading.Event | None) -> None:
        try:
            engine.indexer.index(roots)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            if done:
                done.set()

    threads = [
        threading.Thread(target=run, args=([tmp_path / "album" / "X"], None), name="only-X", daemon=True),
        threading.Thread(target=run, args=([tmp_path / "album"], whole_done), name="whole", daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors and not any(t.is_alive() for t in threads)
    assert engine.store.count() == 60
    expected = files_by_hash(x + y)
    stored = {p["sha256"]: set(p["paths"]) for _, p, _ in engine.store.scroll()}
    lost = {h: expected[h] - stored[h] for h in expected if expected[h] - stored[h]}
    assert lost == {}, f"{sum(map(len, lost.values()))} paths lost, e.g. {sorted(next(iter(lost.values())))}"


@pytest.mark.slow
def test_a_second_process_is_told_the_store_is_in_use_and_the_owner_keeps_working(
    engine: Engine, tmp_path: Path, model_path: Path, reopen
) -> None:
    distinct_folder(tmp_path / "before", 4)
    engine.indexer.index([tmp_path / "before"])
    env = cli_env(tmp_path, model_path, QDRANT_PATH=str(engine.settings.qdrant_path))

    other = run_cli(env, "info")

    assert other.returncode == 1 and other.stdout == ""
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in other.stderr, other.stderr
    assert lines[0].startswith("error: The storage folder") and "in use" in lines[0]
    assert f"process {os.getpid()}" in lines[0] and "QDRANT_URL" in lines[0]
    # The owner is unharmed: it writes and reads as before.
    distinct_folder(tmp_path / "after", 6, start=100)
    report = engine.indexer.index([tmp_path / "after"])
    assert len(report.added) == 6 and engine.store.count() == 10
    assert len(engine.searcher.search(Query.text("a photo"), 20)) == 10
    engine.close()
    again = reopen()
    try:
        assert again.store.count() == 10
    finally:
        again.close()


def embedded_backends() -> list:
    """Every embedded store the product may open: the default (`open_store`) and the fallback
    qdrant-client local mode, used when qdrant-edge-py is missing."""
    from embedder.store import QdrantStore, open_store

    return [
        pytest.param(open_store, 1, 8, id="default"),  # locks by design: one short pass shows it (each write is fsynced)
        pytest.param(QdrantStore.embedded, 3, 15, id="local-mode-fallback"),  # three passes: it cannot pass by luck
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("opener", "attempts", "rounds"), embedded_backends())
def test_concurrent_writes_and_reads_on_one_embedded_store_stay_consistent(settings, opener, attempts: int, rounds: int) -> None:
    """Four sessions writing (their own points and one shared point each time) and reading at once."""
    import numpy as np

    from embedder.store import Point

    threads, batch, dim = 4, 4, 8
    for attempt in range(attempts):
        store = opener(replace(settings, qdrant_path=settings.qdrant_path / f"try{attempt}"), "m", dim)
        crew = Crew()
        start = threading.Barrier(threads, timeout=WAIT_S)

        def session(t: int) -> None:
            rng = np.random.default_rng(t)
            start.wait()
            for i in range(rounds):
                own = [
                    Point(str(uuid.UUID(int=1 + (t * rounds + i) * batch + j)), rng.random(dim).astype(np.float32), {"paths": [f"/{t}/{i}/{j}"]})
                    for j in range(batch)
                ]
                shared = Point(str(uuid.UUID(int=10**9 + i)), rng.random(dim).astype(np.float32), {"paths": ["/shared"]})
                store.upsert(own + [shared])
                for hit in store.query(rng.random(dim).astype(np.float32), limit=5):
                    assert hit.payload.get("paths"), hit

        try:
            for t in range(threads):
                crew.start(session, t)
            crew.join()
            ids = [pid for pid, _, _ in store.scroll()]
            assert len(ids) == len(set(ids)) == store.count() == threads * rounds * batch + rounds
        finally:
            store.close()
