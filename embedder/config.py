"""Settings from the environment and `qdrant.env` (the environment wins)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

from embedder.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = PROJECT_ROOT / "qdrant.env"
DEVICES = ("auto", "cpu", "cuda", "mps")

@dataclass(frozen=True)
class Settings:
    """Everything the product can be configured with; one variable per field."""

    model: str = "clip-ViT-B-32"
    device: str = "auto"
    batch_size: int = 0  # 0: the encoder picks a size for the device
    workers: int = 0  # decode threads; 0: half the cores on CPU, all of them with a GPU
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    qdrant_path: Path = Path("data/qdrant")
    qdrant_timeout: int = 10
    collection: str = "images"
    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    upload_dir: Path = Path("data/uploads")
    image_dirs: tuple[Path, ...] = ()
    max_image_pixels: int = 100_000_000
    max_upload_mb: int = 200
    duplicate_threshold: float = 0.95  # cosine at which two images count as near-duplicates
    watch: bool = True  # the app watches IMAGE_DIRS and indexes what changes in them
    watch_poll_s: float = 0.0  # 0: file events; above 0: look for changes every this many seconds

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
        return cls(**{name: _parse(name, values[var]) for name, var in ENV_NAMES.items() if values.get(var, "") != ""})

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


ENV_NAMES: dict[str, str] = {
    "model": "EMBEDDER_MODEL",
    "device": "EMBEDDER_DEVICE",
    "batch_size": "EMBEDDER_BATCH_SIZE",
    "workers": "EMBEDDER_WORKERS",
    "qdrant_url": "QDRANT_URL",
    "qdrant_api_key": "QDRANT_API_KEY",
    "qdrant_path": "QDRANT_PATH",
    "qdrant_timeout": "QDRANT_TIMEOUT",
    "collection": "QDRANT_COLLECTION",
    "shard_number": "QDRANT_SHARD_NUMBER",
    "replication_factor": "QDRANT_REPLICATION_FACTOR",
    "write_consistency_factor": "QDRANT_WRITE_CONSISTENCY_FACTOR",
    "upload_dir": "UPLOAD_DIR",
    "image_dirs": "IMAGE_DIRS",
    "max_image_pixels": "MAX_IMAGE_PIXELS",
    "max_upload_mb": "MAX_UPLOAD_MB",
    "duplicate_threshold": "DUPLICATE_THRESHOLD",
    "watch": "WATCH",
    "watch_poll_s": "WATCH_POLL_S",
}


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


PARSERS: dict[str, Callable[[str, str], object]] = {
    "batch_size": _non_negative_int,
    "workers": _non_negative_int,
    "qdrant_timeout": _positive_int,
    "shard_number": _positive_int,
    "replication_factor": _positive_int,
    "write_consistency_factor": _positive_int,
    "max_image_pixels": _positive_int,
    "max_upload_mb": _positive_int,
    "duplicate_threshold": _cosine,
    "device": _device,
    "qdrant_url": _url,
    "collection": _collection,
    "qdrant_path": lambda var, raw: Path(raw.strip()).expanduser(),
    "upload_dir": lambda var, raw: Path(raw.strip()).expanduser(),
    "image_dirs": _paths,
    "watch": _bool,
    "watch_poll_s": _seconds,
}


def _parse(name: str, raw: str) -> object:
    parser = PARSERS.get(name)
    return parser(ENV_NAMES[name], raw) if parser else raw.strip()
