"""Changing a few settings in the user's settings file, keeping everything else in it as it was.

The file is the one `Settings.from_env` read (EMBEDDER_ENV_FILE, ./qdrant.env, or qdrant.env in the
config folder); without one, a new qdrant.env in the config folder, which every later command reads.
A line `VAR=value` (or `export VAR=value`) is replaced where it is, a variable not in the file is
appended, and one set to None is removed (its default applies again). Comments, blank lines and
other variables stay byte for byte. The file is rewritten whole or not at all.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from embedder.config import CONFIG_DIR, ENV_FILE_NAME, Settings
from embedder.durable import write_text
from embedder.errors import ConfigError

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,~%=-]*")  # written bare: no quoting needed


def settings_file(settings: Settings) -> Path:
    """The settings file to change: the one in use, else a new one in the config folder."""
    return settings.env_file or CONFIG_DIR / ENV_FILE_NAME


def quoted(value: str) -> str:
    """A value as python-dotenv reads it back exactly: bare, in single quotes (literal), or double."""
    if _PLAIN.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def update_settings_file(path: Path, values: Mapping[str, str | None]) -> Path:
    """Set (or with None remove) `values` in the settings file at `path` (made if missing); the path."""
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"Cannot read the settings file {path}: {why}") from None
    lines = text.splitlines()
    pending = dict(values)
    kept = []
    for line in lines:
        match = _ASSIGNMENT.match(line)
        var = match.group(1) if match else None
        if var not in values:
            kept.append(line)
        elif var in pending:  # the first assignment is rewritten in place, any later one dropped
            value = pending.pop(var)
            if value is not None:
                kept.append(f"{var}={quoted(value)}")
    kept += [f"{var}={quoted(value)}" for var, value in pending.items() if value is not None]
    new_text = "\n".join(kept) + "\n" if kept else ""
    read_back = dotenv_values(stream=io.StringIO(new_text))
    wrong = [var for var, value in values.items() if value is not None and read_back.get(var) != value]
    if wrong:
        raise ConfigError(f"{wrong[0]}={values[wrong[0]]!r} cannot be written into a settings file as it is")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, new_text)
    except OSError as exc:
        raise ConfigError(f"Cannot write the settings file {path}: {exc.strerror or exc} (it is unchanged)") from None
    return path
