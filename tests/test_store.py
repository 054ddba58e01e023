"""The embedded store: model checks, folder lock, and the operations the rest relies on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedder.config import Settings
from embedder.errors import CollectionMismatchError, StoreError, StoreInUseError
from embedder.store import FolderLock, Point, SearchFilter, open_store


def unit(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def point(n: int, vector: list[float], **payload) -> Point:
    pid = f"00000000-0000-0000-0000-{n:012d}"
    return Point(pid, unit(vector), {"paths": [f"/p/{n}.jpg"], "folders": ["/p"], "format": "JPEG", **payload})


def test_query_orders_by_cosine_and_pages(settings: Settings) -> None:
    with open_store(settings, "m", 3) as store:
        store.upsert([point(1, [1, 0, 0]), point(2, [1, 1, 0]), point(3, [0, 1, 0])])
        hits = store.query(unit([1, 0, 0]), limit=3)
        assert [h.id[-1] for h in hits] == ["1", "2", "3"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[1].score == pytest.approx(np.sqrt(0.5), abs=1e-5)
        assert [h.id[-1] for h in store.query(unit([1, 0, 0]), limit=1, offset=1)] == ["2"]
        assert [h.id[-1] for h in store.query(unit([1, 0, 0]), limit=3, score_threshold=0.5)] == ["1", "2"]


def test_filters_run_inside_qdrant(settings: Settings) -> None:
    with open_store(settings, "m", 3) as store:
        store.upsert(
            [
                point(1, [1, 0, 0], format="PNG", width=100, height=50, date=10.0),
                point(2, [1, 1, 0], width=4000, height=3000, date=20.0, folders=["/", "/p", "/p/q"]),
            ]
        )
        q = unit([1, 0, 0])
        assert [h.id[-1] for h in store.query(q, 5, where=SearchFilter(formats=("PNG",)))] == ["1"]
        assert [h.id[-1] for h in store.query(q, 5, where=SearchFilter(min_width=1000))] == ["2"]
        assert [h.id[-1] for h in store.query(q, 5, where=SearchFilter(folder="/p/q"))] == ["2"]
        assert [h.id[-1] for h in store.query(q, 5, where=SearchFilter(date_to=15.0))] == ["1"]
        assert [h.id[-1] for h in store.query(q, 5, where=SearchFilter(exclude_ids=(point(1, [1]).id,)))] == ["2"]


def test_payload_vector_scroll_delete(settings: Settings) -> None:
    with open_store(settings, "m", 3) as store:
        store.upsert([point(1, [1, 0, 0]), point(2, [0, 1, 0])])
        pid = point(1, [1]).id
        store.set_payload(pid, {"paths": ["/new.jpg"]})
        assert store.retrieve([pid, "00000000-0000-0000-0000-000000000099"]) == {pid: {"paths": ["/new.jpg"]}}
        assert np.allclose(store.vector(pid), unit([1, 0, 0]))
        assert sorted(i for i, _, _ in store.scroll()) == sorted([pid, point(2, [1]).id])
        store.delete([pid])
        assert store.count() == 1


def test_data_survives_reopen(settings: Settings) -> None:
    with open_store(settings, "m", 3) as store:
        store.upsert([point(1, [1, 0, 0])])
    with open_store(settings, "m", 3) as store:
        assert store.count() == 1


def test_another_model_is_refused_with_the_fix(settings: Settings) -> None:
    open_store(settings, "model-a", 3).close()
    with pytest.raises(CollectionMismatchError, match="model-a.*EMBEDDER_MODEL.*QDRANT_COLLECTION"):
        open_store(settings, "model-b", 3)
    with pytest.raises(CollectionMismatchError, match="3-d"):
        open_store(settings, "model-a", 4)
    # Another collection name is the way to use another model side by side.
    open_store(replace(settings, collection="other"), "model-b", 4).close()


def test_second_opener_gets_a_clear_in_use_message_and_the_owner_keeps_working(settings: Settings) -> None:
    with open_store(settings, "m", 3) as owner:
        with pytest.raises(StoreInUseError, match="in use"):
            open_store(settings, "m", 3)
        owner.upsert([point(1, [1, 0, 0])])
        assert owner.count() == 1


def test_lock_is_released_on_close(settings: Settings) -> None:
    open_store(settings, "m", 3).close()
    lock = FolderLock(settings.qdrant_path)
    lock.release()


def test_unreachable_server_is_one_clear_message(settings: Settings) -> None:
    server = replace(settings, qdrant_url="http://127.0.0.1:9", qdrant_api_key="top-secret-key", qdrant_timeout=2)
    with pytest.raises(StoreError, match="Cannot reach the Qdrant server at http://127.0.0.1:9") as info:
        open_store(server, "m", 3)
    assert "top-secret-key" not in str(info.value)
