"""Settings from the environment and a settings file (the environment wins).

The settings file is the first of: EMBEDDER_ENV_FILE, `./qdrant.env`, `qdrant.env` in the user's
config folder. Relative paths in it are relative to the file, so the same file always means the
same store wherever a command runs; without any, data lives in the user's data folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from dotenv import dotenv_values

from embedder.errors import ConfigError
from embedder.terminal import printable
from embedder.media.excludes import DEFAULT_EXCLUDES, NONE, split_globs

APP_NAME = "embedder"
ENV_FILE_NAME = "qdrant.env"
DATA_DIR = platformdirs.user_data_path(APP_NAME)  # store and uploads when no setting says otherwise
DEFAULT_MODEL_CACHE = DATA_DIR / "model-cache"  # what is derived from models (MODEL_CACHE_DIR)
CONFIG_DIR = platformdirs.user_config_path(APP_NAME)
DEVICES = ("auto", "cpu", "cuda", "mps")

def _non_negative_int(var: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{var} must not be negative, got {value}")
    return value


def _positive_int(var: str, raw: str) -> int:
    value = _non_negative_int(var, raw)
    if value == 0:
        raise ConfigError(f"{var} must be at least 1, got 0")
    return value


def _device(var: str, raw: str) -> str:
    value = raw.strip().lower()
    if value.split(":")[0] not in DEVICES:
        raise ConfigError(f"{var} must be one of {', '.join(DEVICES)} (or cuda:N), got {raw!r}")
    return value


def _speedup(var: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("auto", "torch", "off"):
        raise ConfigError(f"{var} must be auto, torch or off, got {raw!r}")
    return value


def _url(var: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{var} must start with http:// or https://, got {raw!r}")
    return value


_NOT_IN_NAMES = frozenset("/\\:*?\"<>| ")
MAX_NAME_CHARS = 128


def collection_name(var: str, raw: str) -> str:
    """A collection's name, which becomes a folder (`QDRANT_PATH/<name>`) and part of file names:
    a short name, not `.`/`..` or hidden, without separators, spaces, `:*?"<>|`, control characters
    or bytes that are not UTF-8; else a `ConfigError` naming `var`."""
    value = raw.strip()
    bad = (
        not value
        or len(value) > MAX_NAME_CHARS
        or value.startswith(".")
        or any(c in _NOT_IN_NAMES or not c.isprintable() for c in value)
    )
    if bad:
        raise ConfigError(
            f"{var} must be a short name that can be a folder's: no spaces, control characters or /\\:*?\"<>|, "
            f"not starting with a dot (so not . or ..), got '{printable(raw)}'"
        )
    return value


def _cosine(var: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number between 0 and 1, got {raw!r}") from None
    return checked_cosine(var, value)


def _margin(var: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number between -1 and 1, got {raw!r}") from None
    if not -1 <= value <= 1:
        raise ConfigError(f"{var} must be between -1 and 1, got {value:g}")
    return value


def checked_cosine(var: str, value: float) -> float:
    """A similarity threshold: above 0 and at most 1, else a `ConfigError` naming `var`."""
    if not 0 < value <= 1:
        raise ConfigError(f"{var} must be above 0 and at most 1, got {value:g}")
    return value


def _bool(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"{var} must be true or false, got {raw!r}")
    return value in ("1", "true", "yes", "on")


def _seconds(var: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 86_400:
        raise ConfigError(f"{var} must be between 0 and 86400 seconds, got {raw!r}")
    return value


def _paths(var: str, raw: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip())


def _globs(var: str, raw: str) -> tuple[str, ...]:
    """Exclude globs, separated by commas or the path separator; `none`: no globs at all."""
    return () if raw.strip().lower() == NONE else split_globs(raw)


def _path(var: str, raw: str) -> Path:
    return Path(raw.strip()).expanduser()


def _text(var: str, raw: str) -> str:
    return raw.strip()


def setting(var: str, default: object, parse: Callable[[str, str], object], help: str, **options: object) -> Any:
    """One setting, declared once: its environment variable, default, parser and help.

    `parse(var, raw)` turns the variable's text into the value or raises a `ConfigError` naming `var`.
    """
    return field(default=default, metadata={"var": var, "parse": parse, "help": help}, **options)


@dataclass(frozen=True)
class Settings:
    """Everything the product can be configured with; one variable per field."""

    model: str = setting(
        "EMBEDDER_MODEL", "clip-ViT-B-32", _text, "sentence-transformers CLIP name or folder; open_clip:ARCH/TAG; hf:NAME"
    )
    text_model: str | None = setting(
        "EMBEDDER_TEXT_MODEL", None, _text, "a text model for queries in EMBEDDER_MODEL's space (e.g. multilingual)"
    )
    visual_model: str | None = setting(
        "EMBEDDER_VISUAL_MODEL", None, _text, "an image-only model (ViT, DINOv2) for Similar and image queries"
    )
    device: str = setting("EMBEDDER_DEVICE", "auto", _device, "auto (cuda → mps → cpu), cpu, cuda, cuda:N, mps")
    batch_size: int = setting("EMBEDDER_BATCH_SIZE", 0, _non_negative_int, "images per model call; 0: the device's choice")
    text_speedup: str = setting(
        "EMBEDDER_TEXT_SPEEDUP", "auto", _speedup,
        "auto: CLIP text queries on the CPU by ONNX Runtime, else a leaner torch path (same vectors); torch: that one; off"
    )
    workers: int = setting("EMBEDDER_WORKERS", 0, _non_negative_int, "image-decoding threads; 0: one per core")
    qdrant_url: str | None = setting("QDRANT_URL", None, _url, "Qdrant server or cluster; unset: the embedded store")
    qdrant_api_key: str | None = setting("QDRANT_API_KEY", None, _text, "server key; never logged or shown", repr=False)
    qdrant_path: Path = setting("QDRANT_PATH", DATA_DIR / "qdrant", _path, "embedded storage folder (one process)")
    qdrant_timeout: int = setting("QDRANT_TIMEOUT", 10, _positive_int, "seconds a server request may take, in all")
    collection: str = setting("QDRANT_COLLECTION", "images", collection_name, "collection; another name for another model")
    shard_number: int = setting("QDRANT_SHARD_NUMBER", 1, _positive_int, "shards of a new server collection")
    replication_factor: int = setting("QDRANT_REPLICATION_FACTOR", 1, _positive_int, "copies of each shard")
    write_consistency_factor: int = setting(
        "QDRANT_WRITE_CONSISTENCY_FACTOR", 1, _positive_int, "copies that must confirm a write"
    )
    upload_dir: Path = setting("UPLOAD_DIR", DATA_DIR / "uploads", _path, "uploads, content-addressed")
    thumb_dir: Path = setting("THUMB_DIR", DATA_DIR / "thumbnails", _path, "result thumbnails, by content hash (a cache)")
    thumb_cache_mb: int = setting("THUMB_CACHE_MB", 500, _non_negative_int, "most THUMB_DIR may hold; 0: no disk cache")
    model_cache_dir: Path = setting(
        "MODEL_CACHE_DIR", DEFAULT_MODEL_CACHE, _path, "what is derived from a model (its text tower for ONNX Runtime): a cache"
    )
    image_dirs: tuple[Path, ...] = setting("IMAGE_DIRS", (), _paths, "folders offered and watched")
    exclude: tuple[str, ...] = setting(
        "EXCLUDE", DEFAULT_EXCLUDES, _globs, "folders and files never indexed (globs); `none`: only hidden ones"
    )
    max_image_pixels: int = setting("MAX_IMAGE_PIXELS", 100_000_000, _positive_int, "bigger images are refused")
    max_upload_mb: int = setting("MAX_UPLOAD_MB", 200, _positive_int, "largest upload in MB")
    duplicate_threshold: float = setting(
        "DUPLICATE_THRESHOLD", 0.95, _cosine, "cosine at which two images count as near-duplicates"
    )
    match_margin: float = setting(
        "MATCH_MARGIN", 0.03, _margin, "how much better than \"a photo\" a text must fit an image to be a close match"
    )
    tags: bool = setting("TAGS", True, _bool, "tag each image with labels from the tag vocabulary as it is indexed")
    text_in_images: bool = setting(
        "TEXT_IN_IMAGES", True, _bool, "read the text in pictures after indexing them, so their words find them"
    )
    tags_file: Path | None = setting(
        "TAGS_FILE", None, _path, "your own tag vocabulary, one label a line; unset: the built-in everyday labels"
    )
    watch: bool = setting("WATCH", True, _bool, "watch IMAGE_DIRS and index what changes in them")
    watch_poll_s: float = setting("WATCH_POLL_S", 0.0, _seconds, "0: file events; >0: poll every N seconds")
    env_file: Path | None = field(default=None, compare=False)  # the settings file read, if any (not a setting)

    @property
    def storage_mode(self) -> str:
        return "server" if self.qdrant_url else "embedded"

    @property
    def storage_location(self) -> str:
        """The folder, or the server URL without any user:password part (safe to show and log)."""
        if not self.qdrant_url:
            return str(self.qdrant_path)
        url = urlsplit(self.qdrant_url)
        host = url.netloc.rpartition("@")[2]
        return urlunsplit((url.scheme, host, url.path, url.query, url.fragment))

    @property
    def jobs_journal(self) -> Path:
        """Where unfinished background jobs are kept across restarts: beside the index, or with a server
        in UPLOAD_DIR (the app's own folder; never a folder no setting names)."""
        base = self.upload_dir if self.qdrant_url else self.qdrant_path
        return base / f".jobs-{self.collection}.json"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: Path | str | None = None
    ) -> Settings:
        """Read settings; `environ` defaults to os.environ, `env_file` to the first settings file found."""
        environ = os.environ if environ is None else environ
        path = Path(env_file) if env_file else find_env_file(environ)
        path = path if path and path.is_file() else None
        from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path else {}
        from_env = {k: v for k, v in environ.items() if k in ENV_NAMES.values()}
        values: dict[str, Any] = {}
        for f in setting_fields():
            var = f.metadata["var"]
            raw = from_env[var] if var in from_env else from_file.get(var, "")
            if raw.strip():
                value = f.metadata["parse"](var, raw)
                values[f.name] = _beside(path, value) if path and var not in from_env else value
        return cls(**values, env_file=path)

    def env(self) -> dict[str, str]:
        """The settings as environment variables (secrets left out), e.g. for a worker process."""
        out: dict[str, str] = {}
        for f in setting_fields():
            value = getattr(self, f.name)
            if f.name == "qdrant_api_key" or value is None:
                continue
            # An empty list where the default is not empty is spelt `none` (an empty value means the default).
            out[ENV_NAMES[f.name]] = NONE if value == () and f.default else _format(value)
        return out


def _format(value: object) -> str:
    """A setting's value as it is written in the environment (and parsed back the same)."""
    if isinstance(value, tuple):  # globs by commas (they are no paths), paths by the path separator
        return ("," if all(isinstance(v, str) for v in value) else os.pathsep).join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_fields() -> list[Field]:
    """The Settings fields that are settings (each with its variable, parser and help)."""
    return [f for f in fields(Settings) if "var" in f.metadata]


# Derived from the one table above (the Settings fields), for callers that look a variable up.
ENV_NAMES: dict[str, str] = {f.name: f.metadata["var"] for f in setting_fields()}
HELP: dict[str, str] = {f.metadata["var"]: f.metadata["help"] for f in setting_fields()}


def find_env_file(environ: Mapping[str, str]) -> Path | None:
    """EMBEDDER_ENV_FILE (which must exist), else `./qdrant.env`, else the user's config folder's."""
    named = environ.get("EMBEDDER_ENV_FILE", "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"EMBEDDER_ENV_FILE is {named!r}, which is not a file")
        return path.absolute()
    for candidate in (Path.cwd() / ENV_FILE_NAME, CONFIG_DIR / ENV_FILE_NAME):
        if candidate.is_file():
            return candidate
    return None


def _beside(env_file: Path, value: Any) -> Any:
    """A relative path from a settings file is relative to that file's folder."""
    if isinstance(value, Path):
        return value if value.is_absolute() else env_file.parent / value
    if isinstance(value, tuple):
        return tuple(_beside(env_file, v) for v in value)
    return value


