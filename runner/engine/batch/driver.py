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
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable
from typing import Any, assert_never

from runner.clock import SystemClock, sleep_or_stop
from runner.config.schema import Config, JobConfig
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
    left_behind,
    next_state,
    ready_at,
)
from runner.core.payloads import BodyBuilder
from runner.core.retry import Decision, Verdict, classify, stopped
from runner.engine.batch.lookup import find_batch, find_upload
from runner.engine.batch.steps import BatchDeps, Fallback, ResultSteps
from runner.errors import ApiFailure, ComeBackLater
from runner.io.batch_state import JobState, save_state, state_path
from runner.io.media import read_media

log = logging.getLogger(__name__)

MAX_CALL_ERRORS = 20
"""Failed control-plane calls in a row on one chunk before the run gives up (exit 75): with
backoff capped at ``retry.max_delay_s`` (60 s by default) that is a ~15-minute outage."""

__all__ = ["BatchDeps", "BatchDriver", "Fallback"]


class BatchDriver(ResultSteps):
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

    def _log_transition(self, old: ChunkState, new: ChunkState) -> None:
        """One event per change of state or remote status; submitted and completed besides."""
        job = self.job.name
        if type(new) is not type(old) or getattr(new, "status", None) != getattr(
            old, "status", None
        ):
            log.info("batch chunk", extra={"job": job, **describe(new), "was": type(old).__name__})
        if isinstance(new, Running) and not isinstance(old, Running):
            event = {"batch_id": new.batch_id, "lines": new.chunk.lines}
            log.info("batch submitted", extra={"job": job, **event})
        elif isinstance(new, Ended) and not isinstance(old, Ended):
            c = new.counts
            event = {"completed": c.completed, "failed": c.failed, "total": c.total}
            log.info(
                "batch completed",
                extra={"job": job, "batch_id": new.batch_id, "status": new.status, **event},
            )

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
            self._log_transition(old, new)
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
        except BaseException:
            await self._settle(failing=True)
            raise
        await self._settle(failing=False)

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

    async def _settle(self, *, failing: bool) -> None:
        """Leaving run(): a collect still running is awaited when the run stopped (the fallback
        ends within the grace period), cancelled when the run failed; finished ones count."""
        if not self._tasks:
            return
        tasks, self._tasks = self._tasks, {}
        for task in tasks.values():
            if failing:
                task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for i, task in sorted(tasks.items()):
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is None:
                with contextlib.suppress(ComeBackLater) if failing else contextlib.nullcontext():
                    self.advance(i, task.result())
            elif not failing:
                raise exc  # e.g. ApiStopped from the fallback: it ends the run

    def _why_waiting(self) -> str:
        """Beside ``left_behind`` when the run stops waiting: how far the running batches are,
        and why built chunks are no batches yet. Told only "2 chunks not submitted yet; run the
        same command again to submit the rest", a person ran it again at once and nothing was
        submitted: the queue has room only as running batches finish."""
        running = [c for c in self.state.chunks if isinstance(c, Running)]
        if not running:
            return ""
        total = sum(c.counts.total or c.chunk.lines for c in running)
        done = sum(c.counts.completed + c.counts.failed for c in running)
        why = f"; {done:,}/{total:,} lines of the running batch{'es' if len(running) > 1 else ''}"
        why += " done"
        waiting = sum(1 for c in self.state.chunks if isinstance(c, Built))
        if waiting:
            them = "the chunks wait" if waiting > 1 else "the chunk waits"
            why += (
                f", and {them} for queue room (batch.max_queued: {self.batch.max_queued:,}"
                " lines in running batches)"
            )
        return why

    async def _wait(self) -> None:
        clock = self.deps.clock
        now = clock.monotonic()
        busy = [t for t in self._tasks.values() if not t.done()]
        max_wait = self.batch.max_wait_s
        if self.deps.no_wait or (max_wait is not None and now - self.started >= max_wait):
            if busy:  # a fallback is sending: let it finish before giving up the wait
                await asyncio.wait(busy)
                return
            left = left_behind(self.state.chunks) or "batches not yet collected"
            running = [c for c in self.state.chunks if isinstance(c, (Creating, Running))]
            self.deps.stats.batches_running = len(running)  # for the summary on stdout
            then = "collect" if left.endswith("running") else "collect and submit the rest"
            left += self._why_waiting()
            if self.deps.no_wait:
                later = ComeBackLater(
                    f"{self.job.name}: {left}; run the same command again to {then}"
                )
            else:
                later = ComeBackLater(
                    f"{self.job.name}: batch.max_wait_s ({max_wait:g}s) reached with {left}; "
                    f"run the same command again to {then}"
                )
            later.asked = True
            raise later
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
                # a batch the API created, whether still running or already final (a create
                # answer can be terminal: validation failed, or a batch that ran at once)
                if isinstance(new, Running) or (isinstance(new, Ended) and new.batch_id):
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
                raise stopped(failure, decision) from failure
            errors = getattr(st, "errors", 0) + 1
            delay = self.config.retry.delay_s(
                errors, self.deps.rng, retry_after_s=failure.retry_after_s
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


async def _seen_file(aw: Awaitable[dict[str, Any]]) -> Observation:
    answer = await aw
    return FileSeen(str(answer["id"]))


async def _seen_batch(aw: Awaitable[dict[str, Any]]) -> Observation:
    return BatchSeen(BatchView.parse(await aw))
