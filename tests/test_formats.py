"""What phones, cameras and NAS boxes write: AVIF, HEIC and camera RAW are indexed and found; videos,
drawings and documents are counted as skipped with a reason; broken ones fail alone, each with one line."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder import cli
from embedder.media import formats
from embedder.engine import Engine
from embedder.errors import ImageError
from embedder.media.images import CHANGED, _raw_peak, decode, discover, read_meta
from embedder.indexing.indexer import Failure, IndexReport
from embedder.query.terms import Query
from embedder.query.filters import check_file_types, file_types, make_filter
from embedder.jobs.watch import _wanted
from appkit import app_env, assert_clean, index_folder, metrics, render
from imagefiles import COLOURS
from modelkit import photo
from rawfiles import dng, dng_bytes
from test_faults_files import peak_growth

__all__ = ["app_env"]  # a fixture: imported for pytest to find

LIMIT = 50_000_000
TAKEN = 1626255000.0  # 2021-07-14 09:30:00, the date tests/rawfiles.py writes


def halves(size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", size, COLOURS["blue"])
    img.paste(COLOURS["red"], (0, 0, size[0] // 2, size[1]))
    return img


def colour_at(image: Image.Image, x: float, y: float) -> str:
    """The named colour nearest the pixel at fractions (x, y) of the image."""
    pixel = np.array(image.getpixel((int(x * (image.width - 1)), int(y * (image.height - 1)))), dtype=float)
    return min(COLOURS, key=lambda name: float(np.sum((np.array(COLOURS[name]) - pixel) ** 2)))


def with_exif(image: Image.Image, path: Path, fmt: str, orientation: int = 1) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    image.save(path, fmt, exif=exif.tobytes(), quality=90)
    return path


# --------------------------------------------------------------------------------------------
# Which files are pictures: from the installed decoders


def test_picture_extensions_come_from_the_decoders_pillow_and_pillow_heif_register() -> None:
    registered = Image.registered_extensions()
    for fmt in ("AVIF", "HEIF", "JPEG", "PNG", "WEBP", "TIFF"):
        mine = {ext for ext, f in registered.items() if f == fmt}
        assert mine and mine <= formats.IMAGE_EXTENSIONS, fmt
    assert {".avif", ".heic", ".heif", ".hif", ".jpg", ".mpo"} <= formats.IMAGE_EXTENSIONS
    assert {".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"} <= formats.IMAGE_EXTENSIONS
    # Pillow knows these by name, but the product does not use their decoders.
    assert not {".psd", ".jp2", ".eps", ".ico", ".pdf"} & formats.IMAGE_EXTENSIONS
    assert formats.is_image_name("IMG_0001.HEIC") and formats.is_raw_name("DSC_0001.NEF")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("clip.mp4", "videos are not indexed"),
        ("IMG_0001.MOV", "videos are not indexed"),
        ("trip.mkv", "videos are not indexed"),
        ("call.3gp", "videos are not indexed"),
        ("logo.svg", "SVG drawings are not indexed"),
        ("scan.pdf", "PDF documents are not indexed"),
        ("layers.psd", "Photoshop documents are not indexed"),
        ("scan.jp2", "JPEG2000 images are not indexed"),
        # sidecars and other files people keep beside photos: ignored without a word
        ("IMG_0001.xmp", None),
        ("IMG_0001.AAE", None),
        ("MVI_0001.THM", None),
        ("notes.txt", None),
        ("Thumbs.db", None),
        ("README", None),
        ("photo.jpg", None),  # a picture, not skipped
    ],
)
def test_what_is_skipped_and_why(name: str, reason: str | None) -> None:
    kind = formats.skipped(name)
    assert (kind.reason if kind else None) == reason


def test_discovery_reports_skipped_kinds_and_ignores_sidecars(tmp_path: Path) -> None:
    for name in ("a.avif", "b.heic", "c.dng", "d.mp4", "e.svg", "f.pdf", "g.xmp", "h.txt", "i"):
        (tmp_path / name).write_bytes(b"x")
    skipped: dict[str, str] = {}
    found = list(discover([tmp_path], on_skip=lambda path, kind: skipped.__setitem__(path.name, kind.reason)))
    assert [p.name for p in found] == ["a.avif", "b.heic", "c.dng"]
    assert skipped == {
        "d.mp4": "videos are not indexed",
        "e.svg": "SVG drawings are not indexed",
        "f.pdf": "PDF documents are not indexed",
    }
    # A file named on its own that is no picture is said to be skipped, whatever it is.
    named: list[str] = []
    list(discover([tmp_path / "h.txt"], on_skip=lambda path, kind: named.append(kind.reason)))
    assert named == ["files that are not pictures are not indexed"]


def test_the_watcher_follows_the_same_pictures() -> None:
    assert all(_wanted(f"/p/x{ext}") for ext in (".avif", ".HEIC", ".hif", ".dng", ".CR3", ".nef"))
    assert not any(_wanted(f"/p/x{ext}") for ext in (".mp4", ".svg", ".xmp", ".txt"))


def test_search_file_types_offer_avif_heif_and_raw() -> None:
    assert {"AVIF", "HEIF", "RAW", "JPEG"} <= set(file_types())
    assert not {"NEF", "DNG", "HEIC", "JPG"} & set(file_types())  # one entry per kind, not per extension
    assert {"NEF", "CR3", "DNG", "ARW"} <= set(make_filter(types=["raw"]).formats)
    assert make_filter(types=["heic"]).formats == ("HEIF",)
    assert check_file_types(["nef", "avif"]) == ["nef", "avif"]


# --------------------------------------------------------------------------------------------
# AVIF and HEIC


@pytest.mark.parametrize(("suffix", "fmt"), [(".avif", "AVIF"), (".heic", "HEIF")])
@pytest.mark.parametrize("orientation", [1, 6])
def test_avif_and_heic_decode_upright_with_their_date(tmp_path: Path, suffix: str, fmt: str, orientation: int) -> None:
    path = with_exif(halves(), tmp_path / f"photo{suffix}", fmt, orientation)
    decoded = decode(path, LIMIT)
    assert decoded.meta.format == fmt and decoded.meta.taken_at == 1577934245.0
    if orientation == 1:
        assert decoded.image.size == (160, 120)
        assert (colour_at(decoded.image, 0.1, 0.5), colour_at(decoded.image, 0.9, 0.5)) == ("red", "blue")
    else:  # turned a quarter clockwise: the left half is now on top
        assert decoded.image.size == (120, 160)
        assert (colour_at(decoded.image, 0.5, 0.1), colour_at(decoded.image, 0.5, 0.9)) == ("red", "blue")
    assert read_meta(path, LIMIT).format == fmt


# --------------------------------------------------------------------------------------------
# Camera RAW (a real DNG, written by tests/rawfiles.py)


def test_a_raw_without_a_preview_is_developed_at_half_size(tmp_path: Path) -> None:
    path = dng(tmp_path / "IMG_0001.DNG", halves((320, 240)))
    decoded = decode(path, LIMIT)
    assert decoded.image.size == (160, 120)  # half size: the develop LibRaw does fastest
    assert (colour_at(decoded.image, 0.1, 0.5), colour_at(decoded.image, 0.9, 0.5)) == ("red", "blue")
    assert decoded.meta.width == 320 and decoded.meta.height == 240  # the sensor's size
    assert decoded.meta.format == "DNG" and decoded.meta.taken_at == TAKEN
    assert read_meta(path, LIMIT) == decoded.meta


def test_a_raw_uses_its_embedded_preview_when_it_is_large_enough(tmp_path: Path) -> None:
    green = Image.new("RGB", (320, 240), COLOURS["green"])  # unlike the mosaic: shows which one was used
    path = dng(tmp_path / "preview.dng", halves((320, 240)), preview=green)
    assert colour_at(decode(path, LIMIT, min_side=64).image, 0.5, 0.5) == "green"
    assert colour_at(decode(path, LIMIT).image, 0.5, 0.5) == "green"
    # A preview smaller than what is asked for is not used: the RAW data is developed instead.
    small = dng(tmp_path / "small.dng", halves((320, 240)), preview=green.resize((40, 30)))
    developed = decode(small, LIMIT, min_side=64).image
    assert (colour_at(developed, 0.1, 0.5), colour_at(developed, 0.9, 0.5)) == ("red", "blue")
    assert min(developed.size) == 64


def test_a_bitmap_preview_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LibRaw gives some cameras' previews as pixels, not JPEG (rawpy's BITMAP kind): used the same way.
    (No DNG this writer makes gets one from LibRaw, so LibRaw's answer is stood in for.)"""
    path = dng(tmp_path / "bitmap.dng", halves((320, 240)))
    green = np.full((240, 320, 3), COLOURS["green"], dtype=np.uint8)
    monkeypatch.setattr("embedder.media.raw.preview", lambda raw: green)
    decoded = decode(path, LIMIT, min_side=64)
    assert colour_at(decoded.image, 0.5, 0.5) == "green" and min(decoded.image.size) == 64
    monkeypatch.setattr("embedder.media.raw.preview", lambda raw: green[:20, :20])  # too small: developed instead
    assert colour_at(decode(path, LIMIT, min_side=64).image, 0.1, 0.5) == "red"


@pytest.mark.parametrize("preview", [False, True])
def test_a_raw_is_turned_upright_by_its_orientation(tmp_path: Path, preview: bool) -> None:
    picture = halves((320, 240))
    path = dng(tmp_path / "rot.dng", picture, orientation=6, preview=picture if preview else None)
    image = decode(path, LIMIT, min_side=64).image
    assert image.width < image.height
    assert (colour_at(image, 0.5, 0.1), colour_at(image, 0.5, 0.9)) == ("red", "blue")


def test_raw_bytes_decode_by_their_name(tmp_path: Path) -> None:
    data = dng_bytes(halves((320, 240)), taken=None)
    decoded = decode(data, LIMIT, min_side=64, name="upload.dng")
    assert decoded.meta.format == "DNG" and decoded.meta.taken_at is None
    assert (colour_at(decoded.image, 0.1, 0.5), colour_at(decoded.image, 0.9, 0.5)) == ("red", "blue")


def test_raw_limits_hold(tmp_path: Path) -> None:
    path = dng(tmp_path / "big.dng", halves((320, 240)))
    with pytest.raises(ImageError, match=r"320×240 is 0 megapixels, above the limit"):
        decode(path, 320 * 240 - 1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert decode(path, LIMIT, sha256=digest).meta.format == "DNG"
    with pytest.raises(ImageError, match=CHANGED):
        decode(path, LIMIT, sha256="0" * 64)


@pytest.mark.parametrize("preview", [False, True], ids=["developed", "preview"])
@pytest.mark.parametrize("min_side", [224, None], ids=["for-the-model", "full-size"])
def test_a_raw_decode_holds_no_more_than_its_share_of_the_memory_budget(
    tmp_path: Path, preview: bool, min_side: int | None
) -> None:
    """A 6 MP RAW decoded in a fresh process: its peak stays under what it takes from the shared budget."""
    picture = photo(3, (3000, 2000))
    path = dng(tmp_path / "big.dng", picture, preview=picture if preview else None)
    result = peak_growth(path, min_side)
    assert result["outcome"] == "decoded"
    share = _raw_peak(path.stat().st_size, 3000 * 2000) + path.stat().st_size  # the bytes read, then the decode
    assert result["grown_kib"] * 1024 < share, f"grew {result['grown_kib'] / 1024:.0f} MB, share {share / 2**20:.0f} MB"


# --------------------------------------------------------------------------------------------
# The indexer: found by a text query, skipped files counted, broken files failed alone


@pytest.fixture
def camera_roll(tmp_path: Path) -> Path:
    root = tmp_path / "roll"
    root.mkdir()
    render("red", "circle").save(root / "IMG_0001.avif", "AVIF", quality=90)
    render("green", "triangle").save(root / "IMG_0002.heic", "HEIF", quality=90)
    dng(root / "DSC_0003.dng", render("blue", "square"))  # developed
    dng(root / "DSC_0004.dng", render("yellow", "star"), preview=render("yellow", "star"))  # its preview
    for name in ("IMG_0005.MOV", "clip.mp4", "trip.mkv"):
        (root / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (root / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "scan.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (root / "IMG_0001.xmp").write_text("<x:xmpmeta/>")  # sidecars: not a word about them
    (root / "IMG_0002.AAE").write_text("<plist/>")
    (root / "notes.txt").write_text("holiday")
    return root


def test_phone_and_camera_formats_are_indexed_and_found_by_text(engine: Engine, camera_roll: Path) -> None:
    report = engine.indexer.index([camera_roll])
    added = sorted(Path(p).name for p in report.added)
    assert added == ["DSC_0003.dng", "DSC_0004.dng", "IMG_0001.avif", "IMG_0002.heic"]
    assert report.failed == []
    assert report.skipped_by_reason() == {
        "videos are not indexed": 3, "SVG drawings are not indexed": 1, "PDF documents are not indexed": 1,
    }
    assert report.summary().startswith("4 added, 5 skipped (videos: 3, SVG drawings: 1, PDF documents: 1) in ")
    assert {s["path"] for s in report.as_dict()["skipped"]} == {str(camera_roll / n) for n in (
        "IMG_0005.MOV", "clip.mp4", "trip.mkv", "logo.svg", "scan.pdf")}
    stored = {payload["name"]: payload for _, payload, _ in engine.store.scroll()}
    assert {name: p["format"] for name, p in stored.items()} == {
        "IMG_0001.avif": "AVIF", "IMG_0002.heic": "HEIF", "DSC_0003.dng": "DNG", "DSC_0004.dng": "DNG",
    }
    assert stored["DSC_0003.dng"]["taken_at"] == TAKEN and stored["DSC_0003.dng"]["date"] == TAKEN
    for query, name in [("a red circle", "IMG_0001.avif"), ("a green triangle", "IMG_0002.heic"),
                        ("a blue square", "DSC_0003.dng"), ("a yellow star", "DSC_0004.dng")]:
        assert engine.searcher.search(Query.text(query), 1)[0].name == name, query
    raw_only = engine.searcher.search(Query.text("a blue square", where=make_filter(types=["raw"])), 10)
    assert sorted(r.name for r in raw_only) == ["DSC_0003.dng", "DSC_0004.dng"]

    again = engine.indexer.index([camera_roll])
    assert again.summary().startswith("Nothing new: all 4 files were already indexed; 5 skipped (videos: 3, ")


def test_broken_heic_and_raw_files_fail_alone_with_one_line_each(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    render("red", "circle").save(root / "good.heic", "HEIF")
    heic = (root / "good.heic").read_bytes()
    (root / "cut.heic").write_bytes(heic[: len(heic) // 2])
    (root / "junk.heic").write_bytes(os.urandom(4096))
    raw = dng_bytes(render("blue", "square"))
    (root / "cut.dng").write_bytes(raw[: len(raw) // 3])
    (root / "junk.nef").write_bytes(os.urandom(4096))
    (root / "photo.cr2").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2048))  # a JPEG's start, then noise
    dng(root / "good.dng", render("green", "triangle"))

    report = engine.indexer.index([root])

    assert sorted(Path(p).name for p in report.added) == ["good.dng", "good.heic"]
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == {"cut.heic", "junk.heic", "cut.dng", "junk.nef", "photo.cr2"}
    for name, reason in failed.items():
        assert reason and "\n" not in reason and "Traceback" not in reason, (name, reason)
    assert failed["junk.nef"].startswith("not a camera RAW file") and failed["photo.cr2"].startswith("not a camera RAW")
    assert failed["junk.heic"] == "not an image, or a format that is not supported"
    assert failed["cut.heic"] == failed["cut.dng"] == "the file is truncated or damaged"


def test_report_merges_and_words_skipped_files() -> None:
    one = IndexReport(added=["a"], skipped=[Failure("v.mp4", "videos are not indexed")])
    two = IndexReport(skipped=[
        Failure("w.mov", "videos are not indexed"), Failure("d.svg", "SVG drawings are not indexed"),
    ])
    merged = IndexReport.merge([one, two])
    assert merged.skipped_kinds() == "videos: 2, SVG drawings: 1"
    assert IndexReport(skipped=two.skipped).summary() == (
        "Nothing to index: no image files were found; 2 skipped (videos: 1, SVG drawings: 1) (0.0 s)"
    )


def test_the_index_page_reports_skipped_files_by_reason(app_env: Path) -> None:
    folder = app_env / "pictures"
    folder.mkdir()
    render("red", "circle").save(folder / "IMG_0001.heic", "HEIF")
    for name in ("IMG_0001.MOV", "clip.mp4", "logo.svg", "IMG_0001.xmp"):
        (folder / name).write_bytes(b"not a picture")
    at = index_folder(folder)
    assert_clean(at)
    assert at.success[0].value.startswith("1 added, 3 skipped (videos: 2, SVG drawings: 1) in ")
    assert metrics(at)["Skipped"] == "3" and metrics(at)["Added"] == "1"
    table = at.dataframe[0].value
    assert list(table["reason"]) == ["videos are not indexed", "SVG drawings are not indexed"]
    assert list(table["files"]) == [2, 1]


def test_the_cli_summary_counts_skipped_files_and_json_lists_them(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "uploads"))
    folder = tmp_path / "card"
    dng(folder / "DSC_0001.NEF", render("blue", "square"))  # a DNG named as a Nikon file: LibRaw reads content
    (folder / "DSC_0002.MOV").write_bytes(b"not a picture")
    (folder / "DSC_0001.xmp").write_text("<x:xmpmeta/>")
    assert cli.main(["index", str(folder)]) == 0
    assert "1 added, 1 skipped (videos: 1) in " in capsys.readouterr().out
    assert cli.main(["index", str(folder), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["skipped"] == [{"path": str(folder / "DSC_0002.MOV"), "reason": "videos are not indexed"}]
