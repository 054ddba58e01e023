"""The Streamlit pages through `streamlit.testing.v1.AppTest`: Index and Search, and every error state."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import (
    CAPTION,
    CLASSES,
    INDEX,
    TIMEOUT,
    app_env,
    assert_clean,
    errors,
    finish_jobs,
    goto,
    index_folder,
    index_uploads,
    metrics,
    open_app,
    png,
    render,
    results,
    search,
    texts,
    trained_model,
    unescape,
    upload,
    write_images,
)
from embedder.config import Settings
from embedder.errors import StoreInUseError
from embedder.indexing.indexer import Progress, time_left
from embedder.jobs.runner import Job, JobRequest
from embedder.store import FolderLock, open_store
from embedder_ui import widgets
from embedder_ui.format import job_progress, literal
from faultkit import FakeQdrant, StatusServer, free_port, wait_until

SECRET = "s3cret-api-key-never-shown"
__all__ = ["app_env"]  # a fixture: imported for pytest to find


# --------------------------------------------------------------------------------------------
# Index, then Search


def test_upload_index_report_then_search_ranks_the_described_image_first(
    app_env: Path, model_path: Path, encoder
) -> None:
    at = open_app()
    assert_clean(at)
    assert "Nothing is indexed yet" in texts(at)
    assert [link.value for link in at.get("page_link")] == ["Go to the Index page"]

    files = [upload(c, s) for c, s in CLASSES]
    files.append(("broken.jpg", b"this is not an image at all", "image/jpeg"))
    at = index_uploads(files)
    assert_clean(at)
    counts = metrics(at)
    assert (counts["Added"], counts["Unchanged"], counts["Failed"]) == ("6", "0", "1")
    assert counts["Images indexed"] == "6"
    failed = at.dataframe[0].value
    assert list(failed["file"]) == ["broken.jpg"]
    assert "not an image" in failed["reason"][0]
    assert at.file_uploader[0].value == []  # cleared for the next batch
    info = unescape(texts(at))  # always visible, in the sidebar
    assert "**Collection** · images" in info
    assert f"**Model** · {model_path.name} ({encoder.dim}-d, cpu)" in info
    assert f"**Storage** · embedded: {app_env / 'qdrant'}" in info

    at = search("a red circle")
    assert_clean(at)
    found = results(at)
    assert len(found) == 6
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True)
    # Cosines, but for a picture whose words hold the query's (its file name): that one ranks above them all.
    assert found[0][0] == "red-circle.png" and found[0][1] > 1.0
    assert all(-1.0 <= s <= 1.0 for s in scores[1:])
    assert "searched as “a photo of a red circle”" in unescape(texts(at))


def test_the_same_uploads_again_are_unchanged(app_env: Path) -> None:
    files = [upload(c, s) for c, s in CLASSES[:2]]
    at = index_uploads(files)
    assert metrics(at)["Added"] == "2"
    at.file_uploader[0].set_value(files)
    finish_jobs(at.button(key="index-button").click().run())
    assert_clean(at)
    counts = metrics(at)
    assert (counts["Added"], counts["Unchanged"], counts["Images indexed"]) == ("0", "2", "2")


def test_uploads_over_max_upload_mb_are_refused(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_UPLOAD_MB", "1")
    noise = np.random.default_rng(0).integers(0, 255, (700, 800, 3), dtype=np.uint8)
    big = png(Image.fromarray(noise))
    assert len(big) > 1024 * 1024
    at = index_uploads([("huge.png", big, "image/png"), upload("red", "circle")])
    assert_clean(at)
    assert (metrics(at)["Added"], metrics(at)["Failed"]) == ("1", "1")
    failed = at.dataframe[0].value
    assert failed["file"][0] == "huge.png"
    assert failed["reason"][0].endswith("MB is above the upload limit of 1 MB (MAX_UPLOAD_MB)")
    assert not any(p.stat().st_size > 1024 * 1024 for p in (app_env / "uploads").rglob("*") if p.is_file())


def test_folder_index_and_prune(app_env: Path) -> None:
    folder = app_env / "pictures"
    paths = write_images(folder, CLASSES[:3])
    at = index_folder(folder)
    assert_clean(at)
    assert metrics(at)["Added"] == "3"
    paths[0].unlink()
    at = index_folder(folder, prune=True, at=at)
    assert_clean(at)
    counts = metrics(at)
    assert (counts["Unchanged"], counts["Removed"], counts["Images indexed"]) == ("2", "1", "2")

    at = index_folder(app_env / "no-such-folder", at=at)
    assert_clean(at)
    assert at.dataframe[0].value["reason"][0] == "no such file or folder"


def test_index_button_without_input_asks_for_some(app_env: Path) -> None:
    at = open_app("index")
    at.button(key="index-button").click().run()
    assert_clean(at)
    assert "Choose images to upload or enter a folder" in texts(at)


def test_configured_image_dirs_are_offered(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = app_env / "library"
    write_images(folder, CLASSES[:2])
    monkeypatch.setenv("IMAGE_DIRS", str(folder))
    monkeypatch.setenv("WATCH", "false")
    at = open_app("index")
    assert at.multiselect(key="index-configured").options == [str(folder)]
    at.multiselect(key="index-configured").select(str(folder))
    at.button(key="index-button").click().run()
    finish_jobs(at)
    assert_clean(at)
    assert metrics(at)["Added"] == "2"


def test_configured_image_dirs_are_indexed_and_watched_on_their_own(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = app_env / "library"
    write_images(folder, CLASSES[:2])
    monkeypatch.setenv("IMAGE_DIRS", str(folder))
    at = finish_jobs(open_app("index"))  # nothing clicked: the catch-up pass of a watched folder
    assert_clean(at)
    assert metrics(at)["Images indexed"] == "2"
    assert f"Watching (file events): {folder}" in unescape(texts(at))
    write_images(folder, CLASSES[2:3])  # a photo dropped into the folder
    wait_until(lambda: metrics(at.run())["Images indexed"] == "3", "the new photo to be indexed")


def test_search_by_image_then_more_like_this(app_env: Path, model_path: Path) -> None:
    write_images(app_env / "pictures")
    index_folder(app_env / "pictures")

    at = open_app()
    at.file_uploader(key="search-image").set_value(upload("red", "circle", seed=7)).run()
    assert_clean(at)
    found = results(at)
    assert len(found) == len(CLASSES)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    if trained_model(model_path):
        assert found[0][0] == "red-circle.jpg"
    assert "images like your picture red-circle.png" in unescape(texts(at))

    first = found[0][0]
    like = next(b for b in at.button if b.key and b.key.startswith("like-0-"))
    like.click().run()
    assert_clean(at)
    similar = results(at)
    assert first not in [name for name, _ in similar]  # the image itself is left out
    assert len(similar) == len(CLASSES) - 1
    assert [s for _, s in similar] == sorted((s for _, s in similar), reverse=True)
    assert f"images like {first}" in unescape(texts(at))


def test_a_bad_query_image_is_a_message(app_env: Path) -> None:
    write_images(app_env / "pictures", CLASSES[:2])
    index_folder(app_env / "pictures")
    at = open_app()
    at.file_uploader(key="search-image").set_value(("fake.png", b"this is not an image at all", "image/png")).run()
    assert errors(at) == ["fake.png cannot be used: not an image, or a format that is not supported"]
    assert results(at) == []


def test_show_more_pages_by_offset(app_env: Path) -> None:
    classes = [(c, s) for c in ("red", "blue", "green") for s in ("circle", "square", "triangle")]  # 9 images
    write_images(app_env / "pictures", classes)
    index_folder(app_env / "pictures")
    at = search("a blue square", top_k=4)
    assert len(results(at)) == 4
    at.button(key="search-more").click().run()
    assert len(results(at)) == 8
    at.button(key="search-more").click().run()
    found = results(at)
    assert len(found) == 9
    assert len({name for name, _ in found}) == 9
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert not [b for b in at.button if b.key == "search-more"]  # nothing more to show


def test_nothing_above_the_minimum_score(app_env: Path) -> None:
    write_images(app_env / "pictures", CLASSES[:2])
    index_folder(app_env / "pictures")
    at = search("crimson velvet", min_score=1.0)  # words no picture's name or tags hold: cosines only
    assert_clean(at)
    assert results(at) == []
    assert "No image scores above the minimum score of 1.00" in texts(at)


def test_template_can_be_edited_or_switched_off(app_env: Path) -> None:
    write_images(app_env / "pictures", CLASSES[:2])
    index_folder(app_env / "pictures")
    at = open_app()
    at.text_input(key="search-template").input("a picture of {}, drawn")
    at = search("a red circle", at=at)
    assert "searched as “a picture of a red circle, drawn”" in unescape(texts(at))
    at.toggle(key="search-use-template").set_value(False).run()
    assert_clean(at)
    assert "searched as" not in texts(at)
    assert len(results(at)) == 2


def test_view_shows_the_full_image_and_its_path(app_env: Path) -> None:
    paths = write_images(app_env / "pictures", CLASSES[:2])
    index_folder(app_env / "pictures")
    at = search("a blue square")
    first = results(at)[0][0]
    next(b for b in at.button if b.key and b.key.startswith("view-0-")).click().run()
    assert_clean(at)
    shown = [c.value for c in at.code]
    assert shown == [str(p) for p in paths if p.name == first]


def test_file_names_are_shown_literally(app_env: Path) -> None:
    name = "**bold** <b>tag <i>x [link](x.test) :red[hot] :smile: $x^2$ _it_ &amp; #1.png"
    at = index_uploads([(name, png(render("red", "circle")), "image/png")])
    assert_clean(at)
    at = search("a red circle")
    assert_clean(at)
    assert results(at) == [(name, results(at)[0][1])]
    caption = next(c.value for c in at.caption if CAPTION.match(c.value))
    assert "**" not in caption.replace("\\*", "")
    assert "<b>" not in caption.replace("\\<", "").replace("\\>", "")
    for element in [*at.markdown, *at.caption]:
        assert not element.proto.allow_html


# --------------------------------------------------------------------------------------------
# One Engine per process


def test_both_pages_share_one_engine_and_clearing_releases_the_lock(app_env: Path) -> None:
    search_page = open_app()
    index_page = open_app("index")  # a second session in the same process: the same store
    assert_clean(search_page)
    assert_clean(index_page)
    with pytest.raises(StoreInUseError):
        FolderLock(app_env / "qdrant")  # held by the cached Engine
    st.cache_resource.clear()
    FolderLock(app_env / "qdrant").release()  # closed on release: free again


def test_changed_settings_replace_the_engine_without_a_lock_conflict(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app()
    assert_clean(at)
    monkeypatch.setenv("EMBEDDER_BATCH_SIZE", "8")  # e.g. qdrant.env edited while the app runs
    at.run()
    assert_clean(at)  # the old Engine let go of the folder before the new one opened it
    assert "Nothing is indexed yet" in texts(at)


def test_index_page_runs_on_its_own(app_env: Path) -> None:
    at = AppTest.from_file(INDEX, default_timeout=TIMEOUT).run()
    assert_clean(at)
    assert at.title[0].value == "Index images"
    assert metrics(at)["Images indexed"] == "0"


# --------------------------------------------------------------------------------------------
# Errors are messages, never tracebacks


@pytest.mark.parametrize("page", [None, "index"])
def test_missing_model_says_how_to_set_it(app_env: Path, monkeypatch: pytest.MonkeyPatch, page: str | None) -> None:
    monkeypatch.setenv("EMBEDDER_MODEL", str(app_env / "no-model-here"))
    at = open_app(page)
    [message] = errors(at)
    assert "EMBEDDER_MODEL" in message and str(app_env / "no-model-here") in message
    assert not [c.value for c in at.sidebar.caption if "Loading the model" in c.value]  # the error alone


def test_storage_folder_in_use_by_another_process(app_env: Path) -> None:
    lock = FolderLock(app_env / "qdrant")  # what another running app or CLI holds
    try:
        at = open_app()
        [message] = errors(at)
        assert f"The storage folder {app_env / 'qdrant'} is in use" in message
        goto(at, "index")
        assert "is in use" in errors(at)[0]
    finally:
        lock.release()
    assert_clean(open_app())  # the other process is gone: the app works without a restart


def test_unreachable_server(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("QDRANT_URL", url)
    monkeypatch.setenv("QDRANT_API_KEY", SECRET)
    at = open_app()
    [message] = errors(at)
    assert f"Cannot reach the Qdrant server at {url}" in message
    assert SECRET not in texts(at)


def test_api_key_refused(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with StatusServer(401) as server:
        monkeypatch.setenv("QDRANT_URL", server.url)
        monkeypatch.setenv("QDRANT_API_KEY", SECRET)
        at = open_app("index")
    [message] = errors(at)
    assert "refused the API key" in message and "QDRANT_API_KEY" in message
    assert SECRET not in texts(at)


def test_server_lost_while_the_app_runs(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeQdrant(api_key=SECRET) as server:
        monkeypatch.setenv("QDRANT_URL", server.url)
        monkeypatch.setenv("QDRANT_API_KEY", SECRET)
        monkeypatch.setenv("QDRANT_TIMEOUT", "1")  # a kept-alive connection to the dead server waits this long
        at = index_uploads([upload(c, s) for c, s in CLASSES[:2]])
        assert_clean(at)
        assert metrics(at)["Added"] == "2"
        assert f"server: {server.url}" in unescape(texts(at))
        search_page = search("a red circle")
        assert len(results(search_page)) == 2
    # The server is gone: the next search and the next index run say so, without a traceback.
    search_page.form_submit_button[0].click().run()
    [message] = errors(search_page)
    assert f"Cannot reach the Qdrant server at {server.url}" in message
    at.file_uploader[0].set_value([upload("green", "triangle")])
    at.button(key="index-button").click().run()
    assert "Cannot reach the Qdrant server" in errors(at)[0]
    assert SECRET not in texts(at) + texts(search_page)


def test_collection_made_by_another_model(app_env: Path) -> None:
    open_store(Settings(qdrant_path=app_env / "qdrant"), "another-clip", 16).close()
    at = open_app()
    [message] = errors(at)
    assert "made by model 'another-clip'" in message and "QDRANT_COLLECTION" in message


def test_invalid_setting(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDER_DEVICE", "toaster")
    [message] = errors(open_app())
    assert "EMBEDDER_DEVICE must be one of" in message


# --------------------------------------------------------------------------------------------
# Widgets


def test_thumbnails_are_small_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st.cache_data.clear()
    decoded: list[object] = []
    real_decode = widgets.decode
    monkeypatch.setattr(widgets, "decode", lambda *a, **k: decoded.append(a[0]) or real_decode(*a, **k))
    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(big, quality=90)
    first = widgets.thumbnail(str(big), 100_000_000)
    assert isinstance(first, bytes)
    with Image.open(io.BytesIO(first)) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (widgets.THUMB_SIDE, widgets.THUMB_SIDE)
    assert len(first) < big.stat().st_size / 20
    assert widgets.thumbnail(str(big), 100_000_000) == first
    assert decoded == [big]  # made once, then cached by (path, mtime)
    assert widgets.thumbnail(str(tmp_path / "gone.jpg"), 100_000_000) == "the file is no longer there"
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert "not an image" in widgets.thumbnail(str(tmp_path / "bad.jpg"), 100_000_000)
    preview = widgets.preview(str(big), 100_000_000)
    with Image.open(io.BytesIO(preview)) as full:
        assert max(full.size) == widgets.PREVIEW_SIDE
    st.cache_data.clear()


def test_job_progress_shows_count_rate_and_time_left_and_nothing_unknown() -> None:
    job = Job(1, JobRequest("index", ("/pictures",), "/pictures"), state="running", progress=Progress(10, 40, 12.5, 2.4))
    assert job_progress(job) == "10 of 40 files · 12.5 images/s · about 2 s left"
    assert widgets.job_fraction(job) == 0.25
    starting = replace(job, progress=Progress(0, 40, 0.0, None))
    assert job_progress(starting) == "0 of 40 files"  # no "0.0 images/s", no "about 0 s left"
    assert job_progress(replace(job, progress=Progress(40, 40, 9.0, 0.0))) == "40 of 40 files · 9.0 images/s"
    assert job_progress(replace(job, state="queued", progress=None)) == "waiting for the job before it"
    assert time_left(None) == "estimating time left"
    assert time_left(125) == "about 2 min 05 s left"
    assert time_left(7300) == "about 2 h 01 min left"


def test_literal_escapes_markdown() -> None:
    assert literal("a_b*c [d](e) <f> :g: $h$ `i`") == (
        "a\\_b\\*c \\[d\\]\\(e\\) \\<f\\> \\:g\\: \\$h\\$ \\`i\\`"
    )
    assert literal("two\nlines") == "two lines"
