"""The realtime engine: a pipeline, not rounds.

One feeder reads pending items into a bounded queue; N workers each take the next item as
soon as they are free (a slow request never holds up the others); every record goes through
the job's single ``ResultWriter``. Memory is bounded by the queue, requests in flight by the
throttle. A fatal answer (auth, arrears, quota) or a stop signal stops the feeder; requests
already in flight finish and are written, then the engine returns or raises.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.api.protocol import ChatClient
from runner.clock import SYSTEM_CLOCK, Clock, sleep_or_stop
from runner.config.schema import JobConfig, RetryConfig
from runner.core.items import InvalidLine, Item
from runner.core.payloads import BodyBuilder, MediaUnavailable, new_run_id, request_id
from runner.core.records import LOCAL_FILE, error_record, invalid_input_record, ok_record
from runner.core.retry import Decision, Verdict, classify, stopped
from runner.core.stats import JobStats
from runner.engine.throttle import Throttle
from runner.errors import ApiFailure, ApiStopped
from runner.io.media import load_media, read_media
from runner.io.store import ResultWriter

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class RealtimeDeps:
    """What the realtime engine works with: client, writer, throttle, retry settings, counts, the
    stop event, and (injected by tests) sleep and randomness."""

    client: ChatClient
    writer: ResultWriter
    throttle: Throttle
    retry: RetryConfig
    stats: JobStats
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sleep: Sleep | None = None  # injected in tests; default sleeps but wakes on stop
    rng: random.Random = field(default_factory=random.Random)
    flush_interval_s: float = 0.5
    workers: int | None = None  # default: the throttle's limit
    on_result: Callable[[str, float], None] | None = None  # (verdict, latency_s) for controllers
    on_finish: Callable[[], None] | None = None  # the run is over (the adaptive gate's timer)
    clock: Clock = SYSTEM_CLOCK


class RealtimeEngine:
    def __init__(self, job: JobConfig, deps: RealtimeDeps):
        self.job = job
        self.deps = deps
        self.builder = BodyBuilder(job, read_media)
        self.run_id = new_run_id()
        self.fatal: ApiStopped | None = None
        self.recorded = 0  # items this engine wrote a record for (the rest were never finished)

    async def run(self, items: Iterable[tuple[int, Item | InvalidLine]]) -> JobStats:
        deps = self.deps
        n_workers = deps.workers or deps.throttle.limit
        queue: asyncio.Queue[tuple[int, Item] | None] = asyncio.Queue(maxsize=2 * n_workers)
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(items, queue, n_workers))
                for _ in range(n_workers):
                    tg.create_task(self._work(queue))
        finally:
            flusher.cancel()
            try:
                await flusher
            except asyncio.CancelledError:
                pass
            deps.writer.flush()
            if deps.on_finish is not None:
                deps.on_finish()
        if self.fatal is not None:
            raise self.fatal
        return deps.stats

    async def _feed(
        self,
        items: Iterable[tuple[int, Item | InvalidLine]],
        queue: asyncio.Queue[Any],
        n_workers: int,
    ) -> None:
        stop = self.deps.stop
        writer = self.deps.writer
        stats = self.deps.stats
        for h, item in items:
            if stop.is_set():
                break
            if isinstance(item, InvalidLine):
                writer.append(invalid_input_record(item))
                self.recorded += 1
                stats.errors += 1
                stats.invalid += 1
                continue
            await queue.put((h, item))
        # Not in a finally: when the group is cancelled nobody drains the queue, and a put
        # on a full queue would block the cancellation forever.
        for _ in range(n_workers):
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue[tuple[int, Item] | None]) -> None:
        stop = self.deps.stop
        while True:
            entry = await queue.get()
            if entry is None:
                return
            if stop.is_set():
                continue  # drain without starting new work
            await self._process(*entry)

    async def _process(self, h: int, item: Item) -> None:
        deps = self.deps
        stats = deps.stats
        throttle = deps.throttle
        client = deps.client
        max_attempts = deps.retry.max_attempts
        url = item.url
        started = self.deps.clock.monotonic()
        attempt = 0
        media = None
        refs = self.builder.item_refs(item)
        if refs:  # local files: read off the event loop, once for every attempt
            try:
                media = await load_media(refs)
            except MediaUnavailable as exc:
                self._record_unavailable(item, exc, 0, started)
                return
        while True:
            attempt += 1
            try:
                body = self.builder.render(item, request_id(h, self.run_id, attempt), media)
            except MediaUnavailable as exc:
                self._record_unavailable(item, exc, attempt - 1, started)
                return
            charged = await throttle.charge_tokens() if throttle.tokens is not None else 0.0
            async with throttle:
                if (
                    deps.stop.is_set()
                ):  # stopped while this one waited for a slot: start nothing new
                    if throttle.tokens is not None:
                        throttle.settle_tokens(charged, None)
                    return
                stats.requests += 1
                stats.in_flight += 1
                t0 = self.deps.clock.monotonic()
                try:
                    response = await client.chat(body)
                    failure = None
                except ApiFailure as exc:
                    failure = exc
                finally:
                    stats.in_flight -= 1
                latency = self.deps.clock.monotonic() - t0
                decision = None if failure is None else classify(failure)
                if deps.on_result is not None:
                    # before the slot is released: a cut must land before a waiter takes the slot
                    deps.on_result("ok" if decision is None else decision.verdict.value, latency)
            if throttle.tokens is not None:
                throttle.settle_tokens(charged, response.get("usage") if failure is None else None)
            if failure is None:
                record = ok_record(
                    url,
                    response,
                    via="realtime",
                    attempts=attempt,
                    latency_ms=int((self.deps.clock.monotonic() - started) * 1000),
                    key=item.key,
                )
                deps.writer.append(self.builder.finish_record(record, item))
                self.recorded += 1
                stats.ok += 1
                stats.add_usage(response.get("usage"), "realtime")
                return
            assert decision is not None
            if decision.verdict is Verdict.STOP:
                self._stop_run(failure, decision)
                return
            if decision.verdict is Verdict.RECORD or attempt >= max_attempts:
                deps.writer.append(
                    self.builder.finish_record(
                        error_record(
                            url,
                            decision.code,
                            failure.message,
                            retryable=decision.retryable,
                            via="realtime",
                            attempts=attempt,
                            latency_ms=int((self.deps.clock.monotonic() - started) * 1000),
                            key=item.key,
                        ),
                        item,
                    )
                )
                self.recorded += 1
                stats.errors += 1
                return
            if decision.verdict is Verdict.THROTTLE:
                stats.throttled += 1
            stats.retries += 1
            delay = deps.retry.delay_s(
                attempt,
                deps.rng,
                retry_after_s=failure.retry_after_s,
                throttled=decision.verdict is Verdict.THROTTLE,
            )
            log.debug(
                "retry",
                extra={
                    "url": url,
                    "attempt": attempt,
                    "code": decision.code,
                    "delay_s": round(delay, 3),
                },
            )
            await self._sleep(delay)
            if deps.stop.is_set():
                return  # no record: the next run tries this URL again

    def _record_unavailable(
        self, item: Item, exc: MediaUnavailable, attempts: int, started: float
    ) -> None:
        """A local file vanished or changed since the plan: an error record (retried next
        run), not a crash."""
        self.deps.writer.append(
            error_record(
                item.url,
                LOCAL_FILE,
                str(exc),
                retryable=True,
                via="realtime",
                attempts=attempts,
                latency_ms=int((self.deps.clock.monotonic() - started) * 1000),
                key=item.key,
            )
        )
        self.recorded += 1
        self.deps.stats.errors += 1

    async def _sleep(self, delay: float) -> None:
        if self.deps.sleep is not None:
            await self.deps.sleep(delay)
            return
        await sleep_or_stop(delay, self.deps.stop, self.deps.clock)

    def _stop_run(self, failure: ApiFailure, decision: Decision) -> None:
        if self.fatal is None:
            self.fatal = stopped(failure, decision)
            # an event for machine logs: the CLI prints the one error line a person sees
            log.info("api stopped the run", extra={"job": self.job.name, "code": decision.code})
        self.deps.stop.set()

    async def _flush_periodically(self) -> None:
        writer = self.deps.writer
        interval = self.deps.flush_interval_s
        while True:
            await asyncio.sleep(interval)  # real time: flushing guards against a real crash
            writer.flush()
