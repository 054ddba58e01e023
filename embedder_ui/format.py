"""Pure text helpers for the pages: user text always literal.

Text a person or a file controls (file, folder and upload names, tag labels, the query, messages
that quote a path) goes through `literal` wherever Streamlit renders Markdown, and that is nearly
everywhere: st.markdown, captions, alerts, toasts, subheaders, metric labels and values, help
tooltips, dialog, expander, tab, popover and status titles, the labels of every widget, and the
options of radio buttons, select sliders, pills and segmented controls. There an image written
`![a](http:…)` makes the browser fetch it, `:material/x:` draws an icon, `:red[…]` colours,
`$x$` typesets maths, and even a bare `www.x.test` becomes a link.

Plain text, and therefore given as it is (escaped, it would show its backslashes): the options of
selectboxes and multiselects and their chosen chips, text input values and placeholders, the
browser tab's title, st.code, st.text and dataframe cells. HTML is never rendered anywhere (no page
allows it). `tests/test_browser_privacy.py` checks each of these kinds in Chromium.

Nothing here imports Streamlit or torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from embedder.indexing.tags import tag_list
from embedder.terminal import printable

if TYPE_CHECKING:
    from embedder.jobs.runner import Job
    from embedder.query.pager import Result

SHOWN_CHARS = 120  # a query's words as shown in its row and the results' heading
CARD_TAGS = 3  # tags shown on a result card (the viewer shows them all)

_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
# Where GFM would make a link of plain text (`http://`, `www.`, `name@host`), even escaped: a word
# joiner (U+2060, invisible) there keeps it text.
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)")
WORD_JOINER = "\u2060"


def literal(text: object) -> str:
    """`text` as Markdown that shows it as typed, on one line: no images, links, emphasis, icons,
    colours, emoji codes or maths. For every label, caption and message that holds user text.
    A byte that is not UTF-8 (a file name's) and a control character show as `\\xNN`, as the CLI
    shows them (they cannot reach the browser otherwise)."""
    flat = printable(" ".join(str(text).split()))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, flat))


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` cut to `limit` characters with an ellipsis, so a pasted essay does not fill the page."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def score_caption(result: Result) -> str:
    """The caption under a thumbnail: the file name, then the cosine score to 3 decimals."""
    return f"{literal(result.name)} · {result.score:.3f}"


def why_caption(result: Result) -> str:
    """Why a result matched, for its card: `picture · text · name` ("" when it does not say)."""
    return " · ".join(result.matched)


def marked_line(line: str, marks: Sequence[tuple[int, int]]) -> str:
    """`line` (text read in a picture: the user's) as Markdown that shows it literally, the parts at
    `marks` (start, end offsets) in bold: each piece goes through `literal`, and the bold markers only
    ever stand around escaped pieces, so `**b**` or `![a](http://x)` in the line stays text."""
    pieces, at = [], 0
    for start, end in sorted(m for m in marks if 0 <= m[0] < m[1] <= len(line)):
        if start < at:  # overlapping marks: the first wins
            continue
        pieces.append(_literal_keeping_spaces(line[at:start]))
        pieces.append(f"**{literal(line[start:end])}**")
        at = end
    pieces.append(_literal_keeping_spaces(line[at:]))
    return "".join(pieces)


def _literal_keeping_spaces(text: str) -> str:
    """`literal(text)`, with one space kept where `text` starts or ends with whitespace (literal trims)."""
    if not text.strip():
        return " " if text else ""
    lead = " " if text[0].isspace() else ""
    trail = " " if text[-1].isspace() else ""
    return f"{lead}{literal(text)}{trail}"


def job_title(job: Job) -> str:
    """`**Reading text** · /photos/2019`: what a job does (its kind's word) and what it works on (literal)."""
    doing = job.request.doing if job.state == "running" else "Queued"
    label = job.request.label.removeprefix(f"{job.request.doing}: ")
    return f"**{doing}** · {literal(label)}"


def tag_caption(payload: dict, limit: int = CARD_TAGS) -> str:
    """An image's first `limit` tags as small grey labels (Markdown badges); "" for an untagged image."""
    return " ".join(f":gray-badge[{literal(tag)}]" for tag in tag_list(payload)[:limit])


def distinct_tails(folders: Sequence[str]) -> list[str]:
    """For each folder, the fewest trailing parts that tell it apart from the others:
    `…/2019/june` and `…/2020/june` read `2019/june` and `2020/june`."""
    split = [Path(f).parts for f in folders]
    shown = []
    for parts in split:
        depth = 1
        while depth < len(parts) and any(o != parts and o[-depth:] == parts[-depth:] for o in split):
            depth += 1
        shown.append(os.path.join(*parts[-depth:]) if parts else "")
    return shown


def short_locations(paths: Sequence[str]) -> list[str]:
    """For each file, the fewest trailing folders that tell its folder apart from the others'
    (`a/IMG_0001.JPG` and `b/IMG_0001.JPG` read `a` and `b`, not just the file name)."""
    return distinct_tails([os.path.dirname(p) for p in paths])


def is_upload(path: str, upload_dir: Path | None) -> bool:
    """Whether `path` is a kept upload (stored under a content hash; people know it by its name)."""
    return bool(upload_dir) and (path + os.sep).startswith(os.path.join(os.path.abspath(upload_dir), ""))


def month_taken(result: Result) -> str:
    """`June 2019`: the month a picture was taken (EXIF), else its file's; "Date unknown" without one."""
    stamp = result.payload.get("date")
    if not isinstance(stamp, (int, float)):
        return "Date unknown"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%B %Y")


def taken_on(payload: dict) -> str:
    """The day a picture was taken (EXIF), else its file's date, as `2019-06-01`; "" if unknown."""
    stamp = payload.get("date")
    if not isinstance(stamp, (int, float)):
        return ""
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d")


def where_caption(result: Result, location: str, upload_dir: Path | None) -> str:
    """The card's second line: which folder (or "uploaded"), the date taken, other places it is at."""
    paths = result.payload.get("paths") or [result.path]
    parts = ["uploaded" if is_upload(result.path, upload_dir) else f":material/folder: {literal(location)}"]
    if day := taken_on(result.payload):
        parts.append(day)
    if len(paths) > 1:
        parts.append(f"+{len(paths) - 1} more place{'s' if len(paths) > 2 else ''}")
    return " · ".join(parts)


def when_taken(payload: dict) -> str:
    """`taken 2019-06-01 14:03 (UTC+02:00)` (EXIF: the camera's own clock, with its offset when it
    wrote one), else `file dated 2019-06-01 14:03`, else ""."""
    taken = payload.get("taken_at")
    stamp = taken if isinstance(taken, (int, float)) else payload.get("mtime")
    if not isinstance(stamp, (int, float)):
        return ""
    when = datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M")
    if stamp is not taken:
        return f"file dated {when}"
    offset = payload.get("taken_offset")
    return f"taken {when}" + (f" (UTC{literal(offset)})" if isinstance(offset, str) and offset else "")


def file_size(num_bytes: int | None) -> str:
    """`3.2 MB`, `512 bytes`; `?` when unknown."""
    if not num_bytes:
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return "?"


def job_progress(job: Job) -> str:
    """`340 of 802 files · 12.3 images/s · about 1 min 05 s left`, leaving out what is not known yet."""
    p = job.progress
    if job.state == "queued":
        return "waiting for the job before it"
    if p is None:
        return "starting…"
    return p.words()
