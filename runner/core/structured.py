"""Pure: ``output: {parse: json, schema: ...}`` — the answer as JSON, checked by a JSON Schema.

The record keeps ``content`` as it came; ``parsed`` holds the JSON value. A parse failure is
``parse_error`` (a message) and a schema failure ``schema_errors`` (a list of messages, at
most 10) on an otherwise ok record: the money is spent, so the answer is kept, and the next
run does not resend it (export or re-run with a fresh output to retry such keys).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from runner.config.schema import JobConfig
from runner.core.records import Record

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```", re.DOTALL)
MAX_SCHEMA_ERRORS = 10


def extract_json_text(content: str) -> str:
    """The body of the first fenced block when there is one, else the content stripped."""
    m = _FENCE.search(content)
    return (m.group(1) if m else content).strip()


def parse_json_answer(content: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why it is not JSON)."""
    text = extract_json_text(content)
    if not text:
        return None, "empty answer"
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        # models often add prose around the object: try the outermost {...} or [...]
        for open_, close in (("{", "}"), ("[", "]")):
            start, end = text.find(open_), text.rfind(close)
            if 0 <= start < end:
                try:
                    return orjson.loads(text[start : end + 1]), None
                except orjson.JSONDecodeError:
                    pass
        return None, f"not JSON: {exc}"


class StructuredOutput:
    __slots__ = ("validator",)

    def __init__(self, schema: dict[str, Any] | None):
        self.validator = None
        if schema is not None:
            import jsonschema

            cls = jsonschema.validators.validator_for(schema)
            self.validator = cls(schema)

    @classmethod
    def for_job(cls, job: JobConfig) -> StructuredOutput | None:
        if job.parse != "json":
            return None
        return cls(job.schema)

    def apply(self, record: Record) -> None:
        value, error = parse_json_answer(record.get("content") or "")
        if error is not None:
            record["parse_error"] = error
            return
        record["parsed"] = value
        if self.validator is not None:
            errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                record["schema_errors"] = [
                    (f"{'/'.join(map(str, e.absolute_path))}: " if e.absolute_path else "")
                    + e.message
                    for e in errors[:MAX_SCHEMA_ERRORS]
                ]
