"""The pages' text helpers: user text is made literal Markdown, and the module stands alone.

What each widget kind does with the result is checked in a real browser in test_browser_privacy.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from appkit import unescape
from embedder.query.why import mark
from embedder_ui.format import WORD_JOINER, literal, marked_line

ROOT = Path(__file__).resolve().parent.parent


def test_literal_escapes_every_punctuation_mark_and_keeps_the_text() -> None:
    hostile = "![a](http:127.0.0.1:9) <img src=x> :material/home: :red[hot] $x^2$ [l](y) **b** `c` ~~d~~ #1 | e |"
    shown = literal(hostile)
    assert re.sub(r"\\(.)", r"\1", shown) == hostile
    assert not re.search(r"[!-/:-@\[-`{-~]", re.sub(r"\\.", "", shown))  # every ASCII punctuation mark escaped


def test_literal_breaks_the_links_gfm_makes_of_plain_text() -> None:
    for text, where in [
        ("see http://127.0.0.1:9/x.png", "http:" + WORD_JOINER),
        ("HTTPS://host.test", "HTTPS:" + WORD_JOINER),
        ("www.photos.test.jpg", "www" + WORD_JOINER),
        ("WWW.photos.test.jpg", "WWW" + WORD_JOINER),
        ("me@mail.test.png", "@" + WORD_JOINER),
    ]:
        shown = literal(text)
        assert where in re.sub(r"\\(.)", r"\1", shown), (text, shown)
        assert re.sub(r"\\(.)", r"\1", shown).replace(WORD_JOINER, "") == text
    assert WORD_JOINER not in literal("14:03 +02:00 a.b wwwx.test")  # only where a link would form


def test_literal_puts_a_name_on_one_line() -> None:
    assert literal("two\nlines\tand  spaces") == "two lines and spaces"


def test_literal_shows_bytes_that_are_not_utf8_and_control_characters_as_the_cli_does() -> None:
    assert literal("D\udcfcsseldorf") == "D\\\\xfcsseldorf"  # the browser gets valid text: D\xfcsseldorf
    assert literal("red\x1b[31m \u202eevil") == "red\\\\x1b\\[31m \\\\xe2\\\\x80\\\\xaeevil"


def test_format_imports_neither_streamlit_nor_torch() -> None:
    code = "import sys, embedder_ui.format; print(sorted({'streamlit', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_marked_line_bolds_the_query_words_and_shows_the_rest_literally() -> None:
    line = "see ![a](http://x) and **b**  :red[c] Name-Guest"
    marked = marked_line(line, mark(line, frozenset({"guest", "b"})))
    assert "**Guest**" in marked and "**b**" in marked and "![" not in marked and ":red[" not in marked
    assert unescape(marked.replace("**Guest**", "Guest").replace("**b**", "b")) == " ".join(line.split())
    assert marked_line("a b", [(0, 1), (0, 3), (5, 9)]) == "**a** b"  # overlapping and outside marks: left out
