"""Uploads: hostile names write nothing outside UPLOAD_DIR, overwrite nothing, lose nothing.

The browser's file name is a label, never a path. Every good upload must be kept (its bytes,
content-addressed) and findable under the name it was sent with; every refused one must say why.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedder.engine import Engine
from embedder.media.images import bytes_hash, decode, is_image_name, point_id
from embedder.errors import UploadError
from embedder.query.terms import Query
from embedder.media.uploads import MAX_NAME_CHARS, display_name, save_upload
from faultkit import distinct_image, encode_png


def image_bytes(i: int) -> bytes:
    return encode_png(distinct_image(100 + i, (64, 48)))


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every file under `root` (links not followed) and the SHA-256 of its bytes, except under `skip`."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames[:] = []
            continue
        for name in filenames:
            path = Path(dirpath) / name
            out[str(path)] = "link" if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def lexists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):  # a name too long, or with NUL, cannot exist
        return False


def naive_targets(raw: str, upload_dir: Path) -> set[Path]:
    """The paths a careless server would write `raw` to: joined to UPLOAD_DIR, to the cwd, or as is."""
    cleaned = raw.replace("\\", "/").split("\x00")[0], raw.replace("\\", "/").replace("\x00", "")
    return {
        Path(os.path.normpath(os.path.join(base, name)))
        for name in cleaned
        if name.strip("/")
        for base in (str(upload_dir), os.getcwd())
    }


HOSTILE = [
    "../../../../escape.png",
    "..\\..\\..\\..\\win-escape.png",
    "/tmp/absolute.png",
    "C:\\Windows\\System32\\drivers.png",
    "nul\x00byte.png",
    "a\x00/../../nul-escape.png",
    "x" * 300 + ".png",
    "ünïcødé 写真 🐱.png",
    "with space.png",
    "<img src=x onerror=alert(1)>.png",
    "**bold** [link](http://x).png",
    "./././dots.png",
    "trailing-slash.png/",
    "\u202etxt.png",  # right-to-left override: a control character, dropped
]


def test_hostile_names_stay_inside_upload_dir_and_every_image_is_findable(engine: Engine, tmp_path: Path) -> None:
    upload_dir = tmp_path / "srv" / "data" / "uploads"
    victim = tmp_path / "victim.png"
    victim.write_bytes(image_bytes(99))
    upload_dir.mkdir(parents=True)
    (tmp_path / "srv" / "escape.png").write_bytes(b"an existing file a traversal could hit")
    qdrant = engine.settings.qdrant_path
    before = snapshot(tmp_path, qdrant)

    uploads = [(name, image_bytes(i)) for i, name in enumerate(HOSTILE)]
    uploads += [
        (str(victim), image_bytes(50)),  # an absolute path to an existing file: must not overwrite it
        ("../victim.png", image_bytes(51)),
        ("copy-a.png", image_bytes(0)),  # the same bytes as the first upload, under other names
        ("copy-b.png", image_bytes(0)),
        ("photo.png", image_bytes(60)),  # one name, two different images
        ("photo.png", image_bytes(61)),
    ]
    refused = [("", image_bytes(70)), ("..", image_bytes(71)), (".png", image_bytes(72)), ("run.sh", b"#!/bin/sh\nrm -rf /\n")]
    report = engine.indexer.index_uploads(uploads + refused, upload_dir)

    # Nothing outside UPLOAD_DIR changed or appeared; every file inside it is content-addressed.
    after = snapshot(tmp_path, qdrant)
    outside = {p: h for p, h in after.items() if upload_dir not in Path(p).parents}
    assert outside == before
    for raw, _ in uploads + refused:  # where a naive join of the name would have written
        for target in naive_targets(raw, upload_dir):
            assert upload_dir in target.parents or str(target) in before or not lexists(target) or target.is_dir(), raw
    inside = [Path(p) for p in after if upload_dir in Path(p).parents]
    for path in inside:
        assert path.parent.parent == upload_dir and path.parent.name == path.stem[:2]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem  # nothing overwritten by other bytes
    distinct = {bytes_hash(data) for _, data in uploads}
    assert len(inside) == len(distinct)

    # Refused with a reason, and only those.
    assert sorted(f.path for f in report.failed) == sorted(name for name, _ in refused)
    assert all("not a supported image type" in f.reason for f in report.failed)

    # Every good upload is one point, findable by its own pixels, under the name it was sent with.
    assert engine.store.count() == len(distinct)
    for name, data in uploads:
        shown = display_name(name)
        assert "/" not in shown and "\\" not in shown and "\x00" not in shown and len(shown) <= MAX_NAME_CHARS
        hits = engine.searcher.search(Query.image(decode(data, 10**7, engine.encoder.image_size).image), 1)
        assert hits[0].id == point_id(bytes_hash(data)), name
        assert shown in hits[0].payload["names"], (name, hits[0].payload["names"])
        assert all(upload_dir in Path(p).parents for p in hits[0].payload["paths"])
    first = engine.store.retrieve([point_id(bytes_hash(image_bytes(0)))])
    assert {"escape.png", "copy-a.png", "copy-b.png"} <= set(next(iter(first.values()))["names"])
    photos = [p for _, p, _ in engine.store.scroll() if "photo.png" in p["names"]]
    assert len(photos) == 2  # same name, different images: both kept
    assert victim.read_bytes() == image_bytes(99)

    # Uploading it all again changes nothing.
    again = engine.indexer.index_uploads(uploads, upload_dir)
    assert again.added == [] and engine.store.count() == len(distinct)
    assert snapshot(tmp_path, qdrant) == after


NAME_PARTS = st.sampled_from(["..", ".", "/", "\\", "\x00", ":", "C:", "~", "$HOME", "%2e%2e", "\u202e", "\n", " ", "写真", "🐱", "a"])


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.one_of(NAME_PARTS, st.text(min_size=1, max_size=40)), max_size=12),
    suffix=st.sampled_from([".png", ".JPG", ".webp", "", ".txt", ".png.exe", ".png/", ".png\x00"]),
    salt=st.integers(0, 3),
)
def test_any_name_is_saved_inside_upload_dir_under_its_hash(tmp_path_factory, parts, suffix, salt) -> None:
    base = tmp_path_factory.getbasetemp() / "names"
    upload_dir = base / "uploads"
    raw = "".join(parts) + suffix
    data = b"\x89PNG not really" + bytes([salt])
    try:
        saved = save_upload(raw, data, upload_dir)
    except UploadError as exc:
        assert "not a supported image type" in str(exc)
        assert not is_image_name(display_name(raw))
        return
    assert saved.path.resolve().parent.parent == upload_dir.resolve()
    assert saved.path.name == f"{bytes_hash(data)}{Path(saved.name).suffix.lower()}"
    assert saved.path.read_bytes() == data
    assert is_image_name(saved.name) and len(saved.name) <= MAX_NAME_CHARS
    assert not any(c in saved.name for c in "/\\\x00\n\u202e")
    stray = [p for p in base.rglob("*") if p.is_file() and upload_dir not in p.parents]
    assert stray == []


def test_uploads_over_max_upload_mb_are_refused_and_not_kept(reopen, tmp_path: Path) -> None:
    engine = reopen(max_upload_mb=1)
    try:
        big = encode_png(distinct_image(5, (64, 48)).resize((1200, 900)), compress_level=0)
        assert len(big) > 2**20
        small = image_bytes(1)
        report = engine.indexer.index_uploads([("big.png", big), ("small.png", small)], engine.settings.upload_dir)
        assert [f.path for f in report.failed] == ["big.png"]
        assert "MAX_UPLOAD_MB" in report.failed[0].reason
        assert engine.store.count() == 1
        kept = [p for p in engine.settings.upload_dir.rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in kept] == [small]
    finally:
        engine.close()


def test_uploads_that_are_not_images_are_not_kept(engine: Engine) -> None:
    upload_dir = engine.settings.upload_dir
    report = engine.indexer.index_uploads(
        [("evil.png", b"<html><script>alert(1)</script></html>"), ("good.png", image_bytes(3))], upload_dir
    )
    assert [Path(f.path).suffix for f in report.failed] == [".png"] and len(report.added) == 1
    kept = [p for p in upload_dir.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in kept] == [image_bytes(3)]


def test_a_full_disk_while_saving_leaves_no_partial_file_and_a_retry_works(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_dir = engine.settings.upload_dir
    real_open = open

    class HalfWritten:
        """A file whose disk fills up halfway through the write."""

        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

    def opened(path, mode):  # only the upload's own file: the store's record is written the same way
        return HalfWritten(real_open(path, mode)) if Path(path).name.startswith(".upload-") else real_open(path, mode)

    monkeypatch.setattr("embedder.durable.open", opened, raising=False)
    report = engine.indexer.index_uploads([("full.png", image_bytes(7))], upload_dir)
    assert [(f.path, "No space left" in f.reason) for f in report.failed] == [("full.png", True)]
    assert [p for p in upload_dir.rglob("*") if p.is_file()] == []  # no partial file, no temp file
    assert engine.store.count() == 0

    monkeypatch.setattr("embedder.durable.open", real_open, raising=False)  # space freed
    again = engine.indexer.index_uploads([("full.png", image_bytes(7))], upload_dir)
    assert len(again.added) == 1 and engine.store.count() == 1
    assert [p.read_bytes() for p in upload_dir.rglob("*") if p.is_file()] == [image_bytes(7)]
