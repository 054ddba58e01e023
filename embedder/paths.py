"""File paths as the product stores and shows them, and back.

A file name is bytes; most are UTF-8, but old disks and NAS shares hold names like `M\\xe9xico.jpg`
(Latin-1) that Python can open but Qdrant cannot store (its payloads are UTF-8 JSON). Stored and
shown, such a byte is written `\\xe9`; a backslash that would read as such an escape is written
`\\x5c`, so the text is displayable and leads back to exactly one file. Valid UTF-8 names without
that pattern are stored exactly as they are.

Every place that stores a path uses `path_to_text`; every place that turns a stored path back
into a file (existence checks, thumbnails, opening) uses `text_to_path`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_READS_AS_ESCAPE = re.compile(r"\\(?=x[0-9a-fA-F]{2})")
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def path_to_text(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """The stored, displayable text of a path: undecodable bytes as `\\xNN`, lossless."""
    text = os.fsencode(path).decode("utf-8", "surrogateescape")
    text = _READS_AS_ESCAPE.sub(r"\\x5c", text)
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def text_to_path(text: str) -> Path:
    """The file a stored text names (the inverse of `path_to_text`)."""
    if "\\" not in text:
        return Path(text)
    parts = _ESCAPE.split(text)  # literal text, escaped byte, literal text, …
    raw = b"".join(
        bytes([int(part, 16)]) if i % 2 else part.encode("utf-8", "surrogateescape") for i, part in enumerate(parts)
    )
    return Path(os.fsdecode(raw))


def typed_path(arg: str) -> Path:
    """A path given on a command line: the file it names, else the file it names as shown by the
    product (`…/M\\xe9xico.jpg`, copied from earlier output)."""
    path = Path(os.path.expanduser(arg))
    return path if os.path.lexists(path) else text_to_path(str(path))


def missing(path: str | os.PathLike[str]) -> bool:
    """Whether nothing is at `path` (a dangling symlink included); one that exists but cannot be
    looked at (permission denied) is not missing."""
    try:
        os.stat(Path(path).expanduser())
    except OSError as exc:
        return isinstance(exc, (FileNotFoundError, NotADirectoryError))
    return False
