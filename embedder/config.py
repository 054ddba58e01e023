"""Settings from the environment and `qdrant.env` (the environment wins)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

from embedder.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = PROJECT_ROOT / "qdrant.env"
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


def _url(var: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{var} must start with http:// or https://, got {raw!r}")
    return value


def _collection(var: str, raw: str) -> str:
    value = raw.strip()
    if not value or any(c in value for c in "/\\:*?\"<>| ") or len(value) > 128:
        raise ConfigError(f"{var} must be a short name without spaces or /\\:*?\"<>|, got {raw!r}")
    return value


def _cosine(var: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{var} must be a number between 0 and 1, got {raw!r}") from None
    return checked_cosine(var, value)


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

    model: str = setting("EMBEDDER_MODEL", "clip-ViT-B-32", _text, "CLIP model: a sentence-transformers name or a folder")
    device: str = setting("EMBEDDER_DEVICE", "auto", _device, "auto (cuda → mps → cpu), cpu, cuda, cuda:N, mps")
    batch_size: int = setting("EMBEDDER_BATCH_SIZE", 0, _non_negative_int, "images per model call; 0: the device's choice")
    workers: int = setting("EMBEDDER_WORKERS", 0, _non_negative_int, "image-decoding threads; 0: one per core")
    qdrant_url: str | None = setting("QDRANT_URL", None, _url, "Qdrant server or cluster; unset: the embedded store")
    qdrant_api_key: str | None = setting("QDRANT_API_KEY", None, _text, "server key; never logged or shown", repr=False)
    qdrant_path: Path = setting("QDRANT_PATH", Path("data/qdrant"), _path, "embedded storage folder (one process)")
    qdrant_timeout: int = setting("QDRANT_TIMEOUT", 10, _positive_int, "seconds a server request may take, in all")
    collection: str = setting("QDRANT_COLLECTION", "images", _collection, "collection; another name for another model")
    shard_number: int = setting("QDRANT_SHARD_NUMBER", 1, _positive_int, "shards of a new server collection")
    replication_factor: int = setting("QDRANT_REPLICATION_FACTOR", 1, _positive_int, "copies of each shard")
    write_consistency_factor: int = setting(
        "QDRANT_WRITE_CONSISTENCY_FACTOR", 1, _positive_int, "copies that must confirm a write"
    )
    upload_dir: Path = setting("UPLOAD_DIR", Path("data/uploads"), _path, "uploads, content-addressed")
    image_dirs: tuple[Path, ...] = setting("IMAGE_DIRS", (), _paths, "folders offered and watched")
    max_image_pixels: int = setting("MAX_IMAGE_PIXELS", 100_000_000, _positive_int, "bigger images are refused")
    max_upload_mb: int = setting("MAX_UPLOAD_MB", 200, _positive_int, "largest upload in MB")
    duplicate_threshold: float = setting(
        "DUPLICATE_THRESHOLD", 0.95, _cosine, "cosine at which two images count as near-duplicates"
    )
    watch: bool = setting("WATCH", True, _bool, "watch IMAGE_DIRS and index what changes in them")
    watch_poll_s: float = setting("WATCH_POLL_S", 0.0, _seconds, "0: file events; >0: poll every N seconds")

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
        """Where unfinished background jobs are kept across restarts (beside the index)."""
        base = self.upload_dir.parent if self.qdrant_url else self.qdrant_path
        return base / f".jobs-{self.collection}.json"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: Path | str | None = None
    ) -> Settings:
        """Read settings; `environ` defaults to os.environ, `env_file` to EMBEDDER_ENV_FILE or qdrant.env."""
        environ = os.environ if environ is None else environ
        path = Path(env_file or environ.get("EMBEDDER_ENV_FILE") or DEFAULT_ENV_FILE)
        from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
        values = {**from_file, **{k: v for k, v in environ.items() if k in ENV_NAMES.values()}}
        return cls(**{f.name: f.metadata["parse"](f.metadata["var"], values[f.metadata["var"]])
                      for f in fields(cls) if values.get(f.metadata["var"], "") != ""})

    def env(self) -> dict[str, str]:
        """The settings as environment variables (secrets left out), e.g. for a worker process."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "qdrant_api_key" or value is None:
                continue
            out[ENV_NAMES[f.name]] = _format(value)
        return out


def _format(value: object) -> str:
    """A setting's value as it is written in the environment (and parsed back the same)."""
    if isinstance(value, tuple):
        return os.pathsep.join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# Derived from the one table above (the Settings fields), for callers that look a variable up.
ENV_NAMES: dict[str, str] = {f.name: f.metadata["var"] for f in fields(Settings)}
HELP: dict[str, str] = {f.metadata["var"]: f.metadata["help"] for f in fields(Settings)}


