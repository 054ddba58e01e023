"""The payload fields that get an index, declared once for every backend.

Keyword fields answer exact matches (a path, a folder and everything below it, a file type); number
fields answer ranges (dates, sizes); text fields (words separated by spaces, already normalised by
`embedder.words`, so the index only splits at spaces) answer "holds this word". Each backend turns
this table into its own index calls, and its filter builder uses only these fields.
"""

from __future__ import annotations

PAYLOAD_INDEXES: dict[str, str] = {
    "paths": "keyword",  # every path of the image: a path belongs to one point
    "folders": "keyword",  # every folder above each path: the folder filter
    "format": "keyword",  # JPEG, PNG, …: the file-type filter
    "tags": "keyword",  # labels found in the picture (embedder/indexing/tags.py): the tag filter and its counts
    "date": "float",  # date taken (EXIF) or the file's time: the date filter, browsing by date
    "bytes": "float",
    "width": "float",
    "height": "float",
    "text_reader": "keyword",  # which reader read the picture's text (embedder/indexing/text_pass.py)
    "text": "text",  # the words of the text read in the picture
    "name_text": "text",  # the words of its file and folder names (uploads: the names they were sent as)
    "words": "text",  # all of its words: text, names and tags (what a query's words must be found in)
}
KEYWORD_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "keyword")
NUMBER_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "float")
TEXT_FIELDS = tuple(name for name, kind in PAYLOAD_INDEXES.items() if kind == "text")
TEXT_READER = "text_reader"
WORDS_FIELD = "words"
