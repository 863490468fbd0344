"""Reading one line of a batch result file: is it an answer, and if not, which failure.

No I/O: ``line_failure`` maps either envelope (``error`` at the top or in the response body, a
non-200 status, a ``finish_reason`` that carries no answer) to an ``ApiFailure`` that
``retry.classify`` can judge; ``fast_ok_record`` builds the common ok record in one dict display
for the collect hot path. Reading the files and writing the records is
``runner.engine.batch.collect``.
"""

from __future__ import annotations

from typing import Any

from runner.core.records import Record, now_iso
from runner.core.retry import finish_failure
from runner.errors import ApiFailure


def line_failure(obj: dict[str, Any]) -> ApiFailure | None:
    """None when the line is a usable answer, else the failure it carries (either envelope)."""
    response = obj.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    status = response.get("status_code") if isinstance(response, dict) else None
    if status == 200 and isinstance(body, dict):
        choices = body.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            return finish_failure(choices[0].get("finish_reason"))
    error = obj.get("error")
    if not isinstance(error, dict) and isinstance(body, dict):
        error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or "batch line failed")
        return ApiFailure(
            status if isinstance(status, int) else None,
            None if code is None else str(code),
            message,
        )
    if isinstance(status, int) and status != 200:
        return ApiFailure(status, None, f"HTTP {status} in batch result")
    return ApiFailure(200, None, "batch result has no choices", kind="no_choices")


def fast_ok_record(
    url: str,
    body: dict[str, Any],
    batch_id: str | None,
    key: str,
    now: str | None = None,
    attempts: int = 1,
    latency_ms: int = 0,
) -> Record | None:
    """``ok_record(..., via="batch", attempts, latency_ms, extra={"batch_id"})`` built as one
    dict display for the common answer (plain string content, no markers, reasoning, filter or
    truncation); None otherwise, and the caller uses ok_record. A unit test keeps the two equal.
    """
    choice = body["choices"][0]
    message = choice.get("message")
    if message.__class__ is not dict or key != url:
        return None
    content = message.get("content")
    finish = choice.get("finish_reason")
    if (
        content.__class__ is not str
        or "<" in content
        or message.get("reasoning_content")
        or finish == "length"
        or body.get("content_filter")
    ):
        return None
    return {
        "url": url,
        "status": "ok",
        "content": content,
        "finish_reason": finish,
        "usage": body.get("usage"),
        "model": body.get("model"),
        "via": "batch",
        "attempts": attempts,
        "latency_ms": latency_ms,
        "id": body.get("id"),
        "batch_id": batch_id,
        "finished_at": now or now_iso(),
    }
