"""Nothing leaves the machine, and odd names stay text: the app in a real Chromium, every request recorded.

Hostile names point at a listener on a local port: rendered as Markdown, `![a](https:127.0.0.1:PORT)`
would make the browser connect to it. Every request the page makes must go to the app's own origin,
and the listener must receive no connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from browserkit import Listener, app_environment, browser_page, chromium_path, elsewhere, idle, streamlit_app
from embedder.evaluation import synthetic
from embedder_ui.format import WORD_JOINER

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
KINDS_APP = ROOT / "tests" / "literal_kinds_app.py"
# What Markdown would have made of user text: pictures, links, maths, icons, emphasis.
RENDERED = "img, a, .katex, [data-testid=stIconMaterial], strong, em, del, code, span[style*=color]"


@pytest.fixture
def chromium() -> Path:
    return chromium_path()


@pytest.fixture
def listener() -> Iterator[Listener]:
    port = Listener()
    yield port
    port.close()


def hostile_texts(port: int) -> list[str]:
    """Text that Markdown would turn into a request to `port`, a link, an icon, colour or maths."""
    return [
        f"![a](https:127.0.0.1:{port}/md) <img src=https:127.0.0.1:{port}/html> end",
        ":material/home: :red[hot] :smile: $x^2$ **b** _i_ `c` ~~d~~",
        f"[l](https:127.0.0.1:{port}/link) www.example.test me@mail.test http://x.test/y",
    ]


def _seen(text: str) -> str:
    return text.replace(WORD_JOINER, "")


# --------------------------------------------------------------------------------------------
# Each kind of element, as Streamlit draws it


def _markdown_in(pg: Page, selector: str) -> list[tuple[int, str]]:
    """(how many rendered elements, the text) of each Markdown container under `selector`."""
    return pg.evaluate(
        """([sel, rendered]) => [...document.querySelectorAll(
               `${sel} [data-testid="stMarkdownContainer"], ${sel} [data-testid="stCaptionContainer"]`)]
             .map(e => [e.querySelectorAll(rendered).length, e.innerText])""",
        [selector, RENDERED],
    )


def test_user_text_reads_back_exactly_in_every_kind_of_element(chromium: Path, listener: Listener, tmp_path) -> None:
    texts = hostile_texts(listener.port)
    requests: list[str] = []
    env = {"PROBE_TEXTS": json.dumps(texts)}
    with streamlit_app(KINDS_APP, env, tmp_path / "streamlit.log") as url:
        # The control: the same texts as raw Markdown do reach the listener (the probe can see it).
        control: list[str] = []
        with browser_page(chromium, url, control, path="/?raw=1") as pg:
            expect(pg.locator('[class*="st-key-kind-raw-"]')).to_have_count(len(texts))
            pg.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert f"https://127.0.0.1:{listener.port}/md" in elsewhere(control, url) and listener.received() > 0
        before = listener.connections

        with browser_page(chromium, url, requests) as pg:
            expect(pg.locator(f".st-key-toast-{len(texts) - 1} button")).to_be_visible()  # the whole page is drawn
            pg.wait_for_function("() => !document.querySelector('[data-testid=stSkeleton]')")  # widgets load late
            idle(pg)
            for n, text in enumerate(texts):
                for kind in ("markdown", "caption", "write", "info", "warning", "error", "success", "subheader",
                             "metric", "progress", "radio", "checkbox", "toggle", "button", "download", "expander",
                             "tabs", "popover", "status", "select_slider", "pills", "segmented",
                             "text_input_label", "uploader_label"):
                    shown = _markdown_in(pg, f".st-key-kind-{kind}-{n}")
                    assert shown, (kind, n)
                    assert any(_seen(t).strip() == text for _, t in shown if text[:3] in t), (kind, shown)
                    assert all(rendered == 0 for rendered, _ in shown), (kind, shown)
                # Plain text: the text as it is, no backslashes.
                box = pg.locator(f".st-key-kind-selectbox-{n} input")
                assert box.input_value() == text
                box.click()
                box.press("ArrowDown")  # opens the list (react-aria's combobox)
                expect(pg.locator("[role=listbox]")).to_have_text(text)
                pg.keyboard.press("Escape")
                chips = pg.locator(f".st-key-kind-multiselect-{n} [data-tag] > span")
                expect(chips).to_have_text([text])
                pg.locator(f".st-key-kind-multiselect-{n} input").click()
                expect(pg.locator("[role=listbox]")).to_have_text(f"{text} 1")
                pg.keyboard.press("Escape")
                assert pg.locator(f".st-key-kind-text_input_value-{n} input").input_value() == text
                expect(pg.locator(f".st-key-kind-code-{n} code")).to_have_text(text)
                expect(pg.locator(f".st-key-kind-text-{n} [data-testid=stText]")).to_have_text(text)
                # A help tooltip, a dialog's title and a toast are Markdown too.
                pg.locator(f".st-key-help-{n} button").first.hover()
                tip = pg.locator("[data-testid=stTooltipContent]")
                expect(tip).to_be_visible()
                assert _seen(tip.inner_text()).strip() == text and tip.locator(RENDERED).count() == 0
                pg.mouse.move(0, 0)
                pg.locator(f".st-key-dialog-{n} button").click()
                dialog = pg.get_by_role("dialog")
                expect(dialog).to_be_visible()
                assert text in _seen(dialog.inner_text()) and dialog.locator(RENDERED).count() == 0
                pg.keyboard.press("Escape")
                dialog.wait_for(state="hidden")
                idle(pg)
                pg.locator(f".st-key-toast-{n} button").click()
                toast = pg.locator("[data-testid=stToast]").filter(has_text=re.compile(re.escape(text[:6])))
                expect(toast).to_have_count(1)
                assert text in _seen(toast.inner_text()) and toast.locator(RENDERED).count() == 0
                idle(pg)
            pg.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert elsewhere(requests, url) == []
    assert listener.received() == before
