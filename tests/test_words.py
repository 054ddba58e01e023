"""Names and text as searchable words (embedder.words): examples, then properties that must always hold."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedder.words import fold, name_words, searchable, word_spans, words

ROOT = Path(__file__).resolve().parent.parent


# --- examples --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("grandmas-birthday-cake.jpg", ["grandmas", "birthday", "cake"]),
        ("grandmasBirthdayCake.HEIC", ["grandmas", "birthday", "cake"]),
        ("Grandmas Birthday Cake.png", ["grandmas", "birthday", "cake"]),
        ("IMG_20190704_153012.jpg", ["img", "20190704", "2019", "153012"]),
        ("Screenshot_2023-01-15-10-11-12.png", ["screenshot", "2023", "01", "15"]),
        ("HTMLParser_v2.webp", ["html", "parser", "v", "2"]),
        ("beach.2019.jpg", ["beach", "2019"]),
    ],
)
def test_file_names_split_into_their_words(name: str, expected: list[str]) -> None:
    found = name_words(name)
    assert set(expected) <= set(found)
    assert not {"jpg", "heic", "png", "webp"} & set(found)  # the extension is no word of the name


def test_a_folder_keeps_what_looks_like_an_extension() -> None:
    assert name_words("Trip.Paris", is_file=False) == ["trip", "paris", "tripparis"]
    assert name_words("Trip.Paris") == ["trip"]  # a file's last suffix is its extension
    assert name_words("photo.2019") == ["photo", "2019", "photo2019"]  # digits alone are no extension


def test_a_word_inside_a_longer_token_is_a_word() -> None:
    assert {"name", "guest", "nameguest"} <= set(words("Network: Name-Guest"))
    assert {"wi", "fi", "wifi"} <= set(words("Wi-Fi"))
    assert set(words("Guest")) <= set(words("Name-Guest"))


def test_case_and_digits_are_split_the_same_way_in_text_and_queries() -> None:
    text = words("Password: Pa55word!")
    assert {"password", "pa", "55", "word", "pa55word"} <= set(text)
    for query in ("pa55word", "PA55WORD", "Pa55word!"):
        assert set(words(query)) <= set(text)
    assert {"5", "g", "hz"} <= set(words("5 GHz")) & set(words("5GHz"))


def test_dates_give_their_year_and_an_iso_date_matches_a_compact_one() -> None:
    assert "2019" in words("IMG_20190704")
    assert "20190704" in words("2019-07-04")
    assert "2019" not in words("IMG_20191399")  # no month 13: not a date, no year


def test_accents_are_kept_and_folded() -> None:
    assert words("Café Straße ΣΊΣΥΦΟΣ") == ["café", "cafe", "strasse", "σίσυφοσ", "σισυφοσ"]  # case folded
    assert set(words("cafe")) <= set(words("Café"))  # typed without accents, found with them
    assert set(words("café")) & set(words("cafe"))  # typed with them, also finds text without
    assert fold("ærøskøbing łódź") == "aeroskobing lodz"  # words are folded after case folding


def test_apostrophes_inside_words_are_dropped_and_compatibility_forms_normalised() -> None:
    assert words("grandma's cake") == ["grandmas", "cake"]
    assert words("ﬁnal ＡＢＣ１２") == ["final", "abc", "12", "abc12"]
    assert words("北京欢迎你") == ["北京欢迎你"]  # no spaces, no case: one word per run


def test_spans_point_at_the_words_as_written() -> None:
    text = "Wi-Fi Name-Guest, Pa55word!"
    spans = word_spans(text)
    assert [s.word for s in spans] == ["wi", "fi", "name", "guest", "pa", "55", "word"]
    assert [text[s.start : s.end] for s in spans] == ["Wi", "Fi", "Name", "Guest", "Pa", "55", "word"]


def test_nothing_searchable_gives_no_words() -> None:
    assert words("") == [] and words(" _-.!? ") == [] and searchable("—") == ""


def test_the_module_imports_no_torch() -> None:
    code = "import sys, embedder.words; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# --- properties ------------------------------------------------------------------------------------

LOWER_WORDS = st.lists(st.from_regex(r"[a-z]{1,8}|[0-9]{1,6}", fullmatch=True), min_size=1, max_size=6)
SEPARATORS = st.sampled_from(["_", "-", ".", " ", "__", " - ", ", "])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_words_of_any_text_are_nonempty_lowercase_runs_of_letters_and_digits(text: str) -> None:
    for word in words(text):
        assert word and word == word.lower()
        assert all(c.isalnum() or unicodedata.category(c).startswith("M") for c in word), word
        assert not any(c.isspace() for c in word)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_searching_for_the_indexed_words_finds_them_all(text: str) -> None:
    """What is indexed (`searchable`), typed as a query, gives every indexed word again (and, where a
    joined form mixes letters and digits, the pieces it splits into: ``0aa`` → ``0 aa``)."""
    assert set(words(text)) <= set(words(searchable(text)))
    assert all(w in set(words(searchable(text))) for w in words(searchable(text)))


@settings(max_examples=200, deadline=None)
@given(LOWER_WORDS, SEPARATORS)
def test_any_separator_splits_the_same_words(parts: list[str], separator: str) -> None:
    found = words(separator.join(parts))
    assert all(part in found for part in parts)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[a-z]{2,8}", fullmatch=True), min_size=2, max_size=5))
def test_camel_case_splits_like_separators(parts: list[str]) -> None:
    camel = parts[0] + "".join(p.capitalize() for p in parts[1:])
    assert set(parts) <= set(words(camel))
    assert set(words("-".join(parts))) == set(words(camel))


@settings(max_examples=200, deadline=None)
@given(LOWER_WORDS, LOWER_WORDS, SEPARATORS)
def test_every_word_of_a_longer_token_is_found_by_itself(before: list[str], after: list[str], separator: str) -> None:
    token = separator.join(before + after)
    for part in before + after:
        assert set(words(part)) <= set(words(token))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=("Lu", "Ll", "Nd")), min_size=1, max_size=20))
def test_a_query_in_any_case_finds_the_text(word: str) -> None:
    """Text is found by a query of it typed in lower case, upper case or title case."""
    have = {fold(w) for w in words(word)}
    for query in (word.lower(), word.upper(), word.title()):
        assert {fold(w) for w in words(query)} & have or not have


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_spans_cover_the_words_as_written(text: str) -> None:
    normal = unicodedata.normalize("NFKC", text)
    found = set(words(text))
    for span in word_spans(text):
        assert span.word in found
        assert words(normal[span.start : span.end])[0] == span.word
