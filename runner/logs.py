"""Logging setup, called once by the CLI: events with fields, as text or one JSON per line.

Modules log ``log.info("batch submitted", extra={"job": ..., "batch_id": ...})``; this module
renders ``batch submitted job=describe batch_id=batch_1`` or ``{"event": "batch submitted",
"job": "describe", ...}``. Only this module adds handlers.

Quiet by default: text logs show warnings and errors; INFO events (a run's story) appear with
``-v`` (with DEBUG) or with ``--log-format json``, because machine logs keep every event. On a
terminal, text lines go through rich's handler on the shared ``console()``, so a line logged
while the live display is up is printed above it, whole, instead of into the bar; one wider
than the window is laid out for it (``terminal_lines``: the message, then its fields on
indented lines), while files and pipes keep one line per event.
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
    """``glmrun: warning: <message> key=value ...``: one line per event, for files and pipes
    (grep finds an event with all its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(_text_parts(record))


def _text_parts(record: logging.LogRecord) -> list[str]:
    prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
    parts = ["glmrun: " + prefix + record.getMessage()]
    parts.extend(f"{key}={_text(value)}" for key, value in fields_of(record).items())
    return parts


FIELD_INDENT = "    "  # a continuation line: 4 columns further in than the line it continues
ECHO_ROOM = 2  # columns a terminal's lines leave free for its "^C" echo (live display, warnings)


def terminal_width(stream: Any) -> int | None:
    """The terminal's width when ``stream`` writes to one (``shutil.get_terminal_size``:
    ``COLUMNS`` when set, else the terminal's); None when it is not one (a pipe, a file,
    cron), or a closed or unusual stream."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    import shutil

    return shutil.get_terminal_size().columns


def wrap_for_terminal(line: str, width: int) -> list[str]:
    """``line`` as a person's terminal ``width`` columns wide should show it: wrapped at its
    spaces, each continuation ``FIELD_INDENT`` further in than the line's own indent, instead
    of the terminal cutting words, paths and URLs in two and going on at column 0. A word
    wider than a line is left whole (the terminal folds it; a URL stays one word to copy)."""
    if len(line) <= width:
        return [line]
    import textwrap

    text = line.lstrip(" ").replace("… ", "…\0")  # "… 3 more" is not cut after its "…"
    own = " " * (len(line) - len(text))
    wrapped = textwrap.wrap(
        text,
        width=max(width, 20),
        initial_indent=own,
        subsequent_indent=own + FIELD_INDENT,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [piece.replace("\0", " ") for piece in wrapped]


def terminal_lines(record: logging.LogRecord, width: int) -> list[str]:
    """An event's text line for a terminal ``width`` columns wide: as it is when it fits;
    otherwise the message, then its fields on the lines below, indented, as many to a line as
    fit and none cut in two (one too wide for a line is wrapped alone at its spaces): a
    ``key=value`` stays readable, and no part of the event starts at column 0 like a new one."""
    parts = _text_parts(record)
    whole = " ".join(parts)
    if len(whole) <= width:
        return [whole]
    room = max(width, 20) - len(FIELD_INDENT)
    lines = wrap_for_terminal(parts[0], width)
    line = ""
    for field in parts[1:]:
        if line and len(line) + 1 + len(field) > room:
            lines.append(FIELD_INDENT + line)
            line = ""
        if len(field) > room:
            lines += wrap_for_terminal(FIELD_INDENT + field, width)
        else:
            line = f"{line} {field}" if line else field
    if line:
        lines.append(FIELD_INDENT + line)
    return lines


def for_stderr(line: str) -> str:
    """A ``direct_line`` as it is written to stderr: with text logs on a terminal, wrapped to
    its width (``wrap_for_terminal``), so the last error line reads like the warnings above
    it; otherwise (JSON logs, a file, a pipe) one line."""
    width = None if _JSON_LINES else terminal_width(sys.stderr)
    return line if width is None else "\n".join(wrap_for_terminal(line, width))


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
    """rich's logging handler on ``con``, printing our text line (no time, level or path
    columns; laid out for the terminal's width by ``terminal_lines``): while a live display
    is up, rich prints it above the display, whole."""
    from rich.highlighter import NullHighlighter
    from rich.logging import RichHandler

    class ConsoleHandler(RichHandler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                # short by ECHO_ROOM, as the live display: a Ctrl-C's "^C" echo sits before the
                # "stopping" warning and pushed its 79-column first line onto a second row
                text = "\n".join(terminal_lines(record, self.console.width - ECHO_ROOM))
                self.console.print(text, markup=False, highlight=False, soft_wrap=True, crop=False)
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
