"""Reading one line of a batch result file: is it an answer, and if not, which failure.

No I/O: ``line_failure`` maps either envelope (``error`` at the top or in the response body, a
non-200 status, a ``finish_reason`` that carries no answer) to an ``ApiFailure`` that
``retry.classify`` can judge; ``fast_ok_record`` builds the common ok record in one dict display;
``ANSWER_LINES`` recognises the common answer line without decoding it (the collector's fast
path). Reading the files and writing the records is ``runner.engine.batch.collect``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain
from typing import Any

from runner.core.records import Record, now_iso
from runner.core.resume import numpy
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


# The fast path's line shape. JSON pieces whose bytes are already what ``orjson.dumps`` writes
# for the value they decode to: a string whose only escapes are the short ones orjson writes
# (\" \\ \b \f \n \r \t; not \/ or \uXXXX) and no control byte (the caller checks the bytes
# are UTF-8), an integer without sign or leading zero. Quantifiers are possessive (``*+``, ``?+``):
# what each one takes can never be what follows it, so giving some back could not make a match,
# and sre skips the bookkeeping that backtracking would need (about an eighth of the scan).
_PLAIN = rb'[^"\\\x00-\x1f]*+'
_STR = rb'"' + _PLAIN + rb'"'
_INT = rb"(?:0|[1-9][0-9]{0,14}+)"
_CHARS = rb'[^"\\<\x00-\x1f]*+'  # no "<" either: marker stripping (<think>, boxes) is ok_record's
_TEXT = rb'"(' + _CHARS + rb'(?:\\["\\bfnrt]' + _CHARS + rb')*+)"'
_ANSWER = (
    rb'\{"response":\{"status_code":200,"body":\{"id":"(' + _PLAIN + rb')",'
    rb'(?:"request_id":' + _STR + rb",)?+"
    rb'"created":' + _INT + rb',"model":"(' + _PLAIN + rb')",'
    rb'"choices":\[\{"index":' + _INT + rb',"finish_reason":"stop",'
    rb'"message":\{"role":"assistant","content":' + _TEXT + rb"\}\}\],"
    rb'"usage":(\{"prompt_tokens":(' + _INT + rb'),"completion_tokens":(' + _INT + rb"),"
    rb'"total_tokens":' + _INT + rb"\})\}\},"
    rb'"custom_id":"([^"\\\x00-\x1f]++)","id":' + _STR + rb"\}"
)
ANSWER_LINES = re.compile(rb"\n(?:" + _ANSWER + rb"(?=\n|\Z)|([^\n]*+))")
"""One match per line (each preceded by a newline). When the line is an answer in the documented
shape (glm-api.md §5.5: compact, keys in the documented order, ``finish_reason`` stop, string
content without markers, usage of three counts), its pieces: body id, model, content, usage,
prompt and completion tokens, custom_id; such a line decodes to what ``fast_ok_record`` takes,
and its record can be spliced from these bytes. Any other line (errors, other finish reasons,
long escapes, spacing, extra or reordered keys, bad JSON) has an empty custom_id and the whole
line as the last piece, for the full parser."""

# The same shape scanned more cheaply, for a block whose lines are all answers (a result file of
# successes). The strings the record takes (body id, model, content, custom_id) are scanned up to
# the next quote (``[^"]``: a plain byte compare in sre, not a set lookup per byte) and the two
# long constants are skipped (``(?s:.){n}`` moves n bytes at once; a skip that ran over a line
# end cannot equal its constant), all checked afterwards in bulk, a column at a time
# (``answer_columns``). Content may hold escaped quotes: a quote after a
# backslash does not end it (a misread ``\\"`` is caught by the check: a raw quote is left once
# the escapes are taken out).
_HEAD = b'{"response":{"status_code":200,"body":{"id":"'
_CHOICE = b'"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"'
_RELAXED = (
    rb"((?s:.){%d})" % len(_HEAD) + rb'([^"]*+)",'
    rb'(?:"request_id":' + _STR + rb",)?+"
    rb'"created":' + _INT + rb',"model":"([^"]*+)",'
    rb"((?s:.){%d})" % len(_CHOICE) + rb'([^"]*+(?:(?<=\\)"[^"]*+)*+)"\}\}\],'
    rb'"usage":(\{"prompt_tokens":(' + _INT + rb'),"completion_tokens":(' + _INT + rb"),"
    rb'"total_tokens":' + _INT + rb"\})\}\},"
    rb'"custom_id":"([^"]++)","id":' + _STR + rb"\}"
)
_RELAXED_LINES = re.compile(rb"\n(?:" + _RELAXED + rb"(?=\n|\Z)|([^\n]*+))")
_SHORT_ESCAPES = (b'\\"', b"\\n", b"\\r", b"\\t", b"\\b", b"\\f")


def answer_columns(block: bytes) -> list[tuple[bytes, ...]] | None:
    """The columns of ``ANSWER_LINES.findall(block)`` (body ids, models, contents, usages,
    prompt and completion tokens, custom_ids, other lines) by the cheaper scan, a row per line;
    None when a string it took may not be what ``ANSWER_LINES`` would take (then the caller
    scans with ``ANSWER_LINES``). A line it does not take has an empty custom_id and the whole
    line as the last piece, as there (some that ``ANSWER_LINES`` takes, such as an index other
    than 0, go to the full parser this way: same records, more slowly).

    A row it takes is the row of ``ANSWER_LINES`` once the skipped bytes are the constants and
    its strings pass what the set lookups would have checked: no control byte (a newline would
    mean a string ran into the next line), no backslash in a body id, model or custom_id, and a
    content without ``<`` whose only escapes are the short ones.
    """
    rows = _RELAXED_LINES.findall(block)
    columns = list(zip(*rows, strict=True))
    if not columns:
        return None
    heads, body_ids, models, choices, contents = columns[:5]
    answers = len(rows) - columns[8].count(b"")
    if heads.count(_HEAD) != answers or choices.count(_CHOICE) != answers:
        return None
    strings = b"".join(chain(body_ids, models, columns[8]))
    if b"\\" in strings or _controls(strings):
        return None
    text = b"\n".join(contents)
    if b"<" in text or _controls(text) != len(rows) - 1:  # the newlines put between them
        return None
    if b"\\" in text:
        text = text.replace(b"\\\\", b"")  # escaped backslashes first: what is left pairs up
        for escape in _SHORT_ESCAPES:
            text = text.replace(escape, b"")
        if b"\\" in text or b'"' in text:  # a long escape, or a quote the scan misread
            return None
    return [body_ids, models, contents, *columns[5:]]


def _controls(data: bytes) -> int:
    """How many bytes of ``data`` are control bytes (below 0x20), counted by numpy."""
    np = numpy()
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) < 32))


_BLOCK = 1 << 20


def answer_blocks(data: bytes) -> Iterator[bytes]:
    """``data`` in pieces of about a megabyte cut at line ends, each with a newline in front and
    none at the end (the form ``ANSWER_LINES`` scans), so one scan's matches stay small. The
    newline that ends the file starts no empty line."""
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start + _BLOCK)
        if end < 0:
            end = size - 1 if data.endswith(b"\n") else size
        yield b"\n" + data[start:end]
        start = end + 1
