"""Output lines of every kind a resume index meets, and a reference index built by a full
JSON parse of every line (the resume-index tests compare the fast paths against it)."""

from __future__ import annotations

from pathlib import Path

import orjson

from runner.core.items import InvalidLine
from runner.core.records import error_record, invalid_input_record, ok_record
from runner.core.resume import ResumeIndex
from runner.io.jsonl import iter_records

RESPONSE = {
    "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
    "usage": {"total_tokens": 3},
    "model": "m",
    "id": "1",
}


def reference(path: Path) -> ResumeIndex:
    index = ResumeIndex()
    for record in iter_records(path, index.corrupt_lines):
        key = record.get("key", record.get("url"))
        if not isinstance(key, str):
            continue
        status = record.get("status")
        error = record.get("error")
        final = status == "ok" or (
            status == "error" and isinstance(error, dict) and error.get("retryable", True) is False
        )
        invalid = status == "error" and isinstance(error, dict) and error["code"] == "invalid_input"
        index.add(key, status, final, invalid)
        index.records += 1
    return index


def line_for(kind: str, url: str, key: str | None) -> bytes:
    if kind == "ok":
        return (
            orjson.dumps(
                ok_record(url, RESPONSE, via="realtime", attempts=1, latency_ms=5, key=key)
            )
            + b"\n"
        )
    if kind in ("final", "retryable"):
        rec = error_record(
            url, "1301", "no", retryable=kind == "retryable", via="realtime", key=key
        )
        return orjson.dumps(rec) + b"\n"
    if kind == "invalid":
        return orjson.dumps(invalid_input_record(InvalidLine(key or url, 1, "bad line"))) + b"\n"
    if kind == "foreign":  # status before url: not glmrun's field order
        return orjson.dumps({"status": "ok", "url": url}) + b"\n"
    if kind == "corrupt":
        return b'{"url": broken\n'
    return b"\n"
