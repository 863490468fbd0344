"""The output record: one JSON object per line, keyed by URL (or by the item's id).

Shape (``status: ok``)::

    {"url", "status": "ok", "content", "finish_reason", "usage", "model", "via",
     "attempts", "latency_ms", "id", "finished_at"}

``status: error`` records carry ``error: {code, message, retryable}`` instead of content.
Optional fields: ``truncated`` (finish_reason length), ``reasoning_content`` (from the API or
a glm-4.5v ``<think>`` block), ``content_filter``, ``meta`` (the JSONL item's meta),
``parsed`` / ``parse_error`` / ``schema_errors`` (``output.parse: json``).
Batch records add ``batch_id``. A record whose ``key`` differs from its ``url`` carries
``key`` too; the resume index reads ``key`` when present, else ``url``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from runner.core.items import InvalidLine
from runner.core.models import did_you_mean

Record = dict[str, Any]

INVALID_INPUT = "invalid_input"
LOCAL_FILE = "local_file"  # a local file checked at plan time could not be read when sending


# Field paths ``glmrun export --columns`` knows: a top-level name, or name.sub. None: any sub
# field (meta and parsed are the user's own shapes).
FIELDS: dict[str, frozenset[str] | None] = {
    "key": frozenset(),
    "url": frozenset(),
    "status": frozenset(),
    "content": frozenset(),
    "reasoning_content": frozenset(),
    "finish_reason": frozenset(),
    "truncated": frozenset(),
    "usage": frozenset(
        {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"}
    ),
    "model": frozenset(),
    "via": frozenset(),
    "attempts": frozenset(),
    "latency_ms": frozenset(),
    "id": frozenset(),
    "finished_at": frozenset(),
    "error": frozenset({"code", "message", "retryable"}),
    "content_filter": None,
    "meta": None,
    "parsed": None,
    "parse_error": None,
    "schema_errors": None,
    "batch_id": frozenset(),
}


PATHS = [*FIELDS, *(f"{head}.{sub}" for head, subs in FIELDS.items() for sub in sorted(subs or ()))]


def unknown_field(path: str) -> str | None:
    """Why ``path`` names no record field, or None when it does. The did-you-mean is a whole
    path the user can paste back (``usage.prompt_tokens``, never a bare ``prompt_tokens``,
    which is itself refused), and a bare sub-field name points to its parent's."""
    head, _, rest = path.partition(".")
    if head not in FIELDS:
        owners = [f"{h}.{path}" for h, subs in FIELDS.items() if subs and path in subs]
        hint = f" (did you mean {owners[0]!r}?)" if owners else did_you_mean(path, PATHS)
        return f"unknown field {path!r}{hint}"
    subs = FIELDS[head]
    if rest and subs is not None:
        sub = rest.split(".", 1)[0]
        if sub not in subs:
            hint = did_you_mean(f"{head}.{sub}", [f"{head}.{s}" for s in subs])
            if not subs:
                hint = f" ({head} has no sub-fields)"
            return f"unknown field {path!r}{hint}"
    return None


_now_cache: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """UTC now to the second; formatted once per second, not once per record."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _now_cache[1]


def record_key(record: Record) -> str | None:
    key = record.get("key", record.get("url"))
    return key if isinstance(key, str) else None


def is_final(record: Record) -> bool:
    """ok, or an error that says retrying cannot fix it: the next run skips this key.

    An error record whose ``error`` is not an object (a foreign or hand-edited line) says
    nothing of the kind, so it is retryable: better to pay once more than to skip a URL."""
    status = record.get("status")
    if status == "ok":
        return True
    error = record.get("error")
    return status == "error" and isinstance(error, dict) and error.get("retryable", True) is False


def is_invalid_input(record: Record) -> bool:
    """An input line that could not become a request (never sent): resume reads such a line
    again, so a run whose config now makes it valid sends it (``runner.core.resume``)."""
    error = record.get("error")
    return (
        record.get("status") == "error"
        and isinstance(error, dict)
        and error.get("code") == INVALID_INPUT
    )


def ok_record(
    url: str,
    response: dict[str, Any],
    *,
    via: str,
    attempts: int,
    latency_ms: int,
    key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Record:
    """Turn a chat completion into an ok record (the caller checked it has choices)."""
    choice = response["choices"][0]
    message = choice.get("message") or {}
    record: Record = {"url": url}
    if key is not None and key != url:
        record["key"] = key
    record["status"] = "ok"
    content = text_of(message.get("content"))
    reasoning = message.get("reasoning_content")
    if "<" in content:
        content, thought = strip_markers(content)
        reasoning = reasoning or thought
    record["content"] = content
    if reasoning:
        record["reasoning_content"] = reasoning
    record["finish_reason"] = choice.get("finish_reason")
    if choice.get("finish_reason") == "length":
        record["truncated"] = True
    record["usage"] = response.get("usage")
    record["model"] = response.get("model")
    record["via"] = via
    record["attempts"] = attempts
    record["latency_ms"] = latency_ms
    record["id"] = response.get("id")
    if response.get("content_filter"):
        record["content_filter"] = response["content_filter"]
    if extra:
        record.update(extra)
    record["finished_at"] = now_iso()
    return record


def error_record(
    url: str,
    code: str,
    message: str,
    *,
    retryable: bool,
    via: str,
    attempts: int = 0,
    latency_ms: int | None = None,
    key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Record:
    record: Record = {"url": url}
    if key is not None and key != url:
        record["key"] = key
    record["status"] = "error"
    record["error"] = {"code": code, "message": message[:500], "retryable": retryable}
    record["via"] = via
    record["attempts"] = attempts
    if latency_ms is not None:
        record["latency_ms"] = latency_ms
    if extra:
        record.update(extra)
    record["finished_at"] = now_iso()
    return record


_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_BOX_MARKERS = ("<|begin_of_box|>", "<|end_of_box|>")


def strip_markers(content: str) -> tuple[str, str | None]:
    """GLM-4.5V answers: ``<think>…</think>`` -> reasoning; box markers removed
    (glm-api.md §2.2)."""
    thought = None
    start = content.find(_THINK_OPEN)
    if start != -1:
        end = content.find(_THINK_CLOSE, start)
        if end == -1:  # cut off (finish_reason length): everything after <think> is reasoning
            thought, content = content[start + len(_THINK_OPEN) :].strip(), content[:start]
        else:
            thought = content[start + len(_THINK_OPEN) : end].strip()
            content = content[:start] + content[end + len(_THINK_CLOSE) :]
    elif _THINK_CLOSE in content:  # some deployments drop the opening tag
        thought, content = content.split(_THINK_CLOSE, 1)
        thought = thought.strip()
    for marker in _BOX_MARKERS:
        content = content.replace(marker, "")
    return content.strip(), thought or None


def text_of(content: Any) -> str:
    """Message content may be a string or a list of {type: text, text} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return str(content)


def dumps(record: Record) -> bytes:
    """One whole line: a crash can tear at most the last line of the file."""
    return orjson.dumps(record) + b"\n"


def invalid_input_record(line: InvalidLine) -> Record:
    """The permanent error record of an input line that cannot become a request."""
    return error_record(
        line.key,
        INVALID_INPUT,
        f"line {line.line_no}: {line.reason}",
        retryable=False,
        via="input",
    )
