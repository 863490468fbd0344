"""Turning a downloaded batch result file into records.

Answers become ok records, permanent failures (``retry.classify`` says RECORD) error records;
failures that may succeed if sent again are handed back in ``CollectResult.again`` for
``batch.on_failure``. A result file can hold 50,000 lines and this is the batch path's hot spot
(``benchmarks/bench_batch.py``), so the common line, an answer in the documented shape for a
plain URL item, takes a fast path: recognised by one regex scan per megabyte
(``batch_results.ANSWER_LINES``), never decoded, its record spliced from the line's own bytes
and written with the rest of its block in one ``write()``. Every other line goes through the
full parser (``_Collector.line``), in file order; both give the same bytes
(``tests/engine/test_collect_lines.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from runner.core.batch_results import ANSWER_LINES, answer_blocks, fast_ok_record, line_failure
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder
from runner.core.records import error_record, now_iso, ok_record
from runner.core.resume import ResumeIndex
from runner.core.retry import NOT_ANSWERS, Verdict, classify
from runner.core.stats import JobStats
from runner.errors import ApiFailure
from runner.io.batch_files import sidecar_item
from runner.io.store import ResultWriter


@dataclass
class CollectResult:
    ok: int = 0
    failed: int = 0
    duplicates: int = 0
    unknown: int = 0
    skipped: int = 0
    again: list[tuple[str, Item, str, str]] = field(
        default_factory=list
    )  # cid, item, code, message


def collect_lines(
    data: bytes,
    ids: dict[str, str],
    seen: set[str],
    writer: ResultWriter,
    stats: JobStats,
    batch_id: str | None,
    result: CollectResult,
    done: ResumeIndex | None = None,
    builder: BodyBuilder | None = None,
    *,
    attempts: int = 1,
    latency_ms: int = 0,
    fast: bool = True,
) -> None:
    """Turn one downloaded result file into records; failures that may be resent go to ``again``.

    ``attempts`` is the number of batches the line was sent in (2 for a rebatched chunk) and
    ``latency_ms`` the time from the batch's submission to its collection. ``fast=False`` sends
    every line through the full parser (the reference the fast path is tested against).

    Records go through ``builder.finish_record`` (meta, structured output) like the realtime
    path's, skipped only when it would add nothing (no structured output, no meta).
    """
    c = _Collector(ids, seen, writer, stats, batch_id, result, done, builder, attempts, latency_ms)
    try:
        if fast and not c.always:
            _collect_fast(data, c)
        else:
            for raw in data.splitlines():
                if raw:
                    c.line(raw)
    finally:
        result.ok += c.ok
        stats.ok += c.ok
        stats.add_usage(
            {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}, "batch"
        )


def _collect_fast(data: bytes, c: _Collector) -> None:
    """The fast path over ``data``; lines it does not take go to ``c.line`` in their place."""
    ids_get = c.ids.get
    seen, done, result = c.seen, c.done, c.result
    tail = (
        b'","batch_id":'
        + orjson.dumps(c.batch_id)
        + b',"finished_at":'
        + orjson.dumps(c.now)
        + b"}\n"
    )
    via = b'","via":"batch","attempts":%d,"latency_ms":%d,"id":"' % (c.attempts, c.latency_ms)
    dumps = orjson.dumps
    for block in answer_blocks(data):
        try:
            block.decode()  # the spliced bytes must be UTF-8, as orjson would have checked
        except UnicodeDecodeError:
            for raw in block.splitlines():
                if raw:
                    c.line(raw)
            continue
        out = c.pending
        count = prompt = completion = 0
        lines: list[bytes] | None = None
        for i, (body_id, model, content, usage, p, r, cid_bytes, line) in enumerate(
            ANSWER_LINES.findall(block)
        ):
            if not cid_bytes:  # not the common answer shape: the full parser, in file order
                if line:
                    c.write_ok(count, prompt, completion)
                    count = prompt = completion = 0
                    for raw in line.splitlines():  # a lone "\r" ends a line too
                        if raw:
                            c.line(raw)
                continue
            cid = cid_bytes.decode()
            rest = ids_get(cid)
            if rest is None:
                result.unknown += 1
                continue
            tab = rest.find("\t")  # rest is "line_no TAB url [TAB extras]"
            url = rest[tab + 1 :]
            if "\t" in url or tab < 0:  # an item with extras (or a bad sidecar): the full parser
                c.write_ok(count, prompt, completion)
                count = prompt = completion = 0
                lines = lines or block.split(b"\n")  # match i is line i (after the leading "\n")
                c.line(lines[i + 1])
                continue
            if cid in seen:
                result.duplicates += 1
                continue
            seen.add(cid)
            if done is not None and done.is_done(key_hash(url)):
                result.skipped += 1
                continue
            out += (
                b'{"url":',
                dumps(url),
                b',"status":"ok","content":"',
                content,
                b'","finish_reason":"stop","usage":',
                usage,
                b',"model":"',
                model,
                via,
                body_id,
                tail,
            )
            count += 1
            prompt += int(p)
            completion += int(r)
        c.write_ok(count, prompt, completion)


@dataclass
class _Collector:
    """One downloaded file's context: the full parser of one line (``line``), the fast path's
    pending record bytes (``write_ok``) and the counts both add to."""

    ids: dict[str, str]
    seen: set[str]
    writer: ResultWriter
    stats: JobStats
    batch_id: str | None
    result: CollectResult
    done: ResumeIndex | None
    builder: BodyBuilder | None
    attempts: int
    latency_ms: int

    def __post_init__(self) -> None:
        batch_id, builder = self.batch_id, self.builder
        self.extra = {"batch_id": batch_id}
        self.finish = builder.finish_record if builder is not None else None
        self.always = builder is not None and builder.parses_output
        self.now = now_iso()  # one timestamp per downloaded file: written within a second or so
        self.ok = self.prompt_tokens = self.completion_tokens = 0
        self.pending: list[bytes] = []

    def write_ok(self, count: int = 0, prompt: int = 0, completion: int = 0) -> None:
        """Write the fast path's ``count`` pending records in one write, then count them."""
        if self.pending:
            self.writer.append_ok_lines(b"".join(self.pending), count)
            self.pending.clear()
        self.ok += count
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def line(self, raw: bytes) -> None:
        """One line through the full parser: decode, match, classify, record."""
        result = self.result
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            result.unknown += 1
            return
        if obj.__class__ is not dict:
            result.unknown += 1
            return
        cid: Any = obj.get("custom_id")  # JSON: checked with __class__ below
        rest = self.ids.get(cid) if cid.__class__ is str else None
        if rest is None:
            result.unknown += 1
            return
        if cid in self.seen:
            result.duplicates += 1
            return
        self.seen.add(cid)
        parts = rest.split("\t", 2)
        url = parts[1]
        item: Item | None
        if len(parts) == 3:
            item = sidecar_item(rest)
            key = item.key
        else:
            item = None
            key = url
        if self.done is not None and self.done.is_done(key_hash(key)):
            result.skipped += 1
            return
        response: Any = obj.get("response")
        body: Any = response.get("body") if response.__class__ is dict else None
        choices = (
            body.get("choices")
            if body.__class__ is dict and response.get("status_code") == 200
            else None
        )
        finish = self.finish
        if (
            choices
            and choices.__class__ is list
            and choices[0].__class__ is dict
            and choices[0].get("finish_reason") not in NOT_ANSWERS
        ):
            record = fast_ok_record(
                url, body, self.batch_id, key, self.now, self.attempts, self.latency_ms
            ) or ok_record(
                url,
                body,
                via="batch",
                attempts=self.attempts,
                latency_ms=self.latency_ms,
                key=key,
                extra=self.extra,
            )
            if finish is not None and (self.always or (item is not None and item.meta is not None)):
                record = finish(record, item or sidecar_item(rest))
            self.writer.append(record)
            self.ok += 1
            usage = body.get("usage")
            if usage.__class__ is dict:
                self.prompt_tokens += usage.get("prompt_tokens") or 0
                self.completion_tokens += usage.get("completion_tokens") or 0
            return
        failure = line_failure(obj) or ApiFailure(
            200, None, "batch result has no choices", kind="no_choices"
        )
        item = item or sidecar_item(rest)
        decision = classify(failure)
        if decision.verdict is Verdict.RECORD:
            record = error_record(
                url,
                decision.code,
                failure.message,
                retryable=False,
                via="batch",
                attempts=self.attempts,
                latency_ms=self.latency_ms,
                key=key,
                extra=self.extra,
            )
            self.writer.append(finish(record, item) if finish is not None else record)
            result.failed += 1
            self.stats.errors += 1
        else:
            result.again.append((cid, item, decision.code, failure.message))
