"""The words of a query: what a search looks for in the text of pictures, their names and their tags.

A query's text terms (positive weight only: a term pushed away moves the picture part, it finds no
words) are split into pieces at spaces; each piece gives its words (`embedder.words.words`: ``Wi-Fi``
→ wi, fi, wifi). A picture matches a term's words when it holds, for every piece the term
**needs**, at least one of that piece's words (``wifi password`` needs wifi and password); a picture
that matches any term's words is an exact match. Pieces a term does not need still count in the
score: dates typed in the query (``beach 2019``: the year is the date filter, and a sign saying
2019 ranks higher) and little words (`STOPWORDS`: ``a photo of grandma`` needs only grandma).

`words_part` gives the WORDS vector of those words (each with its term's weight, the largest 1) and
the condition an exact match fulfils, in the neutral form every store translates
(embedder/store/conditions.py). A term of more than `MAX_PIECES` needed pieces is a description, not
words to find: it is searched by the picture part alone.

Pure Python (the BM25 hashing is qdrant-edge-py's): nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from embedder.models import bm25
from embedder.query.dates import find_dates
from embedder.query.terms import Term
from embedder.store.conditions import Condition, Either, Every, HasWord
from embedder.store.contract import SparseWords
from embedder.words import words

MAX_PIECES = 12
# Words that say how a query is phrased rather than what is in the picture (English, German, French,
# Spanish, Italian): not needed for an exact match, still counted where a picture holds them.
STOPWORDS = frozenset(
    """a an the of in on at to for with and or by from is are was this that these those my our your his her
    its their me we you it as into near under over some any all photo photos picture pictures image images pic
    pics img showing shows
    der die das den dem des ein eine einer einem einen und oder mit von im am zu zum zur auf bei für foto fotos bild bilder
    le la les un une des et ou de du au aux en dans sur avec pour par
    el los las una unos unas y o del con por para al
    il lo gli uno di da nel sul con per""".split()
)
FIELDS = {"all": ("words",), "text": ("text",), "name": ("name_text",)}  # which words `only` looks in


@dataclass(frozen=True)
class WordsPart:
    """What a query looks for among the words of pictures."""

    vector: SparseWords  # its words with their weights, as the WORDS vector
    need: Condition  # what an exact match holds
    words: frozenset[str]  # every word of it, needed or not (for saying why a picture matched)
    needed: tuple[tuple[tuple[str, ...], ...], ...]  # per term, per needed piece, its words


def words_part(terms: Sequence[Term], only: str = "all", read_dates: bool = True) -> WordsPart | None:
    """The words part of a query of `terms` (None: no text term with words to find). `only` names
    the words an exact match must be in: all of a picture's, its text's or its names'. With
    `read_dates`, the dates typed in a term are not needed (they are the date filter)."""
    positive = [t for t in terms if t.text is not None and t.weight > 0]
    if not positive:
        return None
    largest = max(t.weight for t in positive)
    weights: dict[str, float] = {}
    needed: list[tuple[tuple[str, ...], ...]] = []
    for term in positive:
        optional = _date_pieces(term.text or "") if read_dates else set()
        pieces = [(piece, forms_of(piece)) for piece in (term.text or "").split()]
        pieces = [(piece, forms) for piece, forms in pieces if forms]
        need = tuple(forms for piece, forms in pieces if piece not in optional and not set(forms) <= STOPWORDS)
        if len(need) > MAX_PIECES:
            continue
        for _, forms in pieces:
            for word in forms:
                weights[word] = max(weights.get(word, 0.0), term.weight / largest)
        if need:
            needed.append(need)
        elif pieces and not optional:  # only little words ("the"): each is needed after all
            needed.append(tuple(forms for _, forms in pieces))
    if not needed:
        return None
    fields = FIELDS[only]
    condition = Either(tuple(Every(tuple(_any_word(forms, fields) for forms in need)) for need in needed))
    return WordsPart(bm25.query(weights), condition, frozenset(weights), tuple(needed))


def forms_of(piece: str) -> tuple[str, ...]:
    """The words a piece of a query may be found as (`embedder.words.words`: ``Wi-Fi`` → wi, fi, wifi),
    without single letters where it has longer ones: ``cITY`` typed with the wrong case splits into c
    and ity, and a picture holding a lone "c" is no match for it (city, and ity, still are)."""
    found = tuple(words(piece))
    longer = tuple(w for w in found if len(w) > 1)
    return longer or found


def _any_word(forms: Iterable[str], fields: Sequence[str]) -> Condition:
    return Either(tuple(HasWord(field, word) for word in forms for field in fields))


def _date_pieces(text: str) -> set[str]:
    """The pieces of `text` that are parts of a date typed in it ("july", "2023" of "july 2023")."""
    return {piece for phrase in find_dates(text).phrases for piece in phrase.split()}
