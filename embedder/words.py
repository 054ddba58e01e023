"""Words for text search: one normaliser for file and folder names, text read from pictures and queries.

A picture is found by a word when the word its text (or its name) gives here is among the words its
query gives here, so both sides go through the same function, `words`:

* case folded (`str.casefold`: ``Straße`` → ``strasse``, final ``ς`` → ``σ``), after NFKC (ligatures,
  full-width and superscript forms become plain letters and digits);
* split at anything that is not a letter or a digit (``_ - . , : / !`` and spaces alike), at a change
  of case (``grandmasBirthdayCake``, ``HTMLParser`` → ``html parser``) and between letters and digits
  (``IMG20190704`` → ``img 20190704``, ``Pa55word`` → ``pa 55 word``), so ``Guest`` is a word of
  ``Name-Guest``; an apostrophe inside a word is dropped (``grandma's`` → ``grandmas``);
* a piece of text between spaces that split into several words also gives them joined (``Wi-Fi`` →
  ``wi fi wifi``, ``Pa55word!`` → ``pa55word``, ``2019-07-04`` → ``20190704``), so ``wifi`` finds
  ``Wi-Fi`` and a token typed whole matches whole;
* a word with accents also gives its folded form (``café`` → ``café cafe``, ``Łódź`` → ``łódź lodz``):
  a query without accents finds text with them, and one with accents finds both (accents are kept
  because in some languages they tell words apart, and a query typed with them should rank those first);
* a run of eight digits that is a date (``20190704``, 1900–2099) also gives its year (``2019``), so
  ``IMG_20190704`` is found by ``2019``, as the year on a sign is.

`name_words` drops a file's extension first. `searchable` is the same words as one string, for an
index that splits on spaces (a full-text index, a BM25 model). `word_spans` says where each word of a
text is, for highlighting what matched. Scripts written without spaces (Chinese, Japanese) stay one
word per run. Pure Python: nothing here imports torch or any model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath

# Letters that carry no combining mark to strip, folded as people type them without the key.
_FOLDS = str.maketrans({
    "ø": "o", "ł": "l", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th", "ß": "ss",
    "Ø": "O", "Ł": "L", "Đ": "D", "Ħ": "H", "Æ": "AE", "Œ": "OE", "Þ": "TH", "ẞ": "SS",
})
_APOSTROPHES = frozenset("'’ʼ")
_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
# What `name_words` drops from a file's name: a last suffix of up to 5 letters and digits, one a letter.
EXTENSION = re.compile(r"\.(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{1,5}$")


@dataclass(frozen=True)
class Span:
    """One word of a text and where it is: ``text[start:end]`` is the word as written."""

    word: str
    start: int
    end: int


def words(text: str) -> list[str]:
    """The searchable words of `text`, in order, each once (see the module's docstring for the rules)."""
    found: dict[str, None] = {}
    normal = unicodedata.normalize("NFKC", text)
    for piece in normal.split():
        parts = [_lower(piece[a:b]) for a, b in _piece_parts(piece)]
        extra = ["".join(parts)] if len(parts) > 1 else []
        for word in [*parts, *extra]:
            found.setdefault(word)
            folded = fold(word)
            if folded != word:
                found.setdefault(folded)
            if _DATE.fullmatch(word):
                found.setdefault(word[:4])
    return list(found)


def name_words(name: str, *, is_file: bool = True) -> list[str]:
    """The words of a file's or folder's name; a file's extension (``.jpg``, ``.HEIC``) is dropped."""
    if is_file:
        name = EXTENSION.sub("", PurePath(name).name) or name
    return words(name)


def searchable(text: str) -> str:
    """`words` of `text` as one space-separated string: what a full-text or BM25 index is given."""
    return " ".join(words(text))


def word_spans(text: str) -> list[Span]:
    """Where each word of `text` is (its parts, not the joined or folded forms), for highlighting.

    Offsets are into ``unicodedata.normalize("NFKC", text)``, which is `text` itself unless it holds
    ligatures, full-width or other compatibility forms.
    """
    normal = unicodedata.normalize("NFKC", text)
    return [Span(_lower(normal[start:end]), start, end) for start, end in _piece_parts(normal)]


def fold(word: str) -> str:
    """`word` without accents: marks stripped (NFKD), a few letters spelt as typed without them."""
    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLDS))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _lower(part: str) -> str:
    return unicodedata.normalize("NFKC", "".join(c for c in part if c not in _APOSTROPHES).casefold())


def _piece_parts(text: str) -> Iterator[tuple[int, int]]:
    """Where the words of `text` are: its runs of letters and digits, split at case and digit changes."""
    for start, end in _chunks(text):
        for a, b in _part_offsets(text[start:end]):
            yield start + a, start + b


def _chunks(text: str) -> Iterator[tuple[int, int]]:
    """Where the runs of letters and digits are (each with its marks; an apostrophe between two letters
    or digits stays inside), as (start, end) offsets."""
    i, n = 0, len(text)
    while i < n:
        if not text[i].isalnum():
            i += 1
            continue
        start = i
        while i < n and (_wordy(text[i]) or (text[i] in _APOSTROPHES and i + 1 < n and text[i + 1].isalnum())):
            i += 1
        yield start, i


def _wordy(c: str) -> bool:
    return c.isalnum() or unicodedata.category(c).startswith("M")


def _part_offsets(chunk: str) -> Iterator[tuple[int, int]]:
    """Split a run of letters and digits at changes of case and between letters and digits.

    ``grandmasBirthdayCake`` → grandmas|Birthday|Cake, ``HTMLParser`` → HTML|Parser,
    ``IMG20190704`` → IMG|20190704. Marks stay with their letter; apostrophes stay inside.
    """
    start = 0
    kinds = [_kind(c) for c in chunk]
    before = kinds[0]
    for i in range(1, len(chunk)):
        here = kinds[i]
        if here == "mark":  # stays with its letter, and counts as one
            continue
        if here == "apostrophe":  # looked through: the letters on either side decide
            continue
        after = next((k for k in kinds[i + 1 :] if k not in ("mark", "apostrophe")), None)
        if (
            (before == "digit") != (here == "digit")
            or (before == "lower" and here == "upper")
            or (before == "upper" and here == "upper" and after == "lower")
        ):
            yield start, i
            start = i
        before = here
    yield start, len(chunk)


def _kind(c: str) -> str:
    if c in _APOSTROPHES:
        return "apostrophe"
    if unicodedata.category(c).startswith("M"):
        return "mark"
    if c.isdigit():
        return "digit"
    if c.isupper():
        return "upper"
    return "lower"  # lower-case and caseless letters (scripts without case stay one run)
