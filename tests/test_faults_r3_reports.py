"""Every file of a run in its report exactly once, under what happened to it (#25: 4b, 5).

Real files, the tiny CLIP and a real embedded Qdrant: folders and uploads with copies inside the
same run, copies of images indexed before, renames, broken files and files skipped on purpose.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from faultkit import distinct_image, encode_png

from embedder.engine import Engine
from embedder.indexing.indexer import IndexReport


def outcomes(report: IndexReport) -> dict[str, str]:
    """file → outcome, asserting no file is listed twice."""
    files = report.files()
    twice = [f for f, n in Counter(e.file for e in files).items() if n > 1]
    assert not twice, f"listed more than once: {twice}"
    return {e.file: e.outcome for e in files}


def test_a_folder_run_lists_every_file_once_copies_inside_it_included(engine: Engine, tmp_path: Path) -> None:
    album = tmp_path / "album"
    (album / "a").mkdir(parents=True)
    (album / "b").mkdir()
    one = album / "a" / "one.jpg"
    distinct_image(1).save(one)
    shutil.copy(one, album / "b" / "one-copy.jpg")  # byte-identical, in the same folder being indexed
    distinct_image(2).save(album / "a" / "two.png")
    (album / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a picture")
    (album / "a" / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # skipped on purpose
    (album / "a" / "one.xmp").write_text("<x:xmpmeta/>")  # a sidecar: ignored, not a file of the run
    inputs = {str(p) for p in album.rglob("*") if p.is_file() and p.suffix != ".xmp"}

    report = engine.indexer.index([album])
    assert set(outcomes(report)) == inputs
    assert outcomes(report) == {
        str(one): "added",
        str(album / "b" / "one-copy.jpg"): "copy",
        str(album / "a" / "two.png"): "added",
        str(album / "a" / "broken.jpg"): "failed",
        str(album / "a" / "clip.mp4"): "skipped",
    }
    assert report.copy_of == {str(album / "b" / "one-copy.jpg"): str(one)}
    assert engine.store.count() == 2
    assert report.summary().startswith("2 added, 1 already indexed (another copy), 1 failed, 1 skipped (videos: 1) in ")

    # Another copy later, and a real move: the copy is a copy (its original is still there), not a rename.
    shutil.copy(one, album / "b" / "one-again.jpg")
    (album / "a" / "two.png").rename(album / "b" / "two.png")
    again = engine.indexer.index([album])
    inputs = {str(p) for p in album.rglob("*") if p.is_file() and p.suffix != ".xmp"}
    assert set(outcomes(again)) == inputs
    assert outcomes(again)[str(album / "b" / "one-again.jpg")] == "copy"
    assert again.copy_of[str(album / "b" / "one-again.jpg")] in {str(one), str(album / "b" / "one-copy.jpg")}
    assert outcomes(again)[str(album / "b" / "two.png")] == "renamed"
    assert outcomes(again)[str(one)] == outcomes(again)[str(album / "b" / "one-copy.jpg")] == "unchanged"
    assert again.renamed == [str(album / "b" / "two.png")]


def test_a_copy_of_an_image_outside_the_folder_is_a_copy(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    distinct_image(3).save(tmp_path / "pictures" / "x.png")
    engine.indexer.index([tmp_path / "pictures"])
    (tmp_path / "backup").mkdir()
    shutil.copy(tmp_path / "pictures" / "x.png", tmp_path / "backup" / "x.png")
    shutil.copy(tmp_path / "pictures" / "x.png", tmp_path / "backup" / "x-too.png")
    report = engine.indexer.index([tmp_path / "backup"])
    assert outcomes(report) == {str(tmp_path / "backup" / "x.png"): "copy", str(tmp_path / "backup" / "x-too.png"): "copy"}
    assert set(report.copy_of.values()) <= {str(tmp_path / "pictures" / "x.png"), str(tmp_path / "backup" / "x.png")}
    assert report.renamed == [] and engine.store.count() == 1


def test_an_upload_with_copies_inside_it_lists_every_file_sent(engine: Engine, tmp_path: Path) -> None:
    """The issue's upload: 10 files, 5 of them byte-identical to others of the same upload."""
    originals = [(f"photo{i}.png", encode_png(distinct_image(10 + i))) for i in range(4)]
    broken = ("broken.png", b"\x89PNG\r\n\x1a\n not really")
    sent = [*originals, broken]
    sent += [(f"copy-of-photo{i}.png", data) for i, (_, data) in enumerate(originals)]
    sent.append(("broken-again.png", broken[1]))
    assert len(sent) == 10 and len({data for _, data in sent}) == 5

    report = engine.indexer.index_uploads(sent, tmp_path / "uploads")
    assert sorted(outcomes(report)) == sorted(name for name, _ in sent)  # each file sent, once
    got = outcomes(report)
    assert [got[f"photo{i}.png"] for i in range(4)] == ["added"] * 4
    assert [got[f"copy-of-photo{i}.png"] for i in range(4)] == ["copy"] * 4
    assert got["broken.png"] == got["broken-again.png"] == "failed"
    copies = {e.file: e.detail for e in report.files() if e.outcome == "copy"}
    assert copies == {f"copy-of-photo{i}.png": f"photo{i}.png" for i in range(4)}
    assert report.summary().startswith("4 added, 4 already indexed (another copy), 2 failed in ")
    assert engine.store.count() == 4

    # The same upload again: the pictures are known; each name is unchanged or a copy, none missing.
    again = engine.indexer.index_uploads(sent, tmp_path / "uploads")
    assert sorted(outcomes(again)) == sorted(name for name, _ in sent)
    assert {outcomes(again)[f"photo{i}.png"] for i in range(4)} == {"unchanged"}


def test_the_report_counts_are_the_files(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    distinct_image(5).save(folder / "a.png")
    shutil.copy(folder / "a.png", folder / "b.png")
    report = engine.indexer.index([folder])
    counts = report.counts()
    assert counts["added"] == 1 and counts["copy"] == 1 and sum(v for k, v in counts.items() if k != "removed") == 2
    assert not report.quiet
    assert engine.indexer.index([folder]).quiet  # nothing new: a run that did nothing says so
