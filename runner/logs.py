"""Logging setup, called once by the CLI: events with fields, as text or one JSON per line.

Modules log ``log.info("batch submitted", extra={"job": ..., "batch_id": ...})``; this module
renders ``batch submitted job=describe batch_id=batch_1`` or ``{"event": "batch submitted",
"job": "describe", ...}``. Only this module adds handlers.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [record.getMessage()]
        for key, value in fields_of(record).items():
            text = str(value)
            if " " in text or not text:
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return "glmrun: " + prefix + " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        data.update(fields_of(record))
        if record.exc_info and record.levelno >= logging.ERROR:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def setup_logging(*, verbosity: int = 0, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """verbosity: -1 quiet (warnings), 0 info, 1 debug."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("runner")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
