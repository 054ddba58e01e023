"""Reliability round 2, the command line: bad input is one clear line, hostile names stay inert.

The CLI runs in-process (`cli.main`) on the real embedded store with the session's tiny CLIP, so
each case costs milliseconds; one case runs `python -m embedder` as a real process to check the
bytes a terminal would get.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from embedder import cli
from embedder.errors import DatasetError, QueryError
from embedder.evaluation.datasets import load_dataset
from embedder.query.terms import Term, parse_point_id, parse_term
from embedder.terminal import printable
from faultkit import cli_env, distinct_folder, distinct_image, run_cli

@pytest.fixture
def store_env(tmp_path: Path, model_path: Path, encoder, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings for `cli.main` (a fresh embedded store) and the session's loaded model; the store's folder."""
    monkeypatch.setenv("EMBEDDER_MODEL", str(model_path))
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setattr("embedder.engine.load_encoder", lambda *a, **k: encoder)
    return tmp_path / "qdrant"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`python -m embedder ARGV` in-process: (exit code, stdout, stderr); argparse's exit included."""
    saved, sys.argv = sys.argv, [str(Path(cli.__file__).with_name("__main__.py")), *argv]  # as `python -m` sets it
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, err: str, command: str, option: str, says: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert lines[0].startswith("usage: python -m embedder"), err
    assert lines[-1].startswith(f"python -m embedder {command}: error: argument {option}: "), err
    assert says in lines[-1], err


@pytest.fixture
def album(tmp_path: Path, store_env: Path, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    """Four distinct images, indexed through the CLI."""
    paths = distinct_folder(tmp_path / "album", 4)
    assert run(capsys, "index", str(tmp_path / "album"))[0] == 0
    return paths


# ---------------------------------------------------------------------------------------------
# R2-11a: numbers and filters out of range


@pytest.mark.parametrize(
    ("argv", "option", "says"),
    [
        (["search", "x", "--offset", "-1"], "--offset", "must be from 0 to 1,000,000, got -1"),
        (["search", "x", "--offset", str(2**64)], "--offset", "must be from 0 to 1,000,000"),
        (["search", "x", "-k", "0"], "-k/--limit", "must be from 1 to 1,000,000, got 0"),
        (["search", "x", "-k", "-3"], "-k/--limit", "got -3"),
        (["search", "x", "-k", str(2**64)], "-k/--limit", "must be from 1 to 1,000,000"),
        (["search", "x", "-k", "ten"], "-k/--limit", "must be a whole number, got 'ten'"),
        (["search", "x", "--min-score", "1.5"], "--min-score", "must be a cosine from -1 to 1, got 1.5"),
        (["search", "x", "--min-score", "-2"], "--min-score", "must be a cosine from -1 to 1"),
        (["search", "x", "--min-score", "nan"], "--min-score", "must be a number, got 'nan'"),
        (["search", "x", "--threshold", "nan"], "--threshold", "must be a number, got 'nan'"),
        (["search", "x", "--threshold", "1.5"], "--threshold", "must be above 0 and at most 1, got 1.5"),
        (["duplicates", "--threshold", "inf"], "--threshold", "must be a number, got 'inf'"),
        (["search", "x", "--min-width", "-5"], "--min-width", "must be from 0 to 2,147,483,647, got -5"),
        (["search", "x", "--min-height", str(10**400)], "--min-height", "must be from 0 to 2,147,483,647"),
        (["search", "x", "--type", "jpg,pgn"], "--type", "unknown file type pgn: use some of avif, bmp, gif, heif, jpeg"),
        (["search", "x", "--after", "2024-13-01"], "--after", "must be a date like 2024-05-31, got '2024-13-01'"),
    ],
)
def test_out_of_range_options_are_one_line_before_anything_opens(
    store_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str, says: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert_usage_error(code, err, argv[0], option, says)
    assert out == "" and not store_env.exists()  # refused before the model or the store was opened


def test_the_bounds_themselves_are_accepted(album: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A control for the test above: the limits are inclusive and still search."""
    code, out, _ = run(capsys, "search", "x", "-k", "1000000", "--min-score", "-1", "--min-width", "0", "--json")
    assert code == 0 and len(json.loads(out)) == 4
    code, out, _ = run(capsys, "search", "x", "--offset", "1000000", "--type", "JPG, png", "--threshold", "1", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "search", "x", "--min-score", "1")
    assert code == 0 and out.strip() == "no matches"


# ---------------------------------------------------------------------------------------------
# R2-11b: --like with something that is not an image id

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def test_like_with_a_non_id_says_what_ids_are_and_where_to_get_them(
    album: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "search", "--like", "not-a-uuid")
    assert_usage_error(code, err, "search", "--like", "'not-a-uuid' is not an image id")
    assert "search --json" in err and "damaged" not in err

    code, out, _ = run(capsys, "search", "x", "-k", "1", "--json")
    stored_id = json.loads(out)[0]["id"]
    pasted = stored_id.upper().replace("-", "")  # ids are accepted as people paste them
    code, out, _ = run(capsys, "search", "--like", pasted, "--json")
    assert code == 0 and stored_id not in [hit["id"] for hit in json.loads(out)] and len(json.loads(out)) == 3

    code, out, err = run(capsys, "search", "--like", UNKNOWN_ID)
    assert code == 1 and err == f"error: {UNKNOWN_ID} is no longer in the index\n"


def test_point_ids_are_canonical_uuids() -> None:
    assert parse_point_id(" {%s} " % UNKNOWN_ID.upper()) == UNKNOWN_ID
    with pytest.raises(QueryError, match="not an image id"):
        parse_point_id("12345")


# ---------------------------------------------------------------------------------------------
# R2-11c: weights that are not finite numbers, and finite ones far from 1


@pytest.mark.parametrize("raw", ["inf:pizza", "nan:pizza", "1e400:pizza", "-inf:pizza", "-1e999:pizza"])
def test_non_finite_weights_are_refused(store_env: Path, capsys: pytest.CaptureFixture[str], raw: str) -> None:
    code, out, err = run(capsys, "search", "--", "beach", raw)  # `--`: terms may start with -
    assert_usage_error(code, err, "search", "terms", "is not a finite number; use one like 2:pizza")
    assert out == "" and not store_env.exists()
    with pytest.raises(QueryError):
        Term(text="pizza", weight=float(raw.split(":")[0]))  # no Term can carry one, whoever builds it


def test_an_empty_term_is_refused(store_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "search", "beach", " ")
    assert_usage_error(code, err, "search", "terms", "a search term is empty")
    assert out == "" and not store_env.exists()


def test_query_syntax_still_reads_text_with_colons() -> None:
    assert parse_term("time: 10:30") == Term(text="time: 10:30")
    assert parse_term("infinity war") == Term(text="infinity war")
    assert parse_term("1e300:pizza") == Term(text="pizza", weight=1e300)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_huge_and_tiny_weights_give_the_terms_direction(engine) -> None:
    """The composed vector is normalised: scaling every weight alike must not change it, however far."""
    plain = engine.searcher.compose([Term(text="a red circle"), Term(text="a blue square", weight=-0.5)])
    for scale in (1e300, 1e-300, 1e-9):
        scaled = engine.searcher.compose(
            [Term(text="a red circle", weight=scale), Term(text="a blue square", weight=-0.5 * scale)]
        )
        assert np.allclose(scaled, plain, atol=1e-6), scale


# ---------------------------------------------------------------------------------------------
# R2-11d: eval datasets as spreadsheets write them


def _dataset(tmp_path: Path, csv_bytes: bytes) -> Path:
    (tmp_path / "ds").mkdir()
    distinct_image(0).save(tmp_path / "ds" / "1.png")
    distinct_image(1).save(tmp_path / "ds" / "2.png")
    (tmp_path / "ds" / "captions.csv").write_bytes(csv_bytes)
    return tmp_path / "ds" / "captions.csv"


def test_eval_reads_a_bom_header_and_a_200_kb_caption(
    tmp_path: Path, store_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_caption = "a very long caption " * 10_000  # 200 KB, over the csv module's 128 KiB field limit
    csv_file = _dataset(tmp_path, f"\ufeffPath, Caption\n1.png,{long_caption}\n2.png,blue|sky\n".encode())
    assert set(load_dataset(csv_file).queries) == {"blue", long_caption.strip(), "sky"}

    code, out, err = run(capsys, "eval", str(csv_file), "--json", "--per-query")
    assert code == 0, err
    text_queries = json.loads(out)["evaluations"][0]["per_query"]
    assert {q["query"] for q in text_queries} == {"blue", long_caption.strip(), "sky"}
    assert not store_env.exists()  # the throw-away store, as before


@pytest.mark.parametrize(
    ("csv_bytes", "says"),
    [
        (b"id,path,caption\n1,1.png,red\n2\n", "line 3: the header has 3 columns but this row has 1"),
        (b"path,caption\n1.png,a dog, running\n", "line 2: the header has 2 columns but this row has 3: put a caption"),
        (b"path,caption\n1.png,red\n,blue\n", "line 3: the path is empty"),
        (b"path,caption\n1.png,M\xe9xico\n", "not UTF-8 text; save it as CSV UTF-8"),
    ],
)
def test_a_malformed_eval_csv_names_the_line(
    tmp_path: Path, store_env: Path, capsys: pytest.CaptureFixture[str], csv_bytes: bytes, says: str
) -> None:
    csv_file = _dataset(tmp_path, csv_bytes)
    with pytest.raises(DatasetError, match=re.escape(says)):
        load_dataset(csv_file)
    code, out, err = run(capsys, "eval", str(csv_file))
    assert (code, out) == (1, "") and err.startswith(f"error: {csv_file}") and says in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# R2-11e: names a terminal would obey

# Names a terminal would obey: a newline, colour, a window title with a bell, CSI in its one-byte C1 form.
NEWLINE_NAME = "a\nb.png"
COLOUR_NAME = "\x1b[31mred.png"
TITLE_NAME = "\x1b]0;pwned\x07bad.jpg"  # not an image: it shows in a `failed:` line
C1_NAME = "\x9b2Jcopy.jpg"


def test_printable_shows_what_a_terminal_would_obey_and_keeps_the_rest() -> None:
    assert printable(NEWLINE_NAME) == r"a\x0ab.png"
    assert printable(COLOUR_NAME) == r"\x1b[31mred.png"
    assert printable(TITLE_NAME) == r"\x1b]0;pwned\x07bad.jpg"
    assert printable(C1_NAME) == r"\xc2\x9b2Jcopy.jpg"  # one-byte CSI, as UTF-8 writes it
    assert printable("tab\there\r\x7f") == r"tab\x09here\x0d\x7f"
    assert printable("evil\u202egnp.exe") == r"evil\xe2\x80\xaegnp.exe"  # right-to-left override
    assert printable("M\udce9xico.jpg") == r"M\xe9xico.jpg"  # a byte that is not UTF-8, as os.fsdecode gives it
    kept = ("ünïcødé 写真 🐱.png", "with space.jpg", "\u3000全角.png", "👨\u200d👩\u200d👧.png", r"C:\x.png")
    for name in kept:
        assert printable(name) == name


def _hostile_album(folder: Path) -> dict[str, Path]:
    """Images under names a terminal would obey (one of them not an image) and a near-duplicate pair."""
    folder.mkdir()
    files = {name: folder / name for name in (NEWLINE_NAME, COLOUR_NAME, TITLE_NAME, C1_NAME)}
    distinct_image(0).save(files[NEWLINE_NAME], "PNG")
    distinct_image(1).save(files[COLOUR_NAME], "PNG")
    files[TITLE_NAME].write_text("not an image")
    distinct_image(0).save(files[C1_NAME], "JPEG", quality=95)  # the same picture as NEWLINE_NAME
    return files


# Every line the human output may have; a raw newline in a name would start a line matching none.
HUMAN_LINES = re.compile(
    r"(failed|removed): /.*|(\d[\d,]* [a-z() -]+, )*\d[\d,]* [a-z() -]+ in [\d.]+ s"  # index
    r"(; text read in [\d,]+ pictures? \([\d,]+ with text\)(, [\d,]+ not read)?)?"  # and its text pass
    r"|-?\d\.\d{3}  /.*"  # search
    r"|\d+ images, cosine ≥ .*:|  /.*|\d+ groups of near-duplicates"  # duplicates
)


def assert_inert(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output and "\x9b" not in output, output
    for line in output.splitlines():
        assert HUMAN_LINES.fullmatch(line), f"a line the CLI never prints: {line!r}"


def test_hostile_names_are_escaped_in_index_search_and_duplicates(
    tmp_path: Path, store_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _hostile_album(tmp_path / "album")
    shown = {name: printable(str(path)) for name, path in files.items()}

    code, out, _ = run(capsys, "index", str(tmp_path / "album"))
    assert code == 0 and f"failed: {shown[TITLE_NAME]}: not an image" in out
    assert_inert(out)

    code, out, _ = run(capsys, "search", "a red circle", "-k", "10")
    assert code == 0 and {shown[NEWLINE_NAME], shown[COLOUR_NAME], shown[C1_NAME]} <= set(re.findall(r"  (/.*)", out))
    assert_inert(out)

    code, out, _ = run(capsys, "search", "a red circle", "--json")  # JSON stays exact
    assert {hit["path"] for hit in json.loads(out)} == {str(files[n]) for n in (NEWLINE_NAME, COLOUR_NAME, C1_NAME)}

    code, out, _ = run(capsys, "duplicates", "--threshold", "0.95")
    assert code == 0 and "1 groups of near-duplicates" in out
    assert {f"  {shown[NEWLINE_NAME]}", f"  {shown[C1_NAME]}"} == set(re.findall(r"  /.*", out))
    assert_inert(out)

    files[COLOUR_NAME].unlink()
    code, out, _ = run(capsys, "index", "--prune", str(tmp_path / "album"))
    assert code == 0 and f"removed: {shown[COLOUR_NAME]}" in out.splitlines()
    assert_inert(out)


@pytest.mark.slow
def test_a_real_index_run_writes_no_control_bytes(tmp_path: Path, model_path: Path) -> None:
    """`python -m embedder index` as a person runs it: the bytes on stdout are what a terminal gets."""
    files = _hostile_album(tmp_path / "album")
    done = run_cli(cli_env(tmp_path, model_path), "index", str(tmp_path / "album"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert_inert(done.stdout)
    assert done.stdout.splitlines()[0] == f"failed: {printable(str(files[TITLE_NAME]))}: " + (
        "not an image, or a format that is not supported"
    )
    assert re.fullmatch(r"3 added, 1 failed in .*", done.stdout.splitlines()[1])


def test_an_error_naming_a_hostile_file_is_one_inert_line(store_env: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "search", "--image", str(tmp_path / "\x1b[2J\ngone.png"))
    assert (code, out) == (1, "") and err.startswith("error: ") and err.count("\n") == 1, err
    assert "\x1b" not in err and r"\x1b[2J\x0agone.png" in err
