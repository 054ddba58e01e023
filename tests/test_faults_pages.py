"""Displayed text is safe: hostile file names are shown literally on both pages, never rendered.

A file name is attacker-controlled (anyone who can upload, or put a file in an indexed folder).
Rendered as Markdown it could make a link (`javascript:`), emphasis, colours, maths or, with HTML
allowed, run script. Through the real pages (streamlit.testing.v1.AppTest) every name must read
back exactly as typed, every Markdown-rendering element must carry it escaped, and none may allow
HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st

from embedder.media.uploads import display_name
from appkit import finish_jobs, goto, unescape
from faultkit import distinct_image, encode_png

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "main_app.py")
TIMEOUT = 90

HOSTILE_IMAGES = [  # none with '/': a browser sends a base name, and a file on disk cannot have one
    "<img src=x onerror=alert(1)>.png",
    "**bold** [link](javascript:alert(1)).png",
    ":red[hot] :smile: $x^2$ `code` ~~gone~~ _it_ #1 | a | b |.png",
    "&lt;b&gt;entity <b>tag<b> &amp; <!-- c -->.png",
]
WITH_SLASH = "**bold** [link](http://x).png"  # only its last part is a name: shown as "x).png"
HOSTILE_NOT_IMAGE = "<svg onload=alert('x')> **not** an image.png"
ON_DISK = "[disk](javascript:alert(2)) <svg onload=alert(3)>.png"  # indexed from a folder, not uploaded
SCORE = re.compile(r" · -?\d+\.\d{3}$")
# What may remain of a caption once its backslash-escaped characters are taken out: plain text.
PLAIN = re.compile(r"^[\w .·\-]*$")


@pytest.fixture
def app_env(tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pytest.importorskip("streamlit.testing.v1")
    if not Path(MAIN).is_file():
        pytest.skip("the Streamlit pages are not there")
    st.cache_resource.clear()
    st.cache_data.clear()
    for name, value in {
        "EMBEDDER_MODEL": str(model_path),
        "EMBEDDER_DEVICE": "cpu",
        "EMBEDDER_BATCH_SIZE": "8",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }.items():
        monkeypatch.setenv(name, value)
    yield tmp_path
    st.cache_resource.clear()  # closes the cached Engine: the store's folder lock is released
    st.cache_data.clear()


def open_app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    if page:
        goto(at, page)
    assert not at.exception, [e.proto.message for e in at.exception]
    return at


def no_html_anywhere(at) -> None:
    assert not at.exception, [e.proto.message for e in at.exception]
    for element in [*at.markdown, *at.caption]:
        assert not element.proto.allow_html, element.value
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader"):
        for element in at.get(kind):
            text = re.sub(r"\\.", "", str(element.value))  # escaped characters are shown as themselves
            assert "<" not in text and "](" not in text, (kind, element.value)


def test_hostile_names_show_literally_on_the_index_and_search_pages(app_env: Path) -> None:
    folder = app_env / "pictures"
    folder.mkdir()
    distinct_image(90).save(folder / ON_DISK)
    uploads = [*HOSTILE_IMAGES, WITH_SLASH]
    assert [display_name(n) for n in HOSTILE_IMAGES] == HOSTILE_IMAGES  # kept whole: the test means something
    files = [(name, encode_png(distinct_image(60 + i)), "image/png") for i, name in enumerate(uploads)]
    files.append((HOSTILE_NOT_IMAGE, b"<html><script>alert('x')</script></html>", "image/png"))

    # Index page: the uploads and the folder, then the report.
    at = open_app("index")
    at.file_uploader[0].set_value(files)
    at.text_input(key="index-folder").input(str(folder))
    at.button(key="index-button").click().run()
    finish_jobs(at)
    no_html_anywhere(at)
    failed = at.dataframe[0].value
    assert list(failed["file"]) == [HOSTILE_NOT_IMAGE]  # the name as sent, shown as data
    assert {m.label: m.value for m in at.metric}["Added"] == str(len(uploads) + 1)

    # Search page: every image's caption reads back as its exact name, escaped in the Markdown.
    at = open_app()
    at.select_slider(key="search-top-k").set_value(12)
    at.text_input(key="search-text").input("a picture")
    at.form_submit_button[0].click().run()
    no_html_anywhere(at)
    captions = [c.value for c in at.caption if SCORE.search(c.value)]
    shown = sorted(unescape(SCORE.sub("", c)) for c in captions)
    assert shown == sorted([*HOSTILE_IMAGES, display_name(WITH_SLASH), ON_DISK])
    for caption in captions:
        assert PLAIN.match(re.sub(r"\\.", "", SCORE.sub("", caption))), caption

    # "Similar" and "View" show the name again: escaped there too; the path as code (literal).
    target = next(i for i, c in enumerate(captions) if "javascript" in unescape(c) and "disk" in unescape(c))
    next(b for b in at.button if b.key and b.key.startswith(f"view-{target}-")).click().run()
    no_html_anywhere(at)
    assert str(folder / ON_DISK) in [c.value for c in at.code]
    next(b for b in at.button if b.key and b.key.startswith(f"like-{target}-")).click().run()
    no_html_anywhere(at)
    heading = next(m.value for m in at.markdown if "images like" in m.value)
    assert unescape(heading).endswith(f"images like {ON_DISK}")


def test_a_folder_whose_name_is_not_utf8_is_indexed_watched_and_named_as_the_page_shows_it(app_env: Path) -> None:
    """R3-3: typed back as the pages show it (`D\\xfcsseldorf`), the folder is indexed and watched; its
    name in the job panel and the watch line is that text, never a crash on bytes the browser cannot take."""
    import os

    folder = os.fsencode(app_env) + b"/D\xfcsseldorf"
    os.mkdir(folder)
    distinct_image(91).save(os.fsdecode(folder + b"/img.png"))
    shown = f"{app_env}/D\\xfcsseldorf"
    at = open_app("index")
    at.text_input(key="index-folder").input(shown)
    at.checkbox(key="index-watch").set_value(True)
    at.button(key="index-button").click().run()
    assert not at.exception, [e.message for e in at.exception]
    finish_jobs(at)
    no_html_anywhere(at)
    assert {m.label: m.value for m in at.metric}["Added"] == "1"
    assert f"Watching (file events): {shown}" in [unescape(c.value) for c in at.caption]
