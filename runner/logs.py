"""Logging setup, called once by the CLI: events with fields, as text or one JSON per line.

Modules log ``log.info("batch submitted", extra={"job": ..., "batch_id": ...})``; this module
renders ``batch submitted job=describe batch_id=batch_1`` or ``{"event": "batch submitted",
"job": "describe", ...}``. Only this module adds handlers.

Quiet by default: text logs show warnings and errors; INFO events (a run's story) appear with
``-v`` (with DEBUG) or with ``--log-format json``, because machine logs keep every event. On a
terminal, text lines go through rich's handler on the shared ``console()``, so a line logged
while the live display is up is printed above it, whole, instead of into the bar.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rich.console import Console

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_CONSOLE: Console | None = None


def console() -> Console:
    """The stderr console shared by the log handler and the live display (one per process).
    rich is imported here, not at module level: ``glmrun --help`` and a quick Ctrl-C after
    start must not wait for it."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True, highlight=False, soft_wrap=False)
    return _CONSOLE


def set_console(value: Console | None) -> None:
    """Tests hand in a recording console of a fixed width (``Console(record=True, width=80)``)."""
    global _CONSOLE
    _CONSOLE = value


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value, default=str).decode()
    text = str(value)
    if " " in text or not text:
        text = orjson.dumps(text).decode()
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [record.getMessage()]
        parts.extend(f"{key}={_text(value)}" for key, value in fields_of(record).items())
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return "glmrun: " + prefix + " ".join(parts)


def timestamp(created: float) -> str:
    """``2026-11-30T19:04:01.123Z``: the ``ts`` of every JSON line."""
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


_JSON_LINES = False  # --log-format json: lines written outside logging are JSON too


def set_json_lines(value: bool) -> None:
    """Lines written outside logging as JSON (before logging is set up: a usage error)."""
    global _JSON_LINES
    _JSON_LINES = value


def direct_line(text: str, *, event: str, level: str, **fields: Any) -> str:
    """A line written to stderr outside logging (the CLI's last error line; a second signal's
    notice, from a signal handler): ``glmrun: <text>``, or with ``--log-format json`` an event
    like every other line, so a log of JSON lines stays one."""
    if not _JSON_LINES:
        return f"glmrun: {text}"
    data = {"ts": timestamp(time.time()), "level": level, "event": event, **fields}
    return orjson.dumps(data, default=str).decode()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # a line written for people (a config warning) names its kind in ``_event``: the event
        # stays one name an alert can match, and the text is its message
        kind = getattr(record, "_event", None)
        data: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "event": kind or record.getMessage(),
        }
        if kind:
            data["message"] = record.getMessage()
        data.update(fields_of(record))
        if record.exc_info and record.levelno >= logging.ERROR:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def console_handler(con: Console) -> logging.Handler:
    """rich's logging handler on ``con``, printing our text line as it is (no time, level or
    path columns): while a live display is up, rich prints it above the display, whole."""
    from rich.highlighter import NullHighlighter
    from rich.logging import RichHandler

    class ConsoleHandler(RichHandler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                self.console.print(
                    self.format(record), markup=False, highlight=False, soft_wrap=True, crop=False
                )
            except Exception:  # logging must never end the run
                self.handleError(record)

    handler = ConsoleHandler(console=con, highlighter=NullHighlighter())
    handler.setFormatter(TextFormatter())
    return handler


def level_for(verbosity: int, fmt: str) -> int:
    """-1 (``-q``): warnings; 0: warnings (text) or info (json); 1 (``-v``): debug."""
    if verbosity >= 1:
        return logging.DEBUG
    if verbosity == 0 and fmt == "json":
        return logging.INFO
    return logging.WARNING


def setup_logging(*, verbosity: int = 0, fmt: str = "text", stream: IO[str] | None = None) -> None:
    global _JSON_LINES
    _JSON_LINES = fmt == "json"
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif stream is None and sys.stderr.isatty():
        handler = console_handler(console())
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(TextFormatter())
    level = level_for(verbosity, fmt)
    handler.setLevel(level)
    root = logging.getLogger("runner")
    root.handlers[:] = [handler]
    # INFO events are still made at default verbosity (a few per job): the display turns the
    # batch events into lines for people. Per-request DEBUG is only made with -v.
    root.setLevel(min(level, logging.INFO))
    root.propagate = False
