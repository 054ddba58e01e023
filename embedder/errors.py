"""Errors the product shows to people: each message says what went wrong and how to fix it."""


class EmbedderError(Exception):
    """Base class: anything a front end should show as a message, never as a traceback."""


class ConfigError(EmbedderError):
    """A setting has an invalid value; the message names the variable."""


class ImageError(EmbedderError):
    """A file could not be read as an image; the message is a human reason."""


class ModelLoadError(EmbedderError):
    """A model (CLIP, the text reader's) could not be loaded."""


class TextReadError(EmbedderError):
    """The text in one picture could not be read; the picture itself (and its vector) is unaffected."""


class StoreError(EmbedderError):
    """Qdrant could not be reached or refused the request."""


class StoreInUseError(StoreError):
    """The embedded storage folder is held by another process."""


class CollectionMismatchError(StoreError):
    """The collection was filled by another model or has another vector size."""


class QueryError(EmbedderError, ValueError):
    """A query that cannot be searched: no terms left, terms that cancel out, an image gone."""


class UploadError(EmbedderError):
    """An upload refused before it is kept: not an image type, or over MAX_UPLOAD_MB."""


class DatasetError(EmbedderError):
    """A labelled dataset for `eval` that cannot be read; the message names the file and line."""


class MoveError(EmbedderError):
    """A folder that files cannot be moved into (relative, a file, not writable)."""


class TuneError(EmbedderError):
    """A model or dataset that cannot be tuned, or a tuned model that could not be written."""


class Interrupted(EmbedderError):
    """Work stopped because its process is stopping (Ctrl-C, SIGTERM, the app shutting down): what
    was stored stays, and the next run or start finishes it. Never a failure of the work itself."""
