"""The embedded store on Qdrant Edge, against real Edge folders, side by side with qdrant-client local mode.

Every behaviour test runs on both backends (`edge` and `local`): the rest of the product must not be
able to tell them apart. Edge-only tests cover its folder layout, the model record, the lock taken
before Edge opens anything, durability after a killed process, HNSW and migration from local mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedder.config import Settings
from embedder.errors import CollectionMismatchError, StoreError, StoreInUseError
from embedder.store import VISUAL, FolderLock, ImageStore, Point, QdrantStore, SearchFilter, open_store
from embedder.store.memory import MemoryStore
from embedder.store.edge import META_NAME, SHARD_DIR, EdgeStore, is_local_mode_folder
from embedder.store.migrate import add_visual_vector, migrate_local

pytest.importorskip("qdrant_edge")

ROOT = Path(__file__).resolve().parent.parent


def unit(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def pid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def point(n: int, vector, **payload) -> Point:
    base = {"paths": [f"/p/{n}.jpg"], "folders": ["/", "/p"], "format": "JPEG", "width": 100, "height": 100, "date": float(n)}
    return Point(pid(n), unit(vector), {**base, **payload})


def opener(backend: str):
    memory = lambda settings, model_id, dim, visual=None: MemoryStore(model_id, dim, visual=visual)  # noqa: E731
    return {"edge": EdgeStore, "local": QdrantStore.embedded, "memory": memory}[backend]


@pytest.fixture(params=["edge", "local", "memory"])
def backend(request) -> str:
    return request.param


@pytest.fixture(params=["edge", "local"])
def on_disk(request) -> str:
    """The backends that keep a folder: reopening, the model check and the folder lock are theirs."""
    return request.param


@pytest.fixture
def store(backend: str, settings: Settings):
    s = opener(backend)(settings, "m", 4)
    yield s
    s.close()


DAY = 86_400
# Four points a day over ten days, at the day's edges: midnight, just after, noon, its last millisecond
# (2**-10 s before midnight: exact in binary, so every backend stores the same number).
TIMES_OF_DAY = (0.0, 1.0, 43_200.5, DAY - 2**-10)


def sample_date(n: int) -> float:
    return (n // 4) * DAY + TIMES_OF_DAY[n % 4]


def sample_points() -> list[Point]:
    rng = np.random.default_rng(7)
    points = []
    for n in range(40):
        fmt = "PNG" if n % 4 == 0 else "JPEG"
        folders = ["/", "/p", "/p/q"] if n % 3 == 0 else ["/", "/p"]
        tags = [t for t, every in (("cat", 2), ("sofa", 5), ("red", 3)) if n % every == 0]
        extra = {"tags": tags} if n % 7 else {}  # some points were stored before tags existed
        sizes = {"width": 50 * n, "height": 30 * n, "date": sample_date(n)}
        points.append(point(n, rng.normal(size=4), format=fmt, folders=folders, **sizes, **extra))
    return points


FILTERS = [
    None,
    SearchFilter(),
    SearchFilter(formats=("PNG",)),
    SearchFilter(formats=("PNG", "JPEG")),
    SearchFilter(folder="/p/q"),
    SearchFilter(folder="/p/q/"),
    SearchFilter(date_from=DAY, date_to=3 * DAY + 43_200.5),  # seconds, as stored
    SearchFilter(date_to=0.5),
    SearchFilter(day_from=2, day_to=4),  # days on the camera's clock: the date filter
    SearchFilter(day_from=3, day_to=3),  # one day, its last millisecond included
    SearchFilter(day_to=1),
    SearchFilter(day_from=8),
    SearchFilter(day_from=2, day_to=6, min_width=500, formats=("JPEG",)),
    SearchFilter(day_from=5, day_to=4),  # an empty range
    SearchFilter(min_width=1000),
    SearchFilter(min_height=600, formats=("JPEG",)),
    SearchFilter(exclude_ids=(pid(1), pid(2), pid(3))),
    SearchFilter(folder="/nowhere"),
    SearchFilter(tags=("cat",)),
    SearchFilter(tags=("cat", "sofa")),  # all of them
    SearchFilter(tags=("sofa",), formats=("PNG",)),
    SearchFilter(tags=("unknown",)),
]


# --- the same behaviour on both backends --------------------------------------------------------


def test_open_store_picks_edge_for_the_embedded_default(settings: Settings) -> None:
    with open_store(settings, "m", 3) as store:
        assert isinstance(store, EdgeStore)
        assert (store.mode, store.location, store.collection) == ("embedded", str(settings.qdrant_path), "images")
    assert (settings.qdrant_path / "images" / SHARD_DIR / "edge_config.json").is_file()


def test_query_orders_by_cosine_pages_and_thresholds(store: ImageStore) -> None:
    store.upsert([point(1, [1, 0, 0, 0]), point(2, [1, 1, 0, 0]), point(3, [0, 1, 0, 0])])
    hits = store.query(unit([1, 0, 0, 0]), limit=3)
    assert [h.id for h in hits] == [pid(1), pid(2), pid(3)]
    assert [h.score for h in hits] == pytest.approx([1.0, np.sqrt(0.5), 0.0], abs=1e-5)
    assert hits[0].payload["paths"] == ["/p/1.jpg"]
    assert [h.id for h in store.query(unit([1, 0, 0, 0]), limit=1, offset=1)] == [pid(2)]
    assert [h.id for h in store.query(unit([1, 0, 0, 0]), limit=3, score_threshold=0.5)] == [pid(1), pid(2)]


def test_upsert_retrieve_set_payload_vector_scroll_delete_count(store: ImageStore) -> None:
    store.upsert([point(1, [1, 0, 0, 0]), point(2, [0, 1, 0, 0]), point(3, [0, 0, 1, 0])])
    assert store.count() == 3
    assert store.retrieve([]) == {}
    got = store.retrieve([pid(1), pid(99)])
    assert list(got) == [pid(1)] and got[pid(1)]["paths"] == ["/p/1.jpg"] and got[pid(1)]["date"] == 1.0
    store.set_payload(pid(1), {"paths": ["/new.jpg"], "taken_at": None, "names": ["new.jpg"]})
    assert store.retrieve([pid(1)]) == {pid(1): {"paths": ["/new.jpg"], "taken_at": None, "names": ["new.jpg"]}}
    assert np.allclose(store.vector(pid(2)), unit([0, 1, 0, 0]), atol=1e-6)
    assert store.vector(pid(99)) is None
    store.upsert([point(2, [0, 0, 0, 1], paths=["/again.jpg"])])  # an upsert replaces vector and payload
    assert np.allclose(store.vector(pid(2)), unit([0, 0, 0, 1]), atol=1e-6)
    assert store.retrieve([pid(2)])[pid(2)]["paths"] == ["/again.jpg"] and store.count() == 3
    rows = sorted(store.scroll(with_vectors=True))
    assert [r[0] for r in rows] == [pid(1), pid(2), pid(3)] and rows[2][2].shape == (4,)
    assert all(v is None for _, _, v in store.scroll())
    store.delete([pid(1), pid(99)])
    store.delete([])
    assert store.count() == 2 and store.retrieve([pid(1)]) == {}


def test_scroll_pages_through_many_points(store: ImageStore) -> None:
    rng = np.random.default_rng(1)
    store.upsert([point(n, rng.normal(size=4)) for n in range(600)])  # more than two scroll pages
    ids = [i for i, _, _ in store.scroll()]
    assert len(ids) == len(set(ids)) == 600


@pytest.mark.parametrize("where", FILTERS, ids=repr)
def test_filters_give_the_same_hits_as_qdrant_client(settings: Settings, tmp_path: Path, where) -> None:
    points = sample_points()
    query = unit([0.3, -0.2, 0.9, 0.1])
    results = {}
    for backend in ("edge", "local", "memory"):
        with opener(backend)(replace(settings, qdrant_path=tmp_path / backend), "m", 4) as store:
            store.upsert(points)
            hits = store.query(query, limit=50, where=where)
            results[backend] = [(h.id, round(h.score, 5), h.payload) for h in hits]
            assert [h.id for h in store.newest(50, where)] == [h.id for h in sorted(hits, key=lambda h: -h.payload["date"])]
    assert results["edge"] == results["local"] == results["memory"]
    expected = [p for p in points if matches(p, where)]
    assert sorted(i for i, _, _ in results["edge"]) == sorted(p.id for p in expected)
    assert all(payload == next(p.payload for p in points if p.id == i) for i, _, payload in results["edge"])


@pytest.mark.parametrize("where", [w for w in FILTERS if w and (w.day_from is not None or w.day_to is not None)], ids=repr)
def test_points_stored_before_the_day_field_are_found_by_their_date(settings: Settings, tmp_path: Path, where) -> None:
    """Half the points written as an older version wrote them (no `day`): each backend still finds
    exactly the points of those days, before and after `fill_days` gives them theirs."""
    from qdrant_edge import Point as EdgePoint
    from qdrant_edge import UpdateOperation
    from qdrant_client import models

    points = sample_points()
    query = unit([0.3, -0.2, 0.9, 0.1])
    expected = sorted(p.id for p in points if matches(p, where))
    for backend in ("edge", "local"):
        with opener(backend)(replace(settings, qdrant_path=tmp_path / backend), "m", 4) as store:
            store.upsert(points[::2])
            old = points[1::2]
            if backend == "edge":
                with store._edge() as shard:  # as the shard was written before the field existed
                    shard.update(UpdateOperation.upsert_points([EdgePoint(p.id, p.vector.tolist(), p.payload) for p in old]))
            else:
                store._client.upsert("images", [models.PointStruct(id=p.id, vector=p.vector.tolist(), payload=p.payload)
                                                for p in old], wait=True)
        with opener(backend)(replace(settings, qdrant_path=tmp_path / backend), "m", 4) as store:
            before = [(h.id, round(h.score, 5)) for h in store.query(query, limit=50, where=where)]
            assert sorted(i for i, _ in before) == expected
            assert store.fill_days() == len(old)
            assert store.fill_days() == 0
            after = [(h.id, round(h.score, 5)) for h in store.query(query, limit=50, where=where)]
            assert after == before
            assert store.retrieve([old[0].id])[old[0].id] == old[0].payload  # the derived field stays the store's


def matches(p: Point, where: SearchFilter | None) -> bool:
    if where is None:
        return True
    pl = p.payload
    return (
        (not where.folder or (where.folder.rstrip("/") or "/") in pl["folders"])
        and (not where.formats or pl["format"] in where.formats)
        and (where.date_from is None or pl["date"] >= where.date_from)
        and (where.date_to is None or pl["date"] <= where.date_to)
        and (where.day_from is None or pl["date"] >= where.day_from * DAY)
        and (where.day_to is None or pl["date"] < (where.day_to + 1) * DAY)
        and (not where.min_width or pl["width"] >= where.min_width)
        and (not where.min_height or pl["height"] >= where.min_height)
        and p.id not in where.exclude_ids
        and set(where.tags) <= set(pl.get("tags", []))
    )


def test_facet_counts_each_tag_inside_the_store_with_filters(store: ImageStore) -> None:
    points = sample_points()
    store.upsert(points)
    expected: dict[str, int] = {}
    for p in points:
        for tag in p.payload.get("tags", []):
            expected[tag] = expected.get(tag, 0) + 1
    counts = store.facet("tags")
    assert counts == expected and list(counts) == sorted(expected, key=lambda t: (-expected[t], t))
    png = [p for p in points if p.payload["format"] == "PNG"]
    png_cats = sum("cat" in p.payload.get("tags", []) for p in png)
    assert store.facet("tags", SearchFilter(formats=("PNG",)))["cat"] == png_cats
    assert store.facet("tags", SearchFilter(folder="/nowhere")) == {}
    for p in points:  # a tag no image holds any more is not counted (Edge keeps it with a count of 0)
        if "red" in p.payload.get("tags", []):
            store.set_payload(p.id, {**p.payload, "tags": [t for t in p.payload["tags"] if t != "red"]})
    assert "red" not in store.facet("tags") and store.facet("tags")["cat"] == expected["cat"]


def test_data_survives_reopen(on_disk: str, settings: Settings) -> None:
    with opener(on_disk)(settings, "m", 4) as store:
        store.upsert([point(1, [1, 0, 0, 0]), point(2, [0, 1, 0, 0])])
        store.set_payload(pid(2), {"paths": ["/moved.jpg"]})
        store.delete([pid(1)])
    with opener(on_disk)(settings, "m", 4) as store:
        assert store.count() == 1
        assert store.retrieve([pid(2)]) == {pid(2): {"paths": ["/moved.jpg"]}}
        assert store.query(unit([0, 1, 0, 0]), 1)[0].id == pid(2)


def test_another_model_or_size_is_refused_with_the_fix(on_disk: str, settings: Settings) -> None:
    opener(on_disk)(settings, "model-a", 3).close()
    with pytest.raises(CollectionMismatchError, match="model-a.*EMBEDDER_MODEL.*QDRANT_COLLECTION"):
        opener(on_disk)(settings, "model-b", 3)
    with pytest.raises(CollectionMismatchError, match="3-d"):
        opener(on_disk)(settings, "model-a", 4)
    opener(on_disk)(replace(settings, collection="other"), "model-b", 4).close()
    opener(on_disk)(settings, "model-a", 3).close()  # the refusals left the collection as it was
    FolderLock(settings.qdrant_path).release()  # and let go of the folder


def test_mismatch_messages_are_the_same_on_both_backends(settings: Settings, tmp_path: Path) -> None:
    messages = {}
    for backend in ("edge", "local"):
        s = replace(settings, qdrant_path=tmp_path / backend)
        opener(backend)(s, "model-a", 3).close()
        with pytest.raises(CollectionMismatchError) as info:
            opener(backend)(s, "model-b", 5)
        messages[backend] = str(info.value)
    assert messages["edge"] == messages["local"]


def test_a_second_opener_in_this_process_is_refused_and_the_owner_keeps_working(on_disk: str, settings: Settings) -> None:
    with opener(on_disk)(settings, "m", 4) as owner:
        with pytest.raises(StoreInUseError, match="in use"):
            opener(on_disk)(settings, "m", 4)
        owner.upsert([point(1, [1, 0, 0, 0])])
        assert owner.count() == 1


# --- Edge only ------------------------------------------------------------------------------------


def test_layout_and_model_record(settings: Settings) -> None:
    with EdgeStore(settings, "clip-x", 4) as store:
        store.upsert([point(1, [1, 0, 0, 0])])
    folder = settings.qdrant_path / "images"
    meta = json.loads((folder / META_NAME).read_text())
    assert meta["model"] == "clip-x" and meta["dim"] == 4 and meta["engine"] == "qdrant-edge"
    assert (folder / SHARD_DIR / "segments").is_dir()


def test_payload_indexes_exist_for_the_filter_fields(settings: Settings) -> None:
    with EdgeStore(settings, "m", 4) as store:
        schema = store._shard.info().payload_schema
    assert {"paths", "folders", "format", "tags", "date", "bytes", "width", "height"} <= set(schema)


def test_an_unlabelled_empty_collection_is_adopted_and_a_filled_one_refused(settings: Settings) -> None:
    with EdgeStore(settings, "m", 4):
        pass
    meta = settings.qdrant_path / "images" / META_NAME
    meta.unlink()
    with EdgeStore(settings, "m", 4):
        pass
    assert json.loads(meta.read_text())["model"] == "m"
    with EdgeStore(settings, "m", 4) as store:
        store.upsert([point(1, [1, 0, 0, 0])])
    meta.unlink()
    with pytest.raises(StoreError, match="images/collection.json is missing"):
        EdgeStore(settings, "m", 4)


@pytest.mark.parametrize("how", ["garbage", "emptied"])
def test_a_damaged_record_is_one_clear_message(settings: Settings, how: str) -> None:
    EdgeStore(settings, "m", 4).close()
    meta = settings.qdrant_path / "images" / META_NAME
    meta.write_bytes(b"\x00garbage\xff" if how == "garbage" else b"")
    with pytest.raises(StoreError) as info:
        EdgeStore(settings, "m", 4)
    text = str(info.value)
    assert "damaged" in text and str(settings.qdrant_path) in text and "\n" not in text
    FolderLock(settings.qdrant_path).release()


def test_the_lock_is_taken_before_edge_opens_the_shard(settings: Settings, monkeypatch) -> None:
    """A second opener must never reach Edge: its failed open would break the owner's flushes."""
    import qdrant_edge

    with EdgeStore(settings, "m", 4) as owner:
        def boom(*a, **k):
            raise AssertionError("Edge was opened while another owner holds the folder")

        monkeypatch.setattr(qdrant_edge.EdgeShard, "load", boom)
        monkeypatch.setattr(qdrant_edge.EdgeShard, "create", boom)
        with pytest.raises(StoreInUseError):
            EdgeStore(settings, "m", 4)
        monkeypatch.undo()
        owner.upsert([point(1, [1, 0, 0, 0])])
        assert owner.count() == 1


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )


def test_another_process_gets_in_use_and_the_owner_still_flushes_and_reopens(settings: Settings) -> None:
    owner = EdgeStore(settings, "m", 4)
    owner.upsert([point(1, [1, 0, 0, 0])])
    other = run_python(
        """
        import os
        from pathlib import Path
        from embedder.config import Settings
        from embedder.errors import StoreInUseError
        from embedder.store.edge import EdgeStore
        try:
            EdgeStore(Settings(qdrant_path=Path(os.environ["QP"])), "m", 4)
        except StoreInUseError as exc:
            print("IN USE:", exc)
        """,
        QP=str(settings.qdrant_path),
    )
    assert other.returncode == 0 and "IN USE:" in other.stdout and f"process {os.getpid()}" in other.stdout, other.stderr
    owner.upsert([point(2, [0, 1, 0, 0])])
    owner.close()
    with EdgeStore(settings, "m", 4) as again:
        assert again.count() == 2


def test_a_killed_process_loses_nothing_it_had_stored(settings: Settings) -> None:
    """Each upsert batch is flushed before it returns; a SIGKILL right after loses none of it."""
    killed = run_python(
        """
        import os, signal
        import numpy as np
        from pathlib import Path
        from embedder.config import Settings
        from embedder.store import Point
        from embedder.store.edge import EdgeStore
        store = EdgeStore(Settings(qdrant_path=Path(os.environ["QP"])), "m", 4)
        for batch in range(3):
            store.upsert([Point(f"00000000-0000-0000-0000-{batch * 10 + i:012d}", np.ones(4, np.float32), {"b": batch})
                          for i in range(10)])
        store.set_payload("00000000-0000-0000-0000-000000000001", {"b": "moved"})
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        QP=str(settings.qdrant_path),
    )
    assert killed.returncode == -9, killed.stderr
    with EdgeStore(settings, "m", 4) as store:  # the dead process's lock went with it
        assert store.count() == 30
        assert store.retrieve([pid(1)]) == {pid(1): {"b": "moved"}}


def test_small_stores_stay_on_exact_search(settings: Settings) -> None:
    rng = np.random.default_rng(4)
    with EdgeStore(settings, "m", 8) as store:
        store.upsert([Point(pid(i), unit(v), {}) for i, v in enumerate(rng.normal(size=(2000, 8)))])
        store.optimize(force=True)
        assert store.stats() == {"segments": store.stats()["segments"], "points": 2000, "indexed": 0}


def test_optimize_builds_hnsw_when_asked_or_worth_it_and_results_stay_right(settings: Settings, monkeypatch) -> None:
    monkeypatch.setattr("embedder.store.edge.INDEXING_THRESHOLD_KB", 10)  # a graph even for a small store
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    with EdgeStore(settings, "m", 8) as store:
        store.upsert([Point(pid(i), unit(v), {"format": "JPEG" if i % 2 else "PNG"}) for i, v in enumerate(vectors)])
        assert store.optimize() is False  # too few new points to be worth a graph
        exact = [h.id for h in store.query(unit(vectors[5]), 10, exact=True)]
        store.optimize(force=True)
        assert store.stats()["points"] == 3000 and store.stats()["indexed"] == 3000
        assert [h.id for h in store.query(unit(vectors[5]), 10)][0] == pid(5)
        assert len(set(exact) & {h.id for h in store.query(unit(vectors[5]), 10)}) >= 9
        filtered = store.query(unit(vectors[5]), 10, where=SearchFilter(formats=("PNG",)))
        assert len(filtered) == 10 and all(h.payload["format"] == "PNG" for h in filtered)
    with EdgeStore(settings, "m", 8) as store:
        assert store.count() == 3000


def test_a_closed_store_says_so(settings: Settings) -> None:
    store = EdgeStore(settings, "m", 4)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.count()


# --- migration from qdrant-client local mode ----------------------------------------------------


def test_a_local_mode_folder_is_refused_with_the_way_out(settings: Settings) -> None:
    with QdrantStore.embedded(settings, "m", 4) as old:
        old.upsert([point(1, [1, 0, 0, 0])])
    assert is_local_mode_folder(settings.qdrant_path)
    with pytest.raises(StoreError, match="local mode.*migrate") as info:
        open_store(settings, "m", 4)
    assert "\n" not in str(info.value)
    FolderLock(settings.qdrant_path).release()


def test_migration_keeps_every_point_payload_and_model_and_a_backup(settings: Settings) -> None:
    points = sample_points()
    with QdrantStore.embedded(settings, "clip-a", 4) as old:
        old.upsert(points)
        expected = [(h.id, round(h.score, 5)) for h in old.query(unit([1, 2, 3, 4]), 10, where=SearchFilter(formats=("PNG",)))]
    with QdrantStore.embedded(replace(settings, collection="second"), "clip-b", 3) as old:
        old.upsert([point(1, [1, 0, 0])])

    assert migrate_local(settings) == {"images": 40, "second": 1}

    assert not is_local_mode_folder(settings.qdrant_path)
    assert list(settings.qdrant_path.glob("local-mode-backup-*/meta.json"))
    with open_store(settings, "clip-a", 4) as store:
        assert store.count() == 40
        assert store.retrieve([pid(4)])[pid(4)] == points[4].payload
        got = [(h.id, round(h.score, 5)) for h in store.query(unit([1, 2, 3, 4]), 10, where=SearchFilter(formats=("PNG",)))]
        assert got == expected
    with pytest.raises(CollectionMismatchError):
        open_store(replace(settings, collection="second"), "clip-a", 3)
    with open_store(replace(settings, collection="second"), "clip-b", 3) as store:
        assert store.count() == 1


def test_migration_refuses_a_folder_in_use_or_not_local_mode(settings: Settings) -> None:
    with pytest.raises(StoreError, match="nothing to migrate"):
        migrate_local(settings)
    with QdrantStore.embedded(settings, "m", 4) as old:
        old.upsert([point(1, [1, 0, 0, 0])])
        with pytest.raises(StoreInUseError):
            migrate_local(settings)
    assert is_local_mode_folder(settings.qdrant_path)


def test_newest_orders_by_date_inside_the_store_and_filters(store: ImageStore) -> None:
    store.upsert(sample_points())
    newest = store.newest(5)
    assert [h.payload["date"] for h in newest] == [sample_date(n) for n in (39, 38, 37, 36, 35)]
    assert all(h.score == 0.0 for h in newest)
    pngs = store.newest(3, SearchFilter(formats=("PNG",)))
    assert [h.payload["date"] for h in pngs] == [sample_date(n) for n in (36, 32, 28)]


# --- the optional VISUAL vector beside the unnamed CLIP one ---------------------------------------


def looks(n: int, vector, clip=None, **payload) -> Point:
    """A point with a CLIP vector and a 3-d visual one."""
    base = point(n, clip if clip is not None else [1, n, 0, 0], **payload)
    return Point(base.id, base.vector, base.payload, unit(vector))


def test_visual_vectors_live_beside_the_clip_vector(backend: str, settings: Settings) -> None:
    with opener(backend)(settings, "m", 4, visual=("v", 3)) as store:
        assert (store.visual_model, store.visual_dim) == ("v", 3)
        # CLIP puts 1 nearest to [1, 0, 0, 0]; the visual vectors put 3 nearest to [0, 0, 1].
        store.upsert([looks(1, [1, 0, 0], clip=[1, 0, 0, 0]), looks(2, [0, 1, 0.5], clip=[1, 1, 0, 0])])
        store.upsert([looks(3, [0, 0.1, 1], clip=[0.2, 1, 0, 0]), point(4, [0, 0, 1, 0])])  # 4: no visual vector
        assert [h.id for h in store.query(unit([1, 0, 0, 0]), limit=4)] == [pid(1), pid(2), pid(3), pid(4)]
        hits = store.query(unit([0, 0, 1]), limit=4, using=VISUAL, with_vectors=True)
        assert [h.id for h in hits] == [pid(3), pid(2), pid(1)]  # 4 has none: not found
        assert np.allclose(hits[0].vector, unit([0, 0.1, 1]), atol=1e-6)
        others = store.query(unit([0, 0, 1]), limit=4, using=VISUAL, where=SearchFilter(exclude_ids=(pid(3),)))
        assert [h.id for h in others] == [pid(2), pid(1)]
        assert np.allclose(store.vector(pid(2)), unit([1, 1, 0, 0]), atol=1e-6)
        assert np.allclose(store.vector(pid(2), using=VISUAL), unit([0, 1, 0.5]), atol=1e-6)
        assert store.vector(pid(4), using=VISUAL) is None and store.vector(pid(99), using=VISUAL) is None
        clip_rows = {i: v for i, _, v in store.scroll(with_vectors=True)}
        assert all(v.shape == (4,) for v in clip_rows.values()) and len(clip_rows) == 4
        visual_rows = {i: v for i, _, v in store.scroll(with_vectors=True, using=VISUAL)}
        assert visual_rows[pid(4)] is None and visual_rows[pid(1)].shape == (3,)
        assert [i for i, _ in store.without_visual()] == [pid(4)]

        # Back-fill: the visual vector joins, the CLIP vector and the payload stay exactly as they were.
        before = (store.vector(pid(4)), store.retrieve([pid(4)]))
        store.set_visual({pid(4): unit([0, 0, 1])})
        assert np.array_equal(store.vector(pid(4)), before[0]) and store.retrieve([pid(4)]) == before[1]
        assert store.query(unit([0, 0, 1]), limit=1, using=VISUAL)[0].id == pid(4)
        assert list(store.without_visual()) == []
        store.set_payload(pid(4), {"paths": ["/moved.jpg"]})  # a payload change keeps both vectors
        assert store.vector(pid(4), using=VISUAL) is not None
        store.upsert([point(4, [0, 0, 1, 0])])  # an upsert replaces the whole point: no visual vector now
        assert [i for i, _ in store.without_visual()] == [pid(4)]


def test_visual_vectors_survive_reopen_and_a_store_opened_without_them_keeps_them(
    on_disk: str, settings: Settings
) -> None:
    with opener(on_disk)(settings, "m", 4, visual=("v", 3)) as store:
        store.upsert([looks(1, [1, 0, 0]), looks(2, [0, 1, 0])])
    with opener(on_disk)(settings, "m", 4) as store:  # EMBEDDER_VISUAL_MODEL unset: CLIP as always
        assert store.visual_model is None and store.count() == 2
        assert store.query(unit([1, 1, 0, 0]), limit=1)[0].id == pid(1)
        store.upsert([point(3, [0, 0, 1, 0])])
    with opener(on_disk)(settings, "m", 4, visual=("v", 3)) as store:
        assert store.query(unit([0, 1, 0]), limit=1, using=VISUAL)[0].id == pid(2)
        assert [i for i, _ in store.without_visual()] == [pid(3)]


def test_another_visual_model_is_refused_with_the_fix(on_disk: str, settings: Settings) -> None:
    opener(on_disk)(settings, "m", 4, visual=("vit-a", 3)).close()
    with pytest.raises(CollectionMismatchError, match="vit-a.*EMBEDDER_VISUAL_MODEL.*vit-b.*QDRANT_COLLECTION"):
        opener(on_disk)(settings, "m", 4, visual=("vit-b", 3))
    with pytest.raises(CollectionMismatchError, match="3-d visual vectors"):
        opener(on_disk)(settings, "m", 4, visual=("vit-a", 5))
    opener(on_disk)(settings, "m", 4, visual=("vit-a", 3)).close()  # the refusals changed nothing


def test_a_clip_only_collection_is_not_given_visual_vectors_on_open(on_disk: str, settings: Settings) -> None:
    with opener(on_disk)(settings, "m", 4) as store:
        store.upsert([point(1, [1, 0, 0, 0])])
    fix = "backfill-visual" if on_disk == "edge" else "QDRANT_COLLECTION"
    with pytest.raises(CollectionMismatchError, match=f"no visual vectors.*{fix}"):
        opener(on_disk)(settings, "m", 4, visual=("v", 3))
    with opener(on_disk)(settings, "m", 4) as store:
        assert store.count() == 1 and list(store.query(unit([0, 0, 1]), limit=3, using=VISUAL)) == []


def clip_only_edge_store(settings: Settings, n: int = 30) -> dict[str, tuple[np.ndarray, dict]]:
    rng = np.random.default_rng(3)
    with EdgeStore(settings, "m", 4) as store:
        store.upsert([point(i, rng.normal(size=4)) for i in range(n)])
        return {i: (v, p) for i, p, v in store.scroll(with_vectors=True)}


def test_add_visual_vector_copies_an_edge_collection_keeping_its_clip_vectors_bit_for_bit(settings: Settings) -> None:
    before = clip_only_edge_store(settings)
    lock = FolderLock(settings.qdrant_path)
    try:
        done = add_visual_vector(settings, ("v", 3))
        assert done is not None and done["points"] == 30
        assert add_visual_vector(settings, ("v", 3)) is None  # nothing left to do
    finally:
        lock.release()
    assert (Path(done["backup"]) / "edge_config.json").is_file()  # the old shard, kept as a backup
    with EdgeStore(settings, "m", 4, visual=("v", 3)) as store:
        after = {i: (v, p) for i, p, v in store.scroll(with_vectors=True)}
        assert after.keys() == before.keys()
        assert all(np.array_equal(after[i][0], before[i][0]) and after[i][1] == before[i][1] for i in before)
        assert len(list(store.without_visual())) == 30
        assert store.query(before[pid(5)][0], limit=1)[0].id == pid(5)
        assert [h.id for h in store.query(unit([1, 0, 0, 0]), limit=5, where=SearchFilter(formats=("JPEG",)))]
    meta = json.loads((settings.qdrant_path / "images" / META_NAME).read_text())
    assert (meta["model"], meta["visual_model"], meta["visual_dim"]) == ("m", "v", 3)


def test_an_interrupted_add_visual_vector_is_refused_on_open_then_finished(settings: Settings, monkeypatch) -> None:
    import embedder.store.migrate as migrate

    before = clip_only_edge_store(settings, 5)
    lock = FolderLock(settings.qdrant_path)
    real = migrate._finish_visual
    monkeypatch.setattr(migrate, "_finish_visual", lambda folder, journal: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        add_visual_vector(settings, ("v", 3))  # the copy is complete and journalled; no folder moved
    lock.release()
    with pytest.raises(StoreError, match="interrupted.*backfill-visual"):
        EdgeStore(settings, "m", 4)
    monkeypatch.setattr(migrate, "_finish_visual", real)
    lock = FolderLock(settings.qdrant_path)
    try:
        assert add_visual_vector(settings, ("v", 3))["points"] == 5
    finally:
        lock.release()
    with EdgeStore(settings, "m", 4, visual=("v", 3)) as store:
        after = {i: v.tolist() for i, _, v in store.scroll(with_vectors=True)}
        assert after == {i: v.tolist() for i, (v, _) in before.items()}
