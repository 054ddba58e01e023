"""What a Streamlit app's log may not hold after a test: a traceback, or a warning from Streamlit.

The browser tests start the app with `LOG_FORMAT`, so each line says its level and logger; any
WARNING (or worse) from a `streamlit…` logger fails the test: a widget given a default and a Session
State value ("was created with a default value but also had its value set via the Session State
API"), a key used twice, a page that cannot be found, and the rest.
"""

from __future__ import annotations

import logging
import re

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # --logger.messageFormat
_STREAMLIT_WARNING = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (streamlit[\w.]*): (.*)$")
DUPLICATED_STATE = "was created with a default value but also had its value set"
# What AppTest itself makes Streamlit say: the test's own thread has no script context or runtime.
APPTEST_ONLY = ("missing ScriptRunContext", "No runtime found")


def problems(log: str) -> list[str]:
    """Each traceback and each Streamlit warning or error in `log`, as a line to show."""
    found = [match.group(0) for match in map(_STREAMLIT_WARNING.match, log.splitlines()) if match]
    found += [line for line in log.splitlines() if DUPLICATED_STATE in line and line not in found]
    if "Traceback (most recent call last)" in log:
        found.append("a traceback: " + log[log.index("Traceback (most recent call last)"):][:2000])
    return found


class StreamlitWarnings(logging.Handler):
    """Collects what Streamlit's own loggers warn about while a test drives the app in-process
    (AppTest): they do not propagate, so each gets this handler. Use it as a context manager."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._loggers: list[logging.Logger] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not any(words in message for words in APPTEST_ONLY):
            self.messages.append(f"{record.name}: {message}")

    def __enter__(self) -> StreamlitWarnings:
        from streamlit.elements.lib import policies

        policies._shown_default_value_warning = False  # noqa: SLF001 - Streamlit says it once per process
        names = [n for n in logging.Logger.manager.loggerDict if n == "streamlit" or n.startswith("streamlit.")]
        self._loggers = [logging.getLogger(n) for n in names]
        for logger in self._loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)
