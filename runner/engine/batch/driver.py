"""The batch driver: steps each chunk of one job through its states, one API call per step.

The driver matches on a chunk's state, makes one call (or one local step), feeds the answer to
the pure ``next_state`` and saves the job's state file. ``Uploading`` and ``Creating`` are saved
*before* the call that creates remote state, so a crash right after it is recovered by looking
the file or batch up (``checked=False``) instead of uploading or creating a second time.
``Collecting`` is saved before results are appended; a crash in the middle re-collects and
skips keys the output already has.

Per-line failures are data: permanent ones become error records; the rest, and custom_ids in
neither result file, follow ``batch.on_failure`` (rebatch, the realtime fallback, or records).
Lines are sent again only when the API has confirmed that they will not run (see
``core.batch_states``): a failed control-plane call is retried with backoff, and after
``MAX_CALL_ERRORS`` failures in a row on one chunk the run ends with exit 75 (ComeBackLater),
the chunk still tracked. The realtime fallback runs as a task, so other chunks keep being
polled meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, assert_never

from runner.api.protocol import BatchClient
from runner.clock import Clock, SystemClock, sleep_or_stop
from runner.config.schema import BatchConfig, Config, JobConfig
from runner.core.batch_names import batch_metadata, upload_name
from runner.core.batch_states import (
    IN_FLIGHT,
    BatchSeen,
    BatchView,
    Begin,
    Built,
    CallFailed,
    Chunk,
    ChunkState,
    Cleaned,
    CollectDone,
    Collected,
    Collecting,
    Creating,
    Ended,
    FileSeen,
    Observation,
    Running,
    Uploaded,
    Uploading,
    chunk_of,
    describe,
    is_done,
    next_state,
    ready_at,
)
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder, MediaUnavailable
from runner.core.records import LOCAL_FILE, error_record
from runner.core.retry import Decision, Verdict, backoff_s, classify
from runner.core.stats import JobStats
from runner.engine.batch.collect import CollectResult, collect_lines
from runner.engine.batch.lookup import find_batch, find_upload
from runner.errors import ApiFailure, ApiStopped, ComeBackLater
from runner.io.batch_files import ChunkFile, build_chunks, read_sidecar, sidecar_item
from runner.io.batch_state import JobState, save_state, state_path
from runner.io.media import read_media
from runner.io.store import ResultWriter, load_resume_index

log = logging.getLogger(__name__)

MAX_CALL_ERRORS = 20
"""Failed control-plane calls in a row on one chunk before the run gives up (exit 75): with
backoff capped at ``retry.max_delay_s`` (60 s by default) that is a ~15-minute outage."""

Fallback = Callable[[list[tuple[int, Item]]], Awaitable[None]]
"""Sends (key hash, item) pairs another way; ``batch.on_failure: realtime`` uses one."""


@dataclass
class BatchDeps:
    client: BatchClient
    writer: ResultWriter
    stats: JobStats
    stop: asyncio.Event
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    no_wait: bool = False
    fallback: Fallback | None = None  # the realtime path for on_failure


class BatchDriver:
    """Drives every chunk of one job to Collected, one API call per step."""

    def __init__(self, job: JobConfig, config: Config, state: JobState, deps: BatchDeps):
        self.job = job
        self.config = config
        self.batch = config.batch
        self.state = state
        self.deps = deps
        self.path = state_path(job)
        self.work_dir = job.work_dir
        self.chash = state.config_hash
        self.builder = BodyBuilder(job, read_media)
        self.started = deps.clock.monotonic()
        self._last_progress = self.started
        self._tasks: dict[int, asyncio.Task[Observation]] = {}  # collects with a fallback
        self._fallback_lock = asyncio.Lock()  # one fallback engine at a time (limits hold)

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for c in self.state.chunks:
            kinds[type(c).__name__] = kinds.get(type(c).__name__, 0) + 1
        return f"<BatchDriver {self.job.name} {kinds}>"

    def save(self) -> None:
        save_state(self.path, self.state)

    def advance(self, i: int, obs: Observation) -> ChunkState:
        old = self.state.chunks[i]
        new = next_state(
            old, obs, self.deps.clock.monotonic(), poll_interval_s=self.batch.poll_interval_s
        )
        if isinstance(new, Running) and not new.submitted_at:
            new = dataclasses.replace(new, submitted_at=self.deps.clock.time())
        if new != old:
            self.state.chunks[i] = new
            self.save()
            if type(new) is not type(old) or getattr(new, "status", None) != getattr(
                old, "status", None
            ):
                log.info(
                    "batch chunk",
                    extra={"job": self.job.name, **describe(new), "was": type(old).__name__},
                )
            if isinstance(new, Running) and not isinstance(old, Running):
                log.info(
                    "batch submitted",
                    extra={
                        "job": self.job.name,
                        "batch_id": new.batch_id,
                        "lines": new.chunk.lines,
                    },
                )
            elif isinstance(new, Ended) and not isinstance(old, Ended):
                log.info(
                    "batch completed",
                    extra={
                        "job": self.job.name,
                        "batch_id": new.batch_id,
                        "status": new.status,
                        "completed": new.counts.completed,
                        "failed": new.counts.failed,
                        "total": new.counts.total,
                    },
                )
        errors = getattr(new, "errors", 0)
        if isinstance(obs, CallFailed) and errors >= MAX_CALL_ERRORS:
            raise ComeBackLater(
                f"{self.job.name}: chunk {chunk_of(new).index} ({type(new).__name__}"
                f"{' ' + new.batch_id if isinstance(new, Running) else ''}): {errors} API "
                f"calls in a row failed ({obs.message[:120]}); its state cannot be established, "
                "it stays tracked: run the same command again later"
            )
        return new

    def in_flight_lines(self) -> int:
        return sum(chunk_of(c).lines for c in self.state.chunks if isinstance(c, IN_FLIGHT))

    def has_room(self, chunk: Chunk) -> bool:
        used = self.in_flight_lines()
        return used == 0 or used + chunk.lines <= self.batch.max_queued

    async def run(self) -> None:
        """Step every ready chunk until all are collected.

        Raises ComeBackLater when waiting is not allowed (``--no-wait``, ``batch.max_wait_s``).
        A collect whose lines go to the realtime fallback runs as a task meanwhile.
        """
        try:
            await self._run()
        finally:
            await self._settle()

    async def _run(self) -> None:
        clock = self.deps.clock
        stop = self.deps.stop
        delete = self.batch.delete_remote_files
        while not stop.is_set():
            moved = False
            for i in range(len(self.state.chunks)):
                st = self.state.chunks[i]
                task = self._tasks.get(i)
                if task is not None:
                    if task.done():
                        del self._tasks[i]
                        self.advance(i, task.result())
                        moved = True
                    continue
                if is_done(st, delete) or ready_at(st) > clock.monotonic():
                    continue
                if isinstance(st, Built) and not self.has_room(st.chunk):
                    continue
                if isinstance(st, Collecting) and self._fallback_runs_aside():
                    self._tasks[i] = asyncio.create_task(self._collect(i, st))
                    continue
                new = await self.step(i)
                if type(new) is not type(st) or (
                    new != st
                    and not isinstance(new, Running)
                    and ready_at(new) <= clock.monotonic()
                ):
                    moved = True
                if stop.is_set():
                    return
            self._progress()
            if not self._tasks and all(is_done(c, delete) for c in self.state.chunks):
                return
            if moved:
                continue
            await self._wait()

    def _fallback_runs_aside(self) -> bool:
        return self.batch.on_failure == "realtime" and self.deps.fallback is not None

    async def _settle(self) -> None:
        """Leaving run(): a collect still running is awaited when the run stopped (the fallback
        ends within the grace period), cancelled when the run failed; finished ones count."""
        if not self._tasks:
            return
        failing = sys.exc_info()[0] is not None
        for task in self._tasks.values():
            if failing:
                task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for i, task in sorted(self._tasks.items()):
            if not task.cancelled() and task.exception() is None:
                self.advance(i, task.result())
        self._tasks.clear()

    async def _wait(self) -> None:
        clock = self.deps.clock
        now = clock.monotonic()
        waiting = self.waiting()
        busy = [t for t in self._tasks.values() if not t.done()]
        max_wait = self.batch.max_wait_s
        if self.deps.no_wait or (max_wait is not None and now - self.started >= max_wait):
            if busy:  # a fallback is sending: let it finish before giving up the wait
                await asyncio.wait(busy)
                return
            if self.deps.no_wait:
                raise ComeBackLater(
                    f"{self.job.name}: {waiting} batch(es) still running; "
                    "run the same command again to collect"
                )
            raise ComeBackLater(
                f"{self.job.name}: batch.max_wait_s ({max_wait:g}s) reached with {waiting} "
                "batch(es) still running; run the same command again to collect"
            )
        pending = [
            ready_at(c)
            for i, c in enumerate(self.state.chunks)
            if not is_done(c, self.batch.delete_remote_files)
            and not isinstance(c, Built)  # Built waits for room
            and i not in self._tasks
        ]
        if busy and not pending:
            await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
            return
        delay = max(0.0, min(pending, default=now + self.batch.poll_interval_s) - now)
        if max_wait is not None:
            delay = min(delay, max(0.0, self.started + max_wait - now))
        if not busy:
            await self._sleep(delay)
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        await asyncio.wait([sleeper, *busy], return_when=asyncio.FIRST_COMPLETED)
        if not sleeper.done():
            sleeper.cancel()
            await asyncio.gather(sleeper, return_exceptions=True)

    async def _sleep(self, delay: float) -> None:
        if not isinstance(self.deps.clock, SystemClock):
            await self.deps.clock.sleep(delay)  # a fake clock: time moves, nothing waits
            return
        await sleep_or_stop(delay, self.deps.stop, self.deps.clock)

    def waiting(self) -> int:
        return sum(1 for c in self.state.chunks if isinstance(c, IN_FLIGHT + (Built,)))

    def _progress(self) -> None:
        now = self.deps.clock.monotonic()
        if now - self._last_progress < self.config.run.progress_interval_s:
            return
        self._last_progress = now
        running = [c for c in self.state.chunks if isinstance(c, Running)]
        log.info(
            "batch progress",
            extra={
                "job": self.job.name,
                "running": len(running),
                "completed": sum(c.counts.completed for c in running),
                "failed": sum(c.counts.failed for c in running),
                "total": sum(c.counts.total for c in running),
                "queued_chunks": sum(1 for c in self.state.chunks if isinstance(c, Built)),
                "collected_chunks": sum(1 for c in self.state.chunks if isinstance(c, Collected)),
            },
        )

    async def step(self, i: int) -> ChunkState:
        st = self.state.chunks[i]
        client = self.deps.client
        match st:
            case Built():
                return self.advance(i, Begin())
            case Uploading(checked=False):
                return self.advance(i, await self._call(self._find_upload(st), st))
            case Uploading():
                content = (self.work_dir / st.chunk.file).read_bytes()
                name = upload_name(self.job, self.state.tag, st.chunk)
                obs = await self._call(_seen_file(client.upload_file(name, content, "batch")), st)
                return self.advance(i, obs)
            case Uploaded():
                return self.advance(i, Begin())
            case Creating(checked=False):
                return self.advance(i, await self._call(self._find_batch(st), st))
            case Creating():
                body = {
                    "input_file_id": st.file_id,
                    "endpoint": self.batch.endpoint,
                    "completion_window": self.batch.completion_window,
                    "auto_delete_input_file": False,
                    "metadata": batch_metadata(self.job, self.state.tag, self.chash, st.chunk),
                }
                new = self.advance(i, await self._call(_seen_batch(client.create_batch(body)), st))
                if isinstance(new, Running):
                    self.deps.stats.batches_submitted += 1
                return new
            case Running(checked=False):  # a poll answered 404: is it really gone?
                return self.advance(i, await self._call(self._confirm_batch(st), st))
            case Running():
                return self.advance(
                    i, await self._call(_seen_batch(client.get_batch(st.batch_id)), st)
                )
            case Ended():
                return self.advance(i, Begin())
            case Collecting():
                return self.advance(i, await self._collect(i, st))
            case Collected():
                await self._cleanup(st)
                return self.advance(i, Cleaned())
            case _:
                assert_never(st)

    async def _call(self, aw: Awaitable[Observation], st: ChunkState | None = None) -> Observation:
        """Await one API call; failures become CallFailed (with backoff), STOP ends the run."""
        try:
            return await aw
        except ApiFailure as failure:
            decision = classify(failure)
            if decision.verdict is Verdict.STOP and failure.status != 404:
                raise ApiStopped(
                    f"the API refused the run (code {decision.code}: {decision.reason}); "
                    f"{failure.message}",
                    code=decision.code,
                    status=failure.status,
                ) from failure
            errors = getattr(st, "errors", 0) + 1
            delay = backoff_s(
                errors,
                base_s=self.config.retry.base_delay_s,
                cap_s=self.config.retry.max_delay_s,
                rng=self.deps.rng,
                retry_after_s=failure.retry_after_s,
            )
            gone = failure.status == 404
            if gone:
                decision = Decision(Verdict.RECORD, "http_404", "not found")
            log.warning(
                "batch call failed",
                extra={
                    "job": self.job.name,
                    "code": decision.code,
                    "error": failure.message[:200],
                    "retry_in_s": round(delay, 2),
                },
            )
            return CallFailed(decision, failure.message, delay, gone)

    def _find_upload(self, st: Uploading) -> Awaitable[Observation]:
        name = upload_name(self.job, self.state.tag, st.chunk)
        return find_upload(self.deps.client, name, self.job.name)

    def _find_batch(self, st: Creating) -> Awaitable[Observation]:
        meta = batch_metadata(self.job, self.state.tag, self.chash, st.chunk)
        return find_batch(self.deps.client, st.file_id, meta, self.job.name)

    def _confirm_batch(self, st: Running) -> Awaitable[Observation]:
        meta = batch_metadata(self.job, self.state.tag, self.chash, st.chunk)
        return find_batch(self.deps.client, None, meta, self.job.name, batch_id=st.batch_id)

    async def _collect(self, i: int, st: Collecting) -> Observation:
        e = st.ended
        deps = self.deps
        ids_path = self.work_dir / e.chunk.ids
        ids = read_sidecar(ids_path) if ids_path.exists() else {}
        done = None if st.fresh else load_resume_index(self.job.output_path)
        result = CollectResult()
        seen: set[str] = set()
        for fid in (e.output_file_id, e.error_file_id):
            if fid is None:
                continue
            try:
                data = await deps.client.file_content(fid)
            except ApiFailure as failure:
                if failure.status == 404:
                    log.warning("result file is gone", extra={"job": self.job.name, "file_id": fid})
                    continue
                return await self._call(_raise(failure), st)
            collect_lines(
                data,
                ids,
                seen,
                deps.writer,
                deps.stats,
                e.batch_id,
                result,
                done,
                self.builder,
                attempts=1 if e.chunk.rebatch_of is None else 2,
                latency_ms=self._latency_ms(e),
            )
        if result.duplicates or result.unknown:
            log.info(
                "batch result oddities",
                extra={
                    "job": self.job.name,
                    "batch_id": e.batch_id,
                    "duplicates": result.duplicates,
                    "unknown": result.unknown,
                },
            )
        again = result.again
        for cid, rest in ids.items():
            if cid not in seen:
                item = sidecar_item(rest)
                if done is not None and done.is_done(key_hash(item.key)):
                    continue
                again.append(
                    (
                        cid,
                        item,
                        "batch_missing",
                        f"no result in batch {e.batch_id} (status {e.status}) {e.reason}".strip(),
                    )
                )
        resent, left = await self._on_failure(e, again, result)
        deps.writer.fsync()
        for name in (e.chunk.file, e.chunk.ids):
            (self.work_dir / name).unlink(missing_ok=True)
        log.info(
            "batch collected",
            extra={
                "job": self.job.name,
                "batch_id": e.batch_id,
                "status": e.status,
                "ok": result.ok,
                "failed": result.failed,
                "resent": resent,
                "left": left,
            },
        )
        return CollectDone(result.ok, result.failed, resent, left)

    def _latency_ms(self, e: Ended) -> int:
        """From the batch's submission to its collection (0 when the state predates it)."""
        if not e.submitted_at:
            return 0
        return max(0, round((self.deps.clock.time() - e.submitted_at) * 1000))

    async def _on_failure(
        self, e: Ended, again: list[tuple[str, Item, str, str]], result: CollectResult
    ) -> tuple[int, int]:
        """Apply batch.on_failure to lines that may be resent; returns (resent, left pending)."""
        if not again:
            return 0, 0
        if e.cancel_requested:
            self.deps.stats.left_pending += len(again)
            return 0, len(again)  # the user cancelled: a later run sends them again
        mode = self.batch.on_failure
        log.warning(
            "batch lines did not run",
            extra={
                "job": self.job.name,
                "batch_id": e.batch_id,
                "status": e.status,
                "lines": len(again),
                "on_failure": mode,
                "reason": e.reason or f"no result in the {e.status} batch",
            },
        )
        if mode == "rebatch" and e.chunk.rebatch_of is None:
            self.add_chunks(
                ((key_hash(item.key), item) for _, item, _, _ in again), rebatch_of=e.chunk.index
            )
            return len(again), 0
        if mode == "realtime" and self.deps.fallback is not None:
            async with self._fallback_lock:
                await self.deps.fallback([(key_hash(item.key), item) for _, item, _, _ in again])
            return len(again), 0
        extra = {"batch_id": e.batch_id}
        for _, item, code, message in again:
            record = error_record(
                item.url,
                code,
                message,
                retryable=True,
                via="batch",
                attempts=1 if e.chunk.rebatch_of is None else 2,
                key=item.key,
                extra=extra,
            )
            self.deps.writer.append(self.builder.finish_record(record, item))
            self.deps.stats.errors += 1
        return 0, 0

    def add_chunks(
        self, items: Iterable[tuple[int, Item]], rebatch_of: int | None = None
    ) -> list[Chunk]:
        first = 1 + max((chunk_of(c).index for c in self.state.chunks), default=-1)
        built = _build(items, self.job, self.batch, first, rebatch_of, self._unavailable)
        self.state.chunks.extend(Built(c) for c in built)
        return built

    def _unavailable(self, item: Item, exc: MediaUnavailable) -> None:
        """A local file vanished or changed since the plan: an error record, retried next run."""
        self.deps.writer.append(
            error_record(item.url, LOCAL_FILE, str(exc), retryable=True, via="batch", key=item.key)
        )
        self.deps.stats.errors += 1

    async def _cleanup(self, st: Collected) -> None:
        e = st.ended
        for fid in (e.file_id, e.output_file_id, e.error_file_id):
            if fid is None:
                continue
            try:
                await self.deps.client.delete_file(fid)
            except ApiFailure as failure:
                log.warning(
                    "could not delete a remote file",
                    extra={"job": self.job.name, "file_id": fid, "error": failure.message[:200]},
                )


async def _raise(failure: ApiFailure) -> Observation:
    raise failure


async def _seen_file(aw: Awaitable[dict[str, Any]]) -> Observation:
    answer = await aw
    return FileSeen(str(answer["id"]))


async def _seen_batch(aw: Awaitable[dict[str, Any]]) -> Observation:
    return BatchSeen(BatchView.parse(await aw))


def _build(
    items: Iterable[tuple[int, Item]],
    job: JobConfig,
    batch: BatchConfig,
    first: int,
    rebatch_of: int | None = None,
    on_unavailable: Callable[[Item, MediaUnavailable], None] | None = None,
) -> list[Chunk]:
    files: list[ChunkFile] = list(
        build_chunks(
            items,
            job.work_dir,
            BodyBuilder(job, read_media),
            endpoint=batch.endpoint,
            max_lines=min(batch.max_requests_per_file, batch.max_queued),
            max_bytes=batch.max_bytes_per_file,
            first_index=first,
            on_unavailable=on_unavailable,
        )
    )
    return [Chunk(f.index, f.file, f.ids, f.lines, f.bytes, rebatch_of) for f in files]
