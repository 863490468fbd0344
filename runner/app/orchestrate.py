"""Wires the real pieces for one ``glmrun run``: lock, resume index, plan, engine, summary.

This is the only place that builds a client, a simulator, writers and throttles; engines get
them as arguments. Signals are handled here: the first SIGINT/SIGTERM stops new work and
gives requests in flight ``run.grace_s`` to finish; a second one flushes and exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from runner.api.glm import GlmClient
from runner.api.preflight import check_reachable
from runner.app.progress import Progress, format_summary
from runner.config.schema import Config, JobConfig
from runner.core.adaptive import AdaptiveLimit
from runner.core.cost import estimate, format_estimate, format_usage
from runner.core.plan import (
    JobPlan,
    PendingCounts,
    choose_route,
    count_pending,
    done_line_filter,
    iter_pending,
    make_plan,
)
from runner.core.stats import JobStats
from runner.engine.realtime import RealtimeDeps, RealtimeEngine
from runner.engine.throttle import AdaptiveGate, Throttle
from runner.errors import (
    EXIT_OK,
    EXIT_SOME_ERRORS,
    EXIT_TEMPFAIL,
    ComeBackLater,
    ConfigError,
    GlmrunError,
    Interrupted,
    RunLocked,
)
from runner.io.inputs import InvalidLine, Item
from runner.io.prepare import read_job_items
from runner.io.store import ResultWriter, RunLock, load_resume_index

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass
class RunOptions:
    job: str | None = None
    limit: int | None = None
    dry_run: bool = False
    no_wait: bool = False
    wait_lock: bool = False
    tty: bool | None = None


@dataclass
class RunResult:
    stats: list[JobStats] = field(default_factory=list)
    plans: list[JobPlan] = field(default_factory=list)
    exit_code: int = EXIT_OK


def select_jobs(config: Config, name: str | None) -> list[JobConfig]:
    return [config.job(name)] if name else list(config.jobs)


class PlanStopped(Exception):
    """A signal came while planning (counting a big input runs in a thread)."""


KEEP_PENDING = 10_000  # a resume with at most this many left reads its input once


def plan_job(
    job: JobConfig, config: Config, stop: threading.Event | None = None, *, keep: int = 0
) -> tuple[JobPlan, Any]:
    index = load_resume_index(job.output_path)
    skipped = PendingCounts()  # finished lines the text pre-filter counts without parsing
    items = read_job_items(job, config, done_line_filter(index, skipped))
    counts = count_pending(items if stop is None else _until(items, stop), index, keep=keep)
    counts.done += skipped.done
    counts.failed += skipped.failed
    return make_plan(job, counts, config.batch), index


def pending_items(
    job: JobConfig, config: Config, plan: JobPlan, index: Any, stop: threading.Event | None = None
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """The pending (hash, item) pairs: those the plan kept, else a second pass over the input."""
    if plan.counts.kept is not None:
        kept, plan.counts.kept = plan.counts.kept, None
        return iter(kept)
    items = read_job_items(job, config, done_line_filter(index, PendingCounts()))
    return iter_pending(
        items if stop is None else _until(items, stop, quiet=True), index, PendingCounts()
    )


async def _planned(stopper: SignalStop, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args)`` in a daemon thread; a signal returns at once (PlanStopped), leaving the
    thread to finish reading on its own (it writes nothing, and exit does not wait for it)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)

    def target() -> None:
        try:
            value, error = fn(*args, **kwargs), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name="glmrun-plan", daemon=True).start()
    stop = asyncio.ensure_future(stopper.event.wait())
    try:
        waiters: set[asyncio.Future[Any]] = {done, stop}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not done.done():
        raise PlanStopped
    return done.result()


def _until(
    items: Iterator[Item | InvalidLine], stop: threading.Event, *, quiet: bool = False
) -> Iterator[Item | InvalidLine]:
    """Stop reading the input soon after a signal: raise PlanStopped, or (``quiet``) end it,
    so the engine drains what is in flight as at the end of the input."""
    for n, item in enumerate(items):
        if not n & 1023 and stop.is_set():
            if quiet:
                return
            raise PlanStopped
        yield item


def with_limit(plan: JobPlan, limit: int | None, config: Config) -> JobPlan:
    """``--limit N`` in mode auto: route on the N items this run sends, not on all pending."""
    if limit is None or plan.job.mode != "auto" or plan.pending <= limit:
        return plan
    route, why = choose_route(plan.job, limit, config.batch)
    return dataclasses.replace(
        plan, route=route, why=f"{why.replace(f'{limit} pending', f'--limit {limit}')}"
    )


def describe_plan(plan: JobPlan) -> str:
    c = plan.counts
    return (
        f"{plan.job.name}: {c.pending} pending, {c.done} done ({c.failed} as errors), {c.invalid} invalid, "
        f"{c.duplicates} duplicate lines -> {plan.route} ({plan.why})"
    )


@contextlib.asynccontextmanager
async def api_base_url(config: Config, state_dir: Path) -> AsyncIterator[str]:
    """The base URL to talk to; ``simulator`` starts the embedded simulator for the run."""
    if not config.api.is_simulator:
        yield config.api.base_url
        return
    from runner.simulator import Simulator, settings_from_dict

    try:
        settings = settings_from_dict(config.simulator)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{config.path}: simulator: {exc}") from None
    sim = Simulator(settings, state_dir=state_dir)
    base_url = await sim.start()
    try:
        yield base_url
    finally:
        await sim.close()


class SignalStop:
    """First signal: stop starting work, cancel what is left after the grace period.
    Second signal: flush every writer and exit at once.

    The handlers are plain ``signal.signal`` ones, not ``loop.add_signal_handler``: Python
    runs them between bytecodes even while the loop is busy in synchronous code (skipping a
    million finished lines), so ``flag`` stops the input at once and a second signal exits
    at once; the rest of the first signal's work is handed to the loop."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.event = asyncio.Event()
        self.flag = threading.Event()  # the same, readable from sync code and threads
        self.signame: str | None = None
        self.writers: list[ResultWriter] = []
        self.current: asyncio.Task[Any] | None = None
        self._first: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._on_os_signal)
            except (ValueError, OSError):  # not the main thread
                pass

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _on_os_signal(self, sig: int, frame: Any) -> None:
        name = signal.Signals(sig).name
        if self._first is not None:
            os.write(2, f"glmrun: second {name}: exiting at once\n".encode())
            for writer in self.writers:
                with contextlib.suppress(Exception):
                    writer.close()
            os._exit(Interrupted(self._first).exit_code)
        self._first = name
        self.flag.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        self.signame = name
        self.event.set()
        log.warning(
            "stopping: no new requests; in-flight ones get the grace period",
            extra={"signal": name, "grace_s": self.grace_s},
        )
        asyncio.get_running_loop().call_later(self.grace_s, self._cancel_current)

    def _cancel_current(self) -> None:
        if self.current is not None and not self.current.done():
            self.current.cancel()


def limited(
    pending: Iterator[tuple[int, Item | InvalidLine]], limit: int | None
) -> Iterator[tuple[int, Item | InvalidLine]]:
    if limit is None:
        yield from pending
        return
    taken = 0
    for h, item in pending:
        if isinstance(item, Item):
            if taken >= limit:
                return
            taken += 1
        yield h, item


async def run(config: Config, options: RunOptions, *, out: IO[str] | None = None) -> RunResult:
    out = out or sys.stdout
    jobs = select_jobs(config, options.job)
    result = RunResult()
    if options.dry_run:
        for job in jobs:
            plan, _ = plan_job(job, config)
            plan = with_limit(plan, options.limit, config)
            result.plans.append(plan)
            print(describe_plan(plan), file=out)
            est = estimate(job, plan.pending, config.cost, read_job_items(job, config))
            print(format_estimate(job, est, config.cost), file=out)
        return result

    stopper = SignalStop(config.run.grace_s)
    stopper.install()
    # Not the selected jobs' first: `--job b` and a run of all jobs must share the simulator's batches.
    state_dir = config.jobs[0].output_path.parent / ".glmrun" / "simulator"
    log.info(
        "run started",
        extra={"config": str(config.path), "jobs": [j.name for j in jobs], "pid": os.getpid()},
    )
    try:
        await _run_jobs(config, options, jobs, stopper, state_dir, result, out)
    except GlmrunError as exc:
        log.info("run finished", extra={"exit_code": exc.exit_code, "why": str(exc)})
        raise
    if stopper.signame is not None:
        interrupted = Interrupted(stopper.signame)
        log.info(
            "run finished", extra={"exit_code": interrupted.exit_code, "why": str(interrupted)}
        )
        raise interrupted
    if any(s.errors or s.failed_before for s in result.stats):
        result.exit_code = EXIT_SOME_ERRORS
    elif any(s.left_pending for s in result.stats):
        result.exit_code = EXIT_TEMPFAIL  # not every item is done: a later run sends the rest
    log.info("run finished", extra={"exit_code": result.exit_code})
    return result


async def _run_jobs(
    config: Config,
    options: RunOptions,
    jobs: list[JobConfig],
    stopper: SignalStop,
    state_dir: Path,
    result: RunResult,
    out: IO[str],
) -> None:
    try:
        async with api_base_url(config, state_dir) as base_url:
            try:
                client = GlmClient(
                    base_url,
                    config.api_key,
                    timeout_s=config.api.timeout_s,
                    connect_timeout_s=config.api.connect_timeout_s,
                    max_connections=_max_connections(config),
                    auth=config.api.auth,
                    jwt_ttl_s=config.api.jwt_ttl_s,
                )
            except ValueError as exc:  # api.auth: jwt with a key that is not <id>.<secret>
                raise ConfigError(
                    f"{config.path}: {exc} (the key in {config.api.api_key_env}); use auth: bearer for plain keys"
                ) from None
            async with client:
                if not config.api.is_simulator:
                    await check_reachable(
                        client, base_delay_s=config.retry.base_delay_s, stop=stopper.event
                    )
                later: ComeBackLater | None = None
                for job in jobs:
                    if stopper.event.is_set():
                        break
                    try:
                        stats = await _run_job(job, config, options, client, stopper, out)
                    except ComeBackLater as exc:  # batches still running: the other jobs go on
                        later = exc
                        if exc.stats is None:
                            raise
                        stats = exc.stats
                    result.stats.append(stats)
                    log_job_finished(stats)
                    print(format_summary(stats), file=out, flush=True)
                    if stats.usage_by_route:
                        usage = format_usage(_route_usage(stats), job, config.cost)
                        print(f"{job.name}: tokens by route: {usage}", file=out, flush=True)
                if later is not None and not stopper.event.is_set():
                    raise later
    finally:
        stopper.uninstall()


def log_job_finished(stats: JobStats) -> None:
    """The retry summary and the job's totals as two events (for log collectors)."""
    log.info(
        "retry summary",
        extra={
            "job": stats.name,
            "requests": stats.requests,
            "retries": stats.retries,
            "throttled": stats.throttled,
        },
    )
    log.info("job finished", extra=stats.summary())


async def acquire_lock(
    lock: RunLock, *, wait: bool, stop: asyncio.Event, poll_s: float = 0.2
) -> None:
    """Take the output lock; with ``wait`` poll for it (a signal still stops the wait)."""
    try:
        lock.acquire()
        return
    except RunLocked:
        if not wait:
            raise
    log.info(
        "waiting for the output lock", extra={"lock": str(lock.path), "holder_pid": lock.holder()}
    )
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=poll_s)
            raise RunLocked(
                f"{lock.path.name}: stopped while waiting for the lock (held by pid {lock.holder()})"
            )
        except TimeoutError:
            pass
        try:
            lock.acquire()
            return
        except RunLocked:
            continue


def _route_usage(stats: JobStats) -> dict[str, tuple[int, int]]:
    return {route: (t[0], t[1]) for route, t in stats.usage_by_route.items()}


def _max_connections(config: Config) -> int:
    c = config.limits.concurrency
    return config.limits.max_concurrency if c == "auto" else max(c, 1)


async def _run_job(
    job: JobConfig,
    config: Config,
    options: RunOptions,
    client: GlmClient,
    stopper: SignalStop,
    out: IO[str],
) -> JobStats:
    lock = RunLock(job.output_path)
    try:
        await acquire_lock(lock, wait=options.wait_lock, stop=stopper.event)
    except RunLocked:
        if stopper.signame is None:
            raise
        return JobStats(job.name)  # a signal ended the wait: exit 130/143 like any interrupted run
    try:
        try:
            # In a thread: counting millions of lines must not keep signals waiting.
            plan, index = await _planned(
                stopper, plan_job, job, config, stopper.flag, keep=KEEP_PENDING
            )
        except PlanStopped:
            log.warning("stopped while planning; nothing was sent", extra={"job": job.name})
            return JobStats(job.name)
        plan = with_limit(plan, options.limit, config)
        log.info(
            "plan",
            extra={
                "job": job.name,
                "pending": plan.pending,
                "done": plan.counts.done,
                "route": plan.route,
                "why": plan.why,
            },
        )
        stats = JobStats(
            job.name,
            route=plan.route,
            skipped=plan.counts.done,
            duplicates=plan.counts.duplicates,
            failed_before=plan.counts.failed,
        )
        stats.total = plan.pending + plan.counts.invalid
        if options.limit is not None:
            stats.total = min(plan.pending, options.limit) + plan.counts.invalid
        if stopper.event.is_set():
            return stats
        pending = limited(pending_items(job, config, plan, index, stopper.flag), options.limit)
        if plan.route == "batch":
            from runner.engine.batch import run_batch_job  # the batch path (issue: Batch API)

            # stopper.current: the grace period also ends a hung call or fallback request here
            # (cancelling is as safe as a kill: each chunk state is saved before its call)
            task = asyncio.ensure_future(
                run_batch_job(plan, pending, config, client, stats, stopper.event, options)
            )
            stopper.current = task
            try:
                return await task
            except asyncio.CancelledError:
                if stopper.signame is None:
                    raise
                log.warning(
                    "grace period over; cancelled batch calls still in flight",
                    extra={"job": job.name},
                )
                return stats
            finally:
                stopper.current = None
        writer = ResultWriter(job.output_path, flush_interval_s=config.run.flush_interval_s)
        stopper.writers.append(writer)
        try:
            return await _run_realtime(
                job, config, client, writer, stats, stopper, pending, options
            )
        finally:
            writer.close()
            stopper.writers.remove(writer)
    finally:
        lock.release()


def make_throttle(config: Config, stats: JobStats) -> tuple[Throttle, int, AdaptiveGate | None]:
    """The gate for a realtime run: fixed concurrency, or ``auto`` (workers for the ceiling,
    the adaptive controller moving the gate's limit from every answer and on its own clock)."""
    limits = config.limits
    if limits.concurrency != "auto":
        stats.concurrency = limits.concurrency
        return (
            Throttle(limits.concurrency, rpm=limits.rpm, tpm=limits.tpm),
            limits.concurrency,
            None,
        )
    controller = AdaptiveLimit(max_limit=limits.max_concurrency)
    throttle = Throttle(controller.limit, rpm=limits.rpm, tpm=limits.tpm)
    stats.concurrency = controller.limit

    def on_change(limit: int) -> None:
        stats.concurrency = limit

    gate = AdaptiveGate(controller, throttle, on_change=on_change)
    return throttle, limits.max_concurrency, gate


async def _run_realtime(
    job: JobConfig,
    config: Config,
    client: GlmClient,
    writer: ResultWriter,
    stats: JobStats,
    stopper: SignalStop,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    options: RunOptions,
) -> JobStats:
    throttle, workers, gate = make_throttle(config, stats)
    deps = RealtimeDeps(
        client=client,
        writer=writer,
        throttle=throttle,
        retry=config.retry,
        stats=stats,
        stop=stopper.event,
        flush_interval_s=config.run.flush_interval_s,
        workers=workers,
        on_result=None if gate is None else gate.on_result,
    )
    engine = RealtimeEngine(job, deps)
    progress = Progress(stats, tty=options.tty, interval_s=config.run.progress_interval_s)
    progress_task = asyncio.create_task(progress.run())
    task = asyncio.ensure_future(engine.run(pending))
    stopper.current = task
    try:
        await task
    except asyncio.CancelledError:
        if stopper.signame is None:
            raise
        log.warning(
            "grace period over; cancelled requests still in flight", extra={"job": job.name}
        )
    finally:
        stopper.current = None
        if gate is not None:
            gate.close()
        progress_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress_task
        stats.finished = time.monotonic()
    return stats
