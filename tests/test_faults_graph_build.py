"""Building the search graph aside (embedder/store/aside.py): searches and writes go on while a child
process builds a copy of the shard, every write made meanwhile is in the shard swapped in, and a
killed child or a crash at any moment of the swap leaves a store that opens and counts every point.

The child is held at a gate (a wrapper around embedder/store/graph_child.py that waits for a file
before building), so "while it builds" is a fact the test sets up, not a race it hopes to win.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from embedder.config import Settings
from embedder.query.filters import make_filter
from embedder.store import Point, SearchFilter
from embedder.store import aside
from embedder.store import edge as store_edge
from embedder.store.edge import ASIDE_DIR, SHARD_DIR, EdgeStore

pytest.importorskip("qdrant_edge")
pytestmark = pytest.mark.skipif(not aside.available(), reason="graphs are built aside on Linux only")

ROOT = Path(__file__).resolve().parent.parent
DIM = 64
DEADLINE_S = 120.0
GATED_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {child_dir!r})
    import graph_child
    graph_child.die_with(int(sys.argv[3]))
    gate = Path(os.environ["GRAPH_CHILD_GATE"])
    (gate / "started").write_text(str(os.getpid()))
    while not (gate / "go").exists():  # held until the test opens the gate
        time.sleep(0.01)
    sys.exit(graph_child.main(sys.argv))
    """
)


def pid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def vectors(n: int, seed: int = 3) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


DATA = vectors(1_000)


def points(start: int, stop: int) -> list[Point]:
    return [Point(pid(i), DATA[i], {"paths": [f"/p/{i}.jpg"], "format": "JPEG", "date": 1.6e9 + 3_600.0 * i})
            for i in range(start, stop)]


def varied(start: int, stop: int) -> list[Point]:
    """Points whose payloads differ (formats, days, folders), for filtered searches."""
    return [Point(pid(i), DATA[i], {"paths": [f"/p/{i % 7}/{i}.jpg"], "folders": ["/p", f"/p/{i % 7}"],
                                    "format": "PNG" if i % 3 == 0 else "JPEG",
                                    "date": 1.6e9 + 86_400.0 * (i % 40) + 3_600.0 * (i % 24) + i})  # no two alike
            for i in range(start, stop)]


QUERIES = vectors(12, seed=5)
FILTERS = [
    None,
    SearchFilter(formats=("PNG",)),
    make_filter(after=date(2020, 9, 20), before=date(2020, 9, 30)),  # days 18525-18535 of the 40 stored
    make_filter(folder="/p/3", types=("jpg",)),
]


def answers(store: EdgeStore) -> list[list[tuple[str, float]]]:
    """Every query's top 10 under every filter (ids in order, scores to 5 places), and browsing by date."""
    found = [[(h.id, round(h.score, 5)) for h in store.query(q, 10, where=f)] for q in QUERIES for f in FILTERS]
    return found + [[(h.id, 0.0) for h in store.newest(20, f)] for f in FILTERS]


def contents(store: EdgeStore) -> dict[str, tuple[dict, list[float]]]:
    """Every point's payload and vector."""
    return {i: (payload, vector.tolist()) for i, payload, vector in store.scroll(with_vectors=True)}


def wait_for(condition, what: str) -> None:
    """Wait for an event the test caused (a file written, a process gone), up to a deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def gone(process_id: int) -> bool:
    try:
        state = Path(f"/proc/{process_id}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # dead, waiting for its parent to collect it


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(qdrant_path=tmp_path / "qdrant", collection="images")


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Children start held: `gate/started` holds the child's pid once it runs; `gate/go` lets it build."""
    folder = tmp_path / "gate"
    folder.mkdir()
    wrapper = tmp_path / "gated_child.py"
    wrapper.write_text(GATED_CHILD.format(child_dir=str(aside.CHILD.parent)))
    monkeypatch.setattr(aside, "CHILD", wrapper)
    monkeypatch.setenv("GRAPH_CHILD_GATE", str(folder))
    monkeypatch.setattr(store_edge, "INDEXING_THRESHOLD_KB", 1)  # a graph for a few hundred points
    return folder


def building(store: EdgeStore, gate: Path) -> tuple[threading.Thread, list[bool]]:
    """`store.optimize(force=True)` in a thread, returned once its child is running and held at the gate."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(store.optimize(force=True)))
    thread.start()
    wait_for(lambda: (gate / "started").exists() or not thread.is_alive(), "the child to start")
    assert thread.is_alive(), "the build did not reach its child"
    return thread, result


def folders(settings: Settings) -> list[str]:
    return sorted(p.name for p in (settings.qdrant_path / "images").iterdir())


def test_searches_and_writes_go_on_while_the_graph_builds_and_no_write_is_lost(settings, gate) -> None:
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(points(0, 600))
        thread, result = building(store, gate)
        child = int((gate / "started").read_text())
        # The child holds the copy; this process answers and writes meanwhile.
        assert store.query(DATA[7], 1)[0].id == pid(7)
        assert store.count() == 600
        store.upsert(points(600, 700))
        store.delete([pid(1), pid(2), pid(650)])
        store.set_payload(pid(3), {"paths": ["/moved/3.jpg"], "format": "PNG", "date": 1.7e9})
        assert store.query(DATA[7], 1, where=SearchFilter(formats=("PNG",)))[0].id == pid(3)
        assert not gone(child), "the child finished before the writes: they were not made during the build"
        (gate / "go").touch()
        thread.join(DEADLINE_S)
        assert result == [True] and store.stats()["indexed"] > 0
        assert folders(settings) == ["collection.json", ASIDE_DIR]  # the built copy is live
        assert store.count() == 697
        assert store.retrieve([pid(1), pid(2), pid(650)]) == {}
        assert store.retrieve([pid(3)])[pid(3)] == {"paths": ["/moved/3.jpg"], "format": "PNG", "date": 1.7e9}
        for i in (0, 5, 599, 600, 699):  # written before and during the build: all in the built shard
            assert store.query(DATA[i], 1)[0].id == pid(i)
        store.upsert(points(700, 720))  # and the swapped-in shard takes writes
    assert folders(settings) == ["collection.json", SHARD_DIR]  # closing moved it back
    with EdgeStore(settings, "m", DIM) as store:  # every damage check on open passes
        assert store.count() == 717 and store.stats()["indexed"] > 0
        assert store.query(DATA[710], 1)[0].id == pid(710)


def test_searches_find_the_same_before_during_and_after_a_build_aside(settings, gate) -> None:
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(varied(0, 600))
        assert store.stats()["indexed"] == 0  # every segment is searched exactly: the reference
        before = answers(store)
        assert all(before[:len(FILTERS)]) and sum(map(len, before)) > 300  # every filter finds something
        thread, result = building(store, gate)
        assert answers(store) == before  # answered while the child holds its copy
        (gate / "go").touch()
        thread.join(DEADLINE_S)
        assert result == [True] and store.stats()["indexed"] == 600  # the graph and int8 vectors in use
        assert answers(store) == before
    with EdgeStore(settings, "m", DIM) as store:
        assert store.stats()["indexed"] == 600 and answers(store) == before


def test_a_killed_child_leaves_the_store_as_it_was_with_the_writes_made_meanwhile(settings, gate, caplog) -> None:
    with EdgeStore(settings, "m", DIM) as store:
        store.upsert(varied(0, 400))
        thread, result = building(store, gate)
        store.upsert(varied(400, 450))
        store.delete([pid(9)])
        store.set_payload(pid(10), {"paths": ["/moved/10.jpg"], "format": "PNG", "date": 1.7e9})
        as_it_was, found = contents(store), answers(store)
        os.kill(int((gate / "started").read_text()), signal.SIGKILL)
        thread.join(DEADLINE_S)
        assert result == [False]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith("Building the search graph aside failed")
        assert folders(settings) == ["collection.json", SHARD_DIR]  # its copy is gone
        assert store.stats()["indexed"] == 0 and contents(store) == as_it_was and answers(store) == found
        store.upsert(varied(450, 460))  # and it takes writes
    with EdgeStore(settings, "m", DIM) as store:  # reopened: as it was, with the write made after
        assert store.count() == 459 and answers(store) != found
        store.delete([pid(i) for i in range(450, 460)])
        assert contents(store) == as_it_was and answers(store) == found
        (gate / "go").touch()  # the next build goes through and finds the same
        assert store.optimize(force=True) and store.stats()["indexed"] > 0
        assert contents(store) == as_it_was and answers(store) == found


def test_the_child_dies_with_the_app_and_the_store_opens_after(settings, gate, tmp_path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_faults_graph_build import points, settings_at
        import embedder.store.edge as store_edge
        store_edge.INDEXING_THRESHOLD_KB = 1
        import embedder.store.aside as aside
        from pathlib import Path
        aside.CHILD = Path({str(aside.CHILD)!r})
        store = store_edge.EdgeStore(settings_at({str(settings.qdrant_path)!r}), "m", {DIM})
        store.upsert(points(0, 300))
        store.optimize(force=True)  # held at the gate until the test kills this process
        """
    )
    app = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: (gate / "started").exists() or app.poll() is not None, "the child to start")
        assert app.poll() is None
        child = int((gate / "started").read_text())
        app.kill()
        app.wait(DEADLINE_S)
        wait_for(lambda: gone(child), "the child to die with the app")
    finally:
        app.kill()
    with EdgeStore(settings, "m", DIM) as store:  # the unfinished copy is removed, every point is there
        assert folders(settings) == ["collection.json", SHARD_DIR]
        assert store.count() == 300


def settings_at(qdrant_path: str) -> Settings:
    return Settings(qdrant_path=Path(qdrant_path), collection="images")


CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_faults_graph_build import points, settings_at
    import embedder.store.aside as aside
    import embedder.store.edge as store_edge
    store_edge.INDEXING_THRESHOLD_KB = 1
    moment = sys.argv[1]

    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    if moment == "copying":  # half the files copied
        real_copy, copied = aside.copy_file, []
        def copy_file(source, dest):
            copied.append(source)
            if len(copied) == 10:
                die()
            return real_copy(source, dest)
        aside.copy_file = copy_file
    if moment == "building":  # the copy made, the child not yet back
        aside.Child.run = die
    if moment == "committed":  # the copy recorded as the live shard, the old one still there
        real_write = store_edge.EdgeStore._write_meta
        def write_meta(self, state):
            real_write(self, state)
            if self._live == store_edge.ASIDE_DIR:
                die()
        store_edge.EdgeStore._write_meta = write_meta
    if moment == "removing the old shard":  # part of it deleted
        real_remove = aside.remove_tree
        def remove_tree(folder):
            if folder.name == store_edge.SHARD_DIR and folder.exists():
                for path in sorted(p for p in folder.rglob("*") if p.is_file())[::2]:
                    path.unlink()
                die()
            real_remove(folder)
        aside.remove_tree = remove_tree
    if moment == "moving back on close":  # renamed, not yet recorded
        store_edge.fsync_folder = die

    store = store_edge.EdgeStore(settings_at({qdrant!r}), "m", {dim})
    store.upsert(points(0, 300))
    store.close()
    store = store_edge.EdgeStore(settings_at({qdrant!r}), "m", {dim})
    store.upsert(points(300, 320))
    store.delete([points(0, 1)[0].id])
    assert store.optimize(force=True)
    store.upsert(points(320, 330))
    store.close()
    """
)


@pytest.mark.parametrize("moment", ["copying", "building", "committed", "removing the old shard", "moving back on close"])
def test_a_crash_at_any_moment_of_a_build_leaves_a_store_that_opens_with_every_point(settings, moment, monkeypatch) -> None:
    script = CRASH.format(tests=str(Path(__file__).parent), qdrant=str(settings.qdrant_path), dim=DIM)
    run = subprocess.run([sys.executable, "-c", script, moment], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=DEADLINE_S)
    assert run.returncode == -signal.SIGKILL, run.stderr
    expected = 319 if moment != "moving back on close" else 329  # the writes after the swap went to the live shard
    record = json.loads((settings.qdrant_path / "images" / "collection.json").read_text())
    monkeypatch.setattr(store_edge, "INDEXING_THRESHOLD_KB", 1)
    with EdgeStore(settings, "m", DIM) as store:  # the damage checks pass, the leftovers are removed
        assert folders(settings) == ["collection.json", SHARD_DIR], record
        assert store.count() == expected
        assert store.retrieve([pid(0)]) == {} and set(store.retrieve([pid(1), pid(319)])) == {pid(1), pid(319)}
        assert store.query(DATA[310], 1)[0].id == pid(310)
        store.optimize(force=True)  # and it builds aside again (or has its graph already)
        assert store.stats()["indexed"] > 0 and store.count() == expected
    with EdgeStore(settings, "m", DIM) as store:
        assert store.count() == expected
