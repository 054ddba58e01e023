"""Uploaded files: kept content-addressed under UPLOAD_DIR, the user's name only as a label.

The name a browser sends is never used as a path, so no name (`../x`, `/etc/passwd`, `C:\\x`,
NUL bytes, 300 characters) can write outside UPLOAD_DIR or overwrite another upload.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from embedder.durable import write_bytes
from embedder.errors import UploadError
from embedder.media.images import bytes_hash, is_image_name

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class SavedUpload:
    path: Path  # where the bytes live, under UPLOAD_DIR
    name: str  # the user's file name, cleaned for display


def display_name(raw: str) -> str:
    """The last component of an uploaded name, without control characters, at most 200 characters."""
    last = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    clean = "".join(c for c in last if unicodedata.category(c)[0] != "C").strip()
    if clean in ("", ".", ".."):
        clean = "upload"
    if len(clean) > MAX_NAME_CHARS:
        stem, suffix = os.path.splitext(clean)
        suffix = suffix if len(suffix) <= 10 else ""
        clean = stem[: MAX_NAME_CHARS - len(suffix) - 1] + "…" + suffix
    return clean


def upload_path(upload_dir: Path, name: str, data: bytes) -> Path:
    """Where an upload's bytes are kept: UPLOAD_DIR/<hash[:2]>/<hash><ext of its cleaned name>."""
    digest = bytes_hash(data)
    return upload_dir / digest[:2] / f"{digest}{Path(name).suffix.lower()}"


def save_upload(raw_name: str, data: bytes, upload_dir: Path, max_bytes: int | None = None) -> SavedUpload:
    """Write `data` to UPLOAD_DIR/<hash[:2]>/<hash><ext> once; the same bytes again reuse the file.

    Raises UploadError when the name has no supported image extension or the file is over `max_bytes`.
    """
    name = display_name(raw_name)
    if not is_image_name(name):
        raise UploadError(f"not a supported image type ({Path(name).suffix or 'no extension'})")
    if max_bytes is not None and len(data) > max_bytes:
        raise UploadError(
            f"{len(data) / 2**20:.1f} MB is above the upload limit of {max_bytes / 2**20:.0f} MB (MAX_UPLOAD_MB)"
        )
    path = upload_path(upload_dir, name, data)
    folder = path.parent
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data, durable=False, prefix=".upload-")
        log.info("saved upload %r as %s", name, path)
    return SavedUpload(path=path, name=name)
