"""What the AppTest suites share: the app configured as a person would, and ways to read the page.

Each test configures the app through the environment (tiny test CLIP, an embedded store in a temp
folder) and drops the process's cached Engine afterwards, so its folder lock is released before
the next test.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from embedder.evaluation import synthetic
from embedder_ui.format import WORD_JOINER
from faultkit import wait_until

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "main_app.py")
INDEX = str(ROOT / "main_qdrant.py")
TIMEOUT = 60  # the first run in a process imports torch and transformers
CAPTION = re.compile(r"^(?P<name>.*) · (?P<score>-?\d+\.\d{3})$")

# One image of each of these classes; the trained test model must rank the right one first.
CLASSES = [
    ("red", "circle"),
    ("blue", "square"),
    ("green", "triangle"),
    ("yellow", "star"),
    ("purple", "cross"),
    ("orange", "circle"),
]


# --------------------------------------------------------------------------------------------
# Fixtures and helpers


def _reset_caches() -> None:
    st.cache_resource.clear()  # closes the cached Engine (on_release), releasing the store's folder lock
    st.cache_data.clear()


@pytest.fixture
def app_env(tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The app configured as a person would: environment variables only."""
    _reset_caches()
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("EMBEDDER_BATCH_SIZE", "16")
    monkeypatch.setenv("EMBEDDER_WORKERS", "2")
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("THUMB_DIR", str(tmp_path / "thumbnails"))
    yield tmp_path
    _reset_caches()


def render(colour: str, shape: str, seed: int = 0, size: str = "large") -> Image.Image:
    return synthetic.render(shape, colour, size, np.random.default_rng([seed, len(colour), len(shape)]))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(colour: str, shape: str, seed: int = 0) -> tuple[str, bytes, str]:
    return (f"{colour}-{shape}.png", png(render(colour, shape, seed)), "image/png")


def write_images(folder: Path, classes=CLASSES, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for colour, shape in classes:
        path = folder / f"{colour}-{shape}.jpg"
        render(colour, shape, seed).save(path, quality=92)
        paths.append(path)
    return paths


def write_copies(originals: list[Path], folder: Path) -> list[Path]:
    """A resized (180 px), re-encoded (quality 60) copy of each original in `folder`: near-duplicates."""
    folder.mkdir()
    copies = []
    for original in originals:
        with Image.open(original) as image:
            image.resize((180, 180)).save(copy := folder / f"copy-of-{original.name}", quality=60)
        copies.append(copy)
    return copies


def open_app(page: str | None = None) -> AppTest:
    """The app as a browser opens it: Search, or another page by its url path ("index", "duplicates")."""
    if page:
        return open_page(page)
    return AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()


def goto(at: AppTest, url_path: str) -> AppTest:
    """Follow the navigation to another page of the same session."""
    pages = {info.get("url_pathname"): page_hash for page_hash, info in at._registered_pages.items()}
    assert url_path in pages, f"no page at /{url_path}: {sorted(map(str, pages))}"
    at._page_hash = pages[url_path]
    return at.run()


def pending_jobs(at: AppTest) -> list[str]:
    """The indexing jobs the page shows as running or queued (each has a Cancel button)."""
    return [b.key for b in at.button if b.key and b.key.startswith("cancel-")]


def finish_jobs(at: AppTest, deadline_s: float = 120.0) -> AppTest:
    """Draw the page again until the indexing it shows has finished (as a person watching it would)."""
    wait_until(lambda: not at.run().exception and not pending_jobs(at), "indexing to finish", deadline_s, step_s=0.1)
    return at


def texts(at: AppTest) -> str:
    """Everything a person can read on the page, in one string."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader", "text", "code"):
        parts.extend(str(e.value) for e in at.get(kind))
    parts.extend(str(m.value) for m in at.metric)
    parts.extend(str(e.proto.message) for e in at.exception)
    return "\n".join(parts)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.proto.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def errors(at: AppTest) -> list[str]:
    """The error messages on the page, as a person reads them; never a traceback."""
    assert not at.exception, [e.proto.message for e in at.exception]
    return [unescape(e.value) for e in at.error]


def unescape(markdown: str) -> str:
    """Markdown written by `format.literal` as the text a person reads."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(WORD_JOINER, "")


def results(at: AppTest) -> list[tuple[str, float]]:
    """(file name, score) of each result, in page order, read back from the thumbnail captions."""
    found = []
    for caption in at.caption:
        match = CAPTION.match(caption.value)
        if match:
            found.append((unescape(match["name"]), float(match["score"])))
    return found


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def index_uploads(files: list[tuple[str, bytes, str]]) -> AppTest:
    at = open_app("index")
    assert_clean(at)
    at.file_uploader[0].set_value(files)
    at.button(key="index-button").click().run()
    return finish_jobs(at)


def index_folder(folder: Path, prune: bool = False, at: AppTest | None = None) -> AppTest:
    at = at or open_app("index")
    at.text_input(key="index-folder").input(str(folder))
    at.checkbox(key="index-prune").set_value(prune)
    at.button(key="index-button").click().run()
    return finish_jobs(at)


def search(text: str, at: AppTest | None = None, **options) -> AppTest:
    at = at or open_app()
    if "top_k" in options:
        at.select_slider(key="search-top-k").set_value(options["top_k"])
    if "min_score" in options:
        at.slider(key="search-min-score").set_value(options["min_score"])
    at.text_input(key="search-text").input(text)
    at.form_submit_button[0].click().run()
    return at


def trained_model(model_path: Path) -> bool:
    """Ranking is asserted with the trained tiny CLIP (always, with the default test model); a
    random-weight stand-in set through EMBEDDER_TEST_MODEL while the fixture is being built cannot rank."""
    readme = model_path / "README.md"
    return "EMBEDDER_TEST_MODEL" not in os.environ or (readme.is_file() and "embedder.evaluation.synthetic" in readme.read_text())


def open_page(url_path: str) -> AppTest:
    """The app on a page that `st.navigation` registers from a function (Duplicates).

    `AppTest.switch_page` only finds pages made from files; a function page is known by the hash
    of its url path, which the first run registers.
    """
    return goto(AppTest.from_file(MAIN, default_timeout=TIMEOUT).run(), url_path)
