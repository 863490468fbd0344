"""Turning a downloaded batch result file into records.

Answers become ok records, permanent failures (``retry.classify`` says RECORD) error records;
failures that may succeed if sent again are handed back in ``CollectResult.again`` for
``batch.on_failure``. A result file can hold 50,000 lines and this is the batch path's hot spot
(``benchmarks/bench_batch.py``), so the common line, an answer in the documented shape for a
plain URL item, takes a fast path and is never decoded: a block of about a megabyte is read by
one cheap scan checked a column at a time (``batch_results.answer_columns``), or when a check
fails by the stricter ``ANSWER_LINES``, a row per line either way; each run of answers between
other lines claims its custom_ids in the sidecar in bulk (as bytes), and their records are
spliced from the lines' own bytes and written in one ``write()``. Every other line goes through
the full parser (``_Collector.line``), in file order; both give the same bytes
(``tests/engine/test_collect_lines.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson

from runner.bulk import paused_gc
from runner.core.batch_results import (
    ANSWER_LINES,
    answer_blocks,
    answer_columns,
    fast_ok_record,
    line_failure,
)
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder
from runner.core.records import error_record, now_iso, ok_record
from runner.core.resume import ResumeIndex
from runner.core.retry import NOT_ANSWERS, Verdict, classify
from runner.core.stats import JobStats
from runner.errors import ApiFailure
from runner.io.batch_files import Sidecar, sidecar_item
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
    ids: Sidecar,
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

    ``ids`` is the chunk's sidecar: each result claims its id there, so a second result for an
    id (in this file or in the batch's other file) is a duplicate. ``attempts`` is the number of
    batches the line was sent in (2 for a rebatched chunk) and ``latency_ms`` the time from the
    batch's submission to its collection. ``fast=False`` sends every line through the full
    parser (the reference the fast path is tested against), as do a ``done`` index (a collect
    resumed after a crash: each key is looked up) and a builder that parses the output.

    Records go through ``builder.finish_record`` (meta, structured output) like the realtime
    path's, skipped only when it would add nothing (no structured output, no meta).
    """
    c = _Collector(ids, writer, stats, batch_id, result, done, builder, attempts, latency_ms)
    try:
        with paused_gc():
            if fast and not c.always and done is None:
                _collect_fast(data, c)
            else:
                c.lines(data)
    finally:
        result.ok += c.ok
        stats.ok += c.ok
        stats.add_usage(
            {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}, "batch"
        )


def _collect_fast(data: bytes, c: _Collector) -> None:
    """The fast path over ``data``; lines it does not take go to ``c.line`` in their place.

    Per block, one ``findall`` gives a row per line; the rows are turned into columns, and each
    run of answer-shaped lines between other lines is taken in bulk (``_Collector.answers``).
    """
    for block in answer_blocks(data):
        if not block.isascii():
            try:
                block.decode()  # the spliced bytes must be UTF-8, as orjson would have checked
            except UnicodeDecodeError:
                c.lines(block)
                continue
        columns = answer_columns(block) or list(zip(*ANSWER_LINES.findall(block), strict=True))
        if not columns:
            continue
        cids, others = columns[6], columns[7]
        n = len(cids)
        # b"": a line not in the answer shape (or a blank one)
        for start, stop in _runs(cids, b""):
            if stop > start:
                run = columns if stop - start == n else [col[start:stop] for col in columns]
                c.answers(run, block, start)
            if stop < n:
                c.lines(others[stop])


def _runs(values: Sequence[object], gap: object) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each stretch of ``values`` before a ``gap`` entry (at ``stop``,
    unless ``stop`` is the end): the runs the fast path takes in bulk and the lines between."""
    start, n = 0, len(values)
    while start < n:
        try:
            stop = values.index(gap, start)
        except ValueError:
            stop = n
        yield start, stop
        start = stop + 1


@dataclass
class _Collector:
    """One downloaded file's context: the full parser of one line (``line``), the fast path's
    runs of answers (``answers``) and the counts both add to."""

    ids: Sidecar
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
        # an ok record as ``records.dumps`` writes it, its pieces from the line left as None:
        # url, content, usage, model, id
        via = b'","via":"batch","attempts":%d,"latency_ms":%d,"id":"' % (
            self.attempts,
            self.latency_ms,
        )
        tail = b'","batch_id":%b,"finished_at":%b}\n' % (
            orjson.dumps(batch_id),
            orjson.dumps(self.now),
        )
        self.record: list[bytes | None] = [
            b'{"url":"',
            None,
            b'","status":"ok","content":"',
            None,
            b'","finish_reason":"stop","usage":',
            None,
            b',"model":"',
            None,
            via,
            None,
            tail,
        ]
        self._split: tuple[bytes, list[bytes]] | None = None  # a block cut into lines, when needed

    def answers(self, columns: list[tuple[bytes, ...]], block: bytes, first: int) -> None:
        """A run of answer-shaped lines (the first seven ``ANSWER_LINES`` columns; ``first`` is
        the run's first line in ``block``): each claims its id; those whose id is a pending fast
        one are written in one ``write()``, the others (unknown ids, items with extras,
        duplicates) go through the full parser, in their place."""
        urls: list[bytes | None] = list(map(self.ids.pending.pop, columns[6], repeat(None)))
        if None not in urls:
            self._write(urls, columns)
            return
        if self._split is None or self._split[0] is not block:
            self._split = (block, block.split(b"\n"))
        lines = self._split[1]  # answer i of the run is line first + i (after the first "\n")
        for start, stop in _runs(urls, None):
            if stop > start:
                self._write(urls[start:stop], [column[start:stop] for column in columns])
            if stop < len(urls):
                self.line(lines[first + stop + 1])

    def _write(self, urls: list[bytes | None], columns: list[tuple[bytes, ...]]) -> None:
        """Ok records for a run of fast answers (no None among ``urls``), in one ``write()``."""
        body_ids, models, contents, usages, prompts, completions = columns[:6]
        count = len(urls)
        out = self.record * count
        out[1::11], out[3::11], out[5::11] = urls, contents, usages
        out[7::11], out[9::11] = models, body_ids
        self.writer.append_ok_lines(b"".join(out), count)  # type: ignore[arg-type]  # no None left
        self.ok += count
        self.prompt_tokens += sum(map(int, prompts))
        self.completion_tokens += sum(map(int, completions))

    def lines(self, data: bytes) -> None:
        """Every line of ``data`` through the full parser (a lone carriage return ends one too)."""
        for raw in data.splitlines():
            if raw:
                self.line(raw)

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
        rest = self.ids.rest(cid) if cid.__class__ is str else None
        if rest is None:
            result.unknown += 1
            return
        if not self.ids.claim(cid):
            result.duplicates += 1
            return
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
