"""BM25 term weights for words: the sparse WORDS vector of a point, and of a query.

Words come already normalised by `embedder.words` (one normaliser for names, text read in pictures
and queries), so Qdrant's own `Bm25` (qdrant-edge-py: its hashing of words to term ids) is set to
change nothing: it splits at spaces only, lowercases nothing more, drops no stopwords and stems
nothing (the words may be of any language). The engine weighs each term by its IDF at query time
(the WORDS vector's IDF modifier), on every backend.

A document's term weight is BM25's saturated term frequency, (k + 1)·tf / (tf + k) with k = 1.2,
without length normalisation (b = 0): a word found once weighs 1 in a file name of three words and
in a receipt of three hundred alike, so a match means the same whatever else a picture says. A
query's term weight is its term's weight (1 for plain words), so a score is the sum of the IDF of
the words a point shares with the query.

Nothing here imports torch; qdrant-edge-py is imported on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from embedder.store.contract import SparseWords

K = 1.2
_model: Any = None
_made = threading.Lock()


def _bm25() -> Any:
    global _model
    with _made:
        if _model is None:
            from qdrant_edge import Bm25, Bm25Config, DisabledStemmer, StopwordsSet, TokenizerType

            _model = Bm25(Bm25Config(
                k=K, b=0.0, tokenizer=TokenizerType.Whitespace, lowercase=False,
                stopwords=StopwordsSet(custom=set()), stemmer=DisabledStemmer(),
            ))
        return _model


def document(words: Iterable[str]) -> SparseWords:
    """The WORDS vector of a point whose words are `words` (repeats count as term frequency)."""
    text = " ".join(w for w in words if w)
    if not text:
        return SparseWords((), ())
    vector = _bm25().embed_document(text)
    return SparseWords(tuple(int(i) for i in vector.indices), tuple(float(v) for v in vector.values))


def query(weighted: Mapping[str, float]) -> SparseWords:
    """The WORDS vector of a query: each word with its weight (words with a weight of 0 or less left out)."""
    terms: dict[int, float] = {}
    for word, weight in weighted.items():
        if word and weight > 0:
            vector = _bm25().embed_query(word)
            for index in vector.indices:
                terms[int(index)] = max(terms.get(int(index), 0.0), float(weight))
    return SparseWords(tuple(terms), tuple(terms.values()))
