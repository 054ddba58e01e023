"""Text for a terminal: a file name shown so that nothing in it can act on the terminal."""

from __future__ import annotations

import unicodedata

# Characters a terminal obeys instead of showing: C0/C1 controls (newline, ESC, CSI), DEL, line and
# paragraph separators, and the bidirectional controls that reorder what follows ("Trojan Source").
_OBEYED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNDECODABLE = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for name bytes that are not UTF-8


def printable(text: str) -> str:
    """`text` with each character a terminal would obey shown as its UTF-8 bytes, `\\xNN`: a name
    with a newline stays on one line (`a\\x0ab.png`) and `\\x1b[31m` cannot colour the screen.
    A byte that is not UTF-8 shows as `\\xNN` too, and a lone surrogate (unprintable) as `\\uNNNN`."""
    if text.isprintable():
        return text
    return "".join(_shown(char) for char in text)


def _shown(char: str) -> str:
    code = ord(char)
    category = unicodedata.category(char)
    if code in _UNDECODABLE:
        return f"\\x{code - 0xDC00:02x}"
    if category == "Cs":
        return f"\\u{code:04x}"
    if category in _OBEYED_CATEGORIES or char in _BIDI_CONTROLS:
        return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return char
