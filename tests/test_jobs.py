"""The background job runner: queue order, one job at a time, progress, cancel, failures, resume."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from faultkit import distinct_folder

from embedder.engine import Engine
from embedder.jobs.runner import Job, JobRequest, JobRunner
from embedder.query.terms import Query


def _index(*paths: Path, **kw) -> JobRequest:
    return JobRequest("index", tuple(str(p) for p in paths), label=str(paths[0]), **kw)


def _stored_paths(engine: Engine) -> set[str]:
    return {p for _, payload, _ in engine.store.scroll() for p in payload["paths"]}


@pytest.fixture
def small_batches(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder, "batch_size", 4)


def test_jobs_run_one_at_a_time_in_queue_order_and_keep_their_reports(engine: Engine, tmp_path: Path) -> None:
    folders = [tmp_path / name for name in ("a", "b", "c")]
    for n, folder in enumerate(folders):
        distinct_folder(folder, 3, start=10 * n)
    seen: list[Job] = []
    runner = JobRunner(engine.indexer, on_change=seen.append)
    jobs = [runner.submit(_index(folder)) for folder in folders]  # all queued before the worker starts
    runner.start()
    assert runner.wait_idle(60)

    finished = [runner.get(job.id) for job in jobs]
    assert [j.state for j in finished] == ["done"] * 3
    assert [len(j.report.added) for j in finished] == [3, 3, 3]
    # one at a time, in the order asked: each started after the one before had finished
    for before, after in zip(finished, finished[1:]):
        assert after.started_at >= before.finished_at
    running = [j.id for j in seen if j.state == "running" and j.progress is None]
    assert running == [j.id for j in jobs]
    assert [j.id for j in runner.jobs()] == [j.id for j in reversed(jobs)]  # history: newest first
    runner.close()


def test_progress_is_monotone_and_reaches_the_total(engine: Engine, tmp_path: Path, small_batches) -> None:
    distinct_folder(tmp_path / "album", 18)
    progress: list[tuple[int, int]] = []
    runner = JobRunner(engine.indexer, on_change=lambda j: j.progress and progress.append((j.progress.done, j.progress.total)))
    runner.start()
    job = runner.wait(runner.submit(_index(tmp_path / "album")).id, 60)
    assert job.state == "done" and len(job.report.added) == 18
    dones = [done for done, _ in progress]
    assert dones == sorted(dones) and len(set(dones)) >= 4  # batches of 4: several steps, never backwards
    assert progress[-1] == (18, 18)
    runner.close()


def test_cancel_stops_after_the_batch_in_flight_and_every_stored_batch_is_whole(
    engine: Engine, tmp_path: Path, small_batches
) -> None:
    paths = distinct_folder(tmp_path / "album", 24)
    runner = JobRunner(engine.indexer)
    upserts: list[int] = []
    real_upsert = engine.store.upsert
    job_id: list[int] = []

    def upsert(points):
        real_upsert(points)
        upserts.append(len(points))
        if len(upserts) == 2:
            runner.cancel(job_id[0])  # as a person pressing Cancel while the second batch lands

    engine.store.upsert = upsert
    job_id.append(runner.submit(_index(tmp_path / "album")).id)
    runner.start()
    job = runner.wait(job_id[0], 60)

    assert job.state == "cancelled"
    assert upserts == [4, 4]  # the run stopped right after the batch in flight
    assert engine.store.count() == 8  # exactly what landed, no partial point
    for _, payload, vector in engine.store.scroll(with_vectors=True):
        assert payload["paths"] and payload["sha256"] and abs(float((vector**2).sum()) - 1) < 1e-3
    # the next run finishes the job and encodes only the rest
    again = runner.wait(runner.submit(_index(tmp_path / "album")).id, 60)
    assert len(again.report.added) == 16 and len(again.report.unchanged) == 8
    assert _stored_paths(engine) == {str(p) for p in paths}
    runner.close()


def test_cancelling_a_queued_job_means_it_never_runs(engine: Engine, tmp_path: Path) -> None:
    distinct_folder(tmp_path / "a", 2)
    distinct_folder(tmp_path / "b", 2, start=5)
    runner = JobRunner(engine.indexer)
    first, second = runner.submit(_index(tmp_path / "a")), runner.submit(_index(tmp_path / "b"))
    assert runner.cancel(second.id)
    runner.start()
    assert runner.wait(first.id, 60).state == "done"
    assert runner.get(second.id).state == "cancelled" and runner.get(second.id).started_at is None
    assert engine.store.count() == 2
    assert not runner.cancel(second.id)  # already over
    runner.close()


def test_a_failing_job_does_not_stop_the_runner(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    distinct_folder(tmp_path / "good", 3)
    real_index = engine.indexer.index

    def index(paths, **kw):
        if "boom" in str(paths[0]):
            raise RuntimeError("a bug in one job")
        return real_index(paths, **kw)

    monkeypatch.setattr(engine.indexer, "index", index)
    runner = JobRunner(engine.indexer)
    runner.start()
    bad = runner.wait(runner.submit(_index(tmp_path / "boom")).id, 60)
    good = runner.wait(runner.submit(_index(tmp_path / "good")).id, 60)
    assert bad.state == "failed" and "a bug in one job" in bad.error
    assert good.state == "done" and len(good.report.added) == 3
    runner.close()


def test_searches_see_a_running_jobs_images_as_they_land(engine: Engine, tmp_path: Path, small_batches) -> None:
    distinct_folder(tmp_path / "album", 12)
    runner = JobRunner(engine.indexer)
    counts: list[int] = []
    landed, searched = threading.Event(), threading.Event()
    real_upsert = engine.store.upsert

    def upsert(points):
        real_upsert(points)
        landed.set()
        assert searched.wait(30)  # hold the job until the search below has run
        searched.clear()

    engine.store.upsert = upsert
    job = runner.submit(_index(tmp_path / "album"))
    runner.start()
    for _ in range(3):
        assert landed.wait(30)
        landed.clear()
        counts.append(len(engine.searcher.search(Query.text("a photo"), 50)))
        searched.set()
    assert runner.wait(job.id, 60).state == "done"
    assert counts == [4, 8, 12]
    runner.close()


def test_a_job_killed_with_its_process_is_resumed_and_nothing_is_encoded_twice(
    engine: Engine, tmp_path: Path, small_batches
) -> None:
    paths = distinct_folder(tmp_path / "album", 16)
    journal = tmp_path / "jobs.json"
    runner = JobRunner(engine.indexer, journal=journal)
    encoded: list[int] = []
    real_encode = engine.encoder.encode_images
    stop_after_first = threading.Event()

    def encode(images):
        encoded.append(len(images))
        if len(encoded) == 1:
            stop_after_first.set()
        return real_encode(images)

    engine.encoder.encode_images = encode
    try:
        runner.submit(_index(tmp_path / "album", prune=True))
        runner.start()
        assert stop_after_first.wait(30)
        runner.close()  # the process going away mid-run: the job stays in the journal
        assert '"album"' not in journal.read_text() and str(tmp_path / "album") in journal.read_text()
        stored_before = engine.store.count()
        assert 4 <= stored_before < 16

        again = JobRunner(engine.indexer, journal=journal)
        resumed = again.start()
        assert [j.request.origin for j in resumed] == ["resumed"] and resumed[0].request.prune
        job = again.wait(resumed[0].id, 60)
        assert job.state == "done"
        assert sum(encoded) == 16  # every image encoded exactly once over both runs
        assert _stored_paths(engine) == {str(p) for p in paths}
        assert '"jobs": []' in journal.read_text()
        again.close()
    finally:
        del engine.encoder.encode_images


def test_every_jobs_report_is_kept_newest_first_and_the_ones_that_found_nothing_can_be_left_out(
    engine: Engine, tmp_path: Path
) -> None:
    """#25 (4a): the watcher's catch-up did the work, and the empty job queued behind it hid its report."""
    album = tmp_path / "album"
    distinct_folder(album, 3)
    runner = JobRunner(engine.indexer)
    catch_up = runner.submit(JobRequest("index", (str(album),), f"Catch up {album}", prune=True, origin="watch"))
    behind = runner.submit(_index(album))  # a person's click on the same folder, queued behind it
    assert runner.submit(_index(album)).id == behind.id  # the same work asked twice is queued once
    runner.start()
    assert runner.wait_idle(60)
    assert [j.id for j in runner.history()] == [behind.id, catch_up.id]  # newest first, the watcher's included
    assert runner.get(behind.id).quiet and not runner.get(catch_up.id).quiet
    [worked] = runner.history(quiet=False)
    assert worked.id == catch_up.id and len(worked.report.added) == 3
    runner.close()
