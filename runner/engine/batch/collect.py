"""Turning a downloaded batch result file into records.

Answers become ok records, permanent failures (``retry.classify`` says RECORD) error records;
failures that may succeed if sent again are handed back in ``CollectResult.again`` for
``batch.on_failure``. One pass over the bytes with few attribute lookups: a result file can hold
50,000 lines and this loop is the batch path's hot spot (``benchmarks/bench_batch.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from runner.core.batch_results import fast_ok_record, line_failure
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
) -> None:
    """Turn one downloaded result file into records; failures that may be resent go to ``again``.

    ``attempts`` is the number of batches the line was sent in (2 for a rebatched chunk) and
    ``latency_ms`` the time from the batch's submission to its collection.

    Records go through ``builder.finish_record`` (meta, structured output) like the realtime
    path's, skipped only when it would add nothing (no structured output, no meta).
    """
    extra = {"batch_id": batch_id}
    finish = builder.finish_record if builder is not None else None
    always = finish is not None and getattr(builder, "_structured", None) is not None
    loads = orjson.loads
    append = writer.append
    now = now_iso()  # one timestamp per downloaded file: it is written within a second or so
    ok = prompt_tokens = completion_tokens = 0
    try:
        for raw in data.splitlines():
            if not raw:
                continue
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError:
                result.unknown += 1
                continue
            if obj.__class__ is not dict:
                result.unknown += 1
                continue
            cid: Any = obj.get("custom_id")  # JSON: checked with __class__ below
            rest = ids.get(cid) if cid.__class__ is str else None
            if rest is None:
                result.unknown += 1
                continue
            if cid in seen:
                result.duplicates += 1
                continue
            seen.add(cid)
            parts = rest.split("\t", 2)
            url = parts[1]
            item: Item | None
            if len(parts) == 3:
                item = sidecar_item(rest)
                key = item.key
            else:
                item = None
                key = url
            if done is not None and done.is_done(key_hash(key)):
                result.skipped += 1
                continue
            response: Any = obj.get("response")
            body: Any = response.get("body") if response.__class__ is dict else None
            choices = (
                body.get("choices")
                if body.__class__ is dict and response.get("status_code") == 200
                else None
            )
            if (
                choices
                and choices.__class__ is list
                and choices[0].__class__ is dict
                and choices[0].get("finish_reason") not in NOT_ANSWERS
            ):
                record = fast_ok_record(
                    url, body, batch_id, key, now, attempts, latency_ms
                ) or ok_record(
                    url,
                    body,
                    via="batch",
                    attempts=attempts,
                    latency_ms=latency_ms,
                    key=key,
                    extra=extra,
                )
                if finish is not None and (always or (item is not None and item.meta is not None)):
                    record = finish(record, item or sidecar_item(rest))
                append(record)
                ok += 1
                usage = body.get("usage")
                if usage.__class__ is dict:
                    prompt_tokens += usage.get("prompt_tokens") or 0
                    completion_tokens += usage.get("completion_tokens") or 0
                continue
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
                    attempts=attempts,
                    latency_ms=latency_ms,
                    key=key,
                    extra=extra,
                )
                append(finish(record, item) if finish is not None else record)
                result.failed += 1
                stats.errors += 1
            else:
                result.again.append((cid, item, decision.code, failure.message))
    finally:
        result.ok += ok
        stats.ok += ok
        stats.add_usage(
            {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}, "batch"
        )
