"""One ``glmrun run``: per job, lock, plan (counted first, or counted as it is sent:
``runner.app.stream``), engine, summary; the run's exit code.

Pieces come from ``runner.app.wiring``; stopping from ``runner.app.signals``: the first
SIGINT/SIGTERM stops new work and gives requests in flight ``run.grace_s`` to finish; a
second one flushes and exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from runner.api.glm import GlmClient
from runner.api.preflight import check_reachable
from runner.app.display import Batches, Display, Mode
from runner.app.planning import (
    KEEP_PENDING,
    Guess,
    PlanStopped,
    Sent,
    _planned,
    input_pairs,
    left_to_batches,
    limited,
    log_plan,
    not_in,
    pending_items,
    plan_job,
    plan_rest,
    settle_guess,
    with_limit,
)
from runner.app.signals import SignalStop, acquire_lock, tell_person
from runner.app.stream import Stream, plan_or_stream
from runner.app.summary import (
    for_terminal,
    job_exit_code,
    most_serious,
    still_remote,
    summary_lines,
)
from runner.app.wiring import (
    JobParts,
    api_base_url,
    make_batch_deps,
    make_client,
    make_realtime_engine,
    make_writer,
    simulator_settings,
)
from runner.config.schema import Config, JobConfig
from runner.core.items import InvalidLine, Item
from runner.core.plan import JobPlan, PendingCounts
from runner.core.resume import ResumeIndex
from runner.core.stats import JobStats
from runner.errors import EXIT_OK, EXIT_TEMPFAIL, ComeBackLater, GlmrunError, Interrupted, RunLocked
from runner.io.inputs import TextPrefix, check_input
from runner.io.job_files import refuse_to_start_over
from runner.io.plancache import save_prefix
from runner.io.store import RunLock, save_resume_index
from runner.logs import console

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """The options of ``glmrun run`` as the orchestrator reads them."""

    job: str | None = None
    limit: int | None = None
    dry_run: bool = False
    no_wait: bool = False
    wait_lock: bool = False
    tty: bool | None = None  # None: ask the console
    display: Mode | None = None  # None: live on a TTY, else progress lines
    strict: bool = False  # exit 1 while any permanent error record exists (the old rule)
    quiet: bool = False  # -q: no summary on success

    def on_terminal(self) -> bool:
        return sys.stderr.isatty() if self.tty is None else self.tty

    def display_mode(self) -> Mode:
        if self.display is not None:
            return self.display
        # rich's Live draws nothing where the cursor cannot move (TERM=dumb): progress lines
        live = self.on_terminal() and (self.tty is not None or console().is_interactive)
        return "live" if live else "lines"


@dataclass
class RunResult:
    """What a run leaves its caller: counts and plans, the exit code, batches still running."""

    stats: list[JobStats] = field(default_factory=list)
    plans: list[JobPlan] = field(default_factory=list)
    exit_code: int = EXIT_OK
    later: ComeBackLater | None = None  # batches still running in some job


@dataclass(frozen=True)
class _RunContext:
    """What every job of one run shares: the config, the options, the signal handling, the
    result being filled in and where summaries go."""

    config: Config
    options: RunOptions
    stopper: SignalStop
    result: RunResult
    out: IO[str]


async def run(config: Config, options: RunOptions, *, out: IO[str] | None = None) -> RunResult:
    out = out or sys.stdout
    jobs = config.select(options.job)
    for job in jobs:  # a missing input is found before any job sends anything
        check_input(
            job.input_path, job.name, job.input_format, job.csv_url_column, job.csv_id_column
        )
    result = RunResult()
    if options.dry_run:
        from runner.app.dry_run import dry_runs  # --dry-run only

        if config.api.is_simulator:
            simulator_settings(config)  # a misspelt knob fails here as it would in the run
        result.plans.extend(await dry_runs(jobs, config, options.limit, out))
        return result

    stopper = SignalStop(config.run.grace_s)
    stopper.install()
    log.info(
        "run started",
        extra={
            "config": str(config.path),
            "jobs": [j.name for j in jobs],
            "pid": os.getpid(),
            **({"shard": str(jobs[0].shard)} if jobs and jobs[0].shard else {}),
        },
    )
    try:
        await _run_jobs(_RunContext(config, options, stopper, result, out), jobs)
    except GlmrunError as exc:  # the CLI prints its one line; the event does not repeat it
        log.info("run finished", extra={"exit_code": exc.exit_code})
        raise
    if stopper.signame is not None:
        interrupted = Interrupted(stopper.signame, still_remote(config, jobs, result.stats))
        log.info("run finished", extra={"exit_code": interrupted.exit_code})
        raise interrupted
    codes = [job_exit_code(s, strict=options.strict) for s in result.stats]
    if result.later is not None:
        codes.append(EXIT_TEMPFAIL)
    result.exit_code = most_serious(codes)
    log.info("run finished", extra={"exit_code": result.exit_code})
    if result.later is not None:
        if result.exit_code == EXIT_TEMPFAIL and options.quiet and result.later.asked:
            return result  # -q: the --no-wait run went as asked; 75 says "come back later"
        if result.exit_code == EXIT_TEMPFAIL:
            raise result.later  # its message is the one line that says to come back
        log.warning(str(result.later), extra={"_event": "come back later"})
    return result


async def _run_jobs(ctx: _RunContext, jobs: list[JobConfig]) -> None:
    config, stopper = ctx.config, ctx.stopper
    try:
        async with api_base_url(config) as base_url, make_client(config, base_url) as client:
            # The reachability check runs while the first job plans (it is awaited before
            # anything is sent), so a run pays for the longer of the two, not their sum.
            reachable: asyncio.Future[None] | None = None
            if not config.api.is_simulator:
                reachable = asyncio.ensure_future(
                    check_reachable(
                        client, base_delay_s=config.retry.base_delay_s, stop=stopper.event
                    )
                )
            try:
                await _each_job(ctx, jobs, client, reachable)
            finally:
                if reachable is not None and not reachable.done():
                    reachable.cancel()  # no job got as far as sending
                    with contextlib.suppress(asyncio.CancelledError, GlmrunError):
                        await reachable
    finally:
        stopper.uninstall()


async def _each_job(
    ctx: _RunContext,
    jobs: list[JobConfig],
    client: GlmClient,
    reachable: asyncio.Future[None] | None,
) -> None:
    config, options, stopper, result = ctx.config, ctx.options, ctx.stopper, ctx.result
    for job in jobs:
        if stopper.event.is_set():
            break
        try:
            ran = await _run_job(ctx, job, client, reachable)
        except ComeBackLater as exc:  # batches still running: the other jobs go on
            result.later = exc
            if exc.stats is None:
                raise
            ran = exc.stats
        if ran is None:  # a signal came before the job started: no summary of a job not run
            break
        stats = ran
        result.stats.append(stats)
        log.info("job finished", extra=stats.summary())
        if not options.quiet or job_exit_code(stats, strict=options.strict):
            lines = summary_lines(
                stats,
                price=config.cost.price(job.model),
                currency=config.cost.currency,
                strict=options.strict,
                input_name=None if job.shard else job.input_path.name,
            )
            print("\n".join(for_terminal(lines, ctx.out)), file=ctx.out, flush=True)
    if stopper.event.is_set():
        result.later = None


async def _run_job(
    ctx: _RunContext,
    job: JobConfig,
    client: GlmClient,
    reachable: asyncio.Future[None] | None = None,
) -> JobStats | None:
    """The job's counts; None when a signal ended the run before the job started (waiting for
    the lock, planning), so nothing reads as its summary ('urls.txt has no items')."""
    config, options, stopper = ctx.config, ctx.options, ctx.stopper
    lock = RunLock(job.output_path)
    person = options.display is None and options.on_terminal() and not options.quiet
    try:
        await acquire_lock(
            lock,
            wait=options.wait_lock,
            stop=stopper.event,
            advice="wait for it, or pass --wait-lock",
            say=tell_person if person else None,  # at a terminal, live display or not
        )
    except RunLocked:
        if stopper.signame is None:
            raise
        return None  # a signal ended the wait: exit 130/143 like any interrupted run
    planned, lost = False, None
    try:
        refuse_to_start_over(job)  # under the lock: no run is writing the output now
        lost = _look_for_lost(ctx, job, client)  # on the account, while the input is planned
        stream: Stream | None = None
        try:
            # In a thread: counting millions of lines must not keep signals waiting. A route
            # that no count can change is not counted first (runner.app.stream).
            first = await _planned(
                stopper,
                plan_or_stream,
                job,
                config,
                stopper.flag,
                keep=KEEP_PENDING,
                limit=options.limit,
            )
            if isinstance(first, Stream):
                stream = first
                plan, index, guess = first.route_plan(), first.index, first.guess
            else:
                plan, index, guess = first
            if guess is not None and plan.route == "batch":
                # a batch takes minutes: wait for the check, and plan it all if it fails
                held = await _planned(stopper, settle_guess, job, guess, index)
                guess = None
                if not held:
                    plan, index = await _planned(
                        stopper, plan_job, job, config, stopper.flag, keep=KEEP_PENDING, save=True
                    )
        except PlanStopped:
            log.warning("stopped while planning; nothing was sent", extra={"job": job.name})
            return None
        planned = True
        if reachable is not None:
            await reachable  # an unreachable API ends the run here, before anything is sent
        try:
            # batches of a run whose work folder is gone are tracked again (and said so)
            adopted = lost is not None and await lost
            in_batches = (
                set() if plan.route == "batch" else await _planned(stopper, left_to_batches, job)
            )
        except PlanStopped:
            log.warning("stopped while planning; nothing was sent", extra={"job": job.name})
            return None
        if stream is not None:
            stats = stream.new_stats()  # the plan event comes when the pass has read the input
            pairs = stream.pairs(stats)
        else:
            plan = with_limit(plan, options.limit, config)
            stats = _counted_stats(job, plan, options.limit)
            pairs = pending_items(job, config, plan, index, stopper.flag)
        if job.mode == "auto" and stream is None:  # a stream's comes at the end of its pass
            stats.why = plan.why
        # lines left to running batches are no part of what --limit lets this run send
        pending = limited(not_in(pairs, in_batches), options.limit)
        if stopper.event.is_set():
            return stats
        display = Display(
            stats,
            options.display_mode(),
            interval_s=config.run.progress_interval_s,
            price=config.cost.price(job.model),
            currency=config.cost.currency,
            batches=_batches_shown(job) if plan.route == "batch" else None,
        )
        writer = make_writer(job, stats=stats)
        stopper.writers.append(writer)  # a second signal flushes it before exiting
        parts = JobParts(job, config, client, writer, stats, stopper.event)
        stopper.screen.append(display.frame_gone)  # a second signal erases the live frame
        try:
            async with display:
                if plan.route == "batch":
                    return await _run_batch(parts, plan, pending, stopper, options.no_wait, adopted)
                sent = Sent() if guess is not None else None
                await _run_realtime(
                    parts, stopper, pending if sent is None else sent.record(pending)
                )
                if stream is not None:
                    await _end_stream(stream, stopper)
                if sent is not None and guess is not None and not stopper.event.is_set():
                    batch = functools.partial(_run_batch, parts, stopper=stopper)
                    rerun = functools.partial(_run_realtime, parts, stopper, skip=in_batches)
                    await _after_guess(
                        job, config, options, index, guess, sent, stopper, rerun, batch
                    )
                if in_batches and not stopper.event.is_set():  # collect them as a batch run does
                    return await _run_batch(
                        parts, plan, iter(()), stopper, options.no_wait, adopted
                    )
                return stats
        finally:
            writer.close()
            stopper.writers.remove(writer)
            stopper.screen.remove(display.frame_gone)
    finally:
        if lost is not None and not lost.done():
            lost.cancel()  # planning or the reachability check ended the run first
        try:
            if planned:
                save_resume_index(job.output_path)  # the next run scans only what comes after
        finally:
            lock.release()


def _counted_stats(job: JobConfig, plan: JobPlan, limit: int | None) -> JobStats:
    """A counted plan's event and the stats its run starts from."""
    log_plan(plan)
    stats = JobStats(
        job.name,
        route=plan.route,
        skipped=plan.counts.done,
        duplicates=plan.counts.duplicates,
        failed_before=plan.counts.failed,
        shard=str(job.shard) if job.shard else None,
    )
    stats.total = plan.pending + plan.counts.invalid
    if limit is not None:
        stats.total = min(plan.pending, limit) + plan.counts.invalid
        stats.beyond_limit = max(0, plan.pending - limit)
    return stats


async def _end_stream(stream: Stream, stopper: SignalStop) -> None:
    """After a streamed pass: read what ``--limit`` left unread (its counts make the
    summary's), and note the input's finished prefix (off the event loop)."""
    if stopper.event.is_set():
        return
    try:
        if not stream.complete:
            await _planned(stopper, stream.drain)
        await _planned(stopper, stream.save_prefix)
    except PlanStopped:
        pass


def _batches_shown(job: JobConfig) -> Batches:
    """The display's view of a batch job's tracked batches; the batch state modules are
    imported by batch runs only (a realtime run's start-up skips them)."""
    from runner.io.batch_state import tracked_batches

    return lambda: tracked_batches(job)


async def _after_guess(
    job: JobConfig,
    config: Config,
    options: RunOptions,
    index: ResumeIndex,
    guess: Guess,
    sent: Sent,
    stopper: SignalStop,
    run: Callable[[Iterator[tuple[int, Item | InvalidLine]]], Awaitable[JobStats]],
    batch: Callable[..., Awaitable[JobStats]],
) -> None:
    """After sending a guessed plan, wait for its check (the loop keeps running); if the
    input changed, ``run`` what the whole input still needs (the counts shown become those of
    the whole input) and note its prefix again. In mode auto the rest is counted first and
    routed as its size says: a list replaced by a million new URLs goes by ``batch``, at the
    batch price, not realtime because the few lines guessed first did."""
    try:
        if await _planned(stopper, settle_guess, job, guess, index):
            return
    except PlanStopped:
        return
    limit = None if options.limit is None else max(0, options.limit - sent.items)
    plan: JobPlan | None = None
    if job.mode == "auto":
        try:
            plan, prefix = await _planned(
                stopper, plan_rest, job, config, index, sent, limit, stopper.flag
            )
        except PlanStopped:
            return
    if plan is not None and plan.route == "batch":
        counts = plan.counts
        pairs = input_pairs(job, config, index, PendingCounts(), TextPrefix(), stopper.flag)
        rest = sent.unsent(pairs, PendingCounts())
        stats = await batch(plan, limited(rest, limit), no_wait=options.no_wait)
    else:  # counted as it is sent (``prefix`` grows over the finished lines it starts with)
        counts, prefix = PendingCounts(), TextPrefix()
        pairs = input_pairs(job, config, index, counts, prefix, stopper.flag)
        stats = await run(limited(sent.unsent(pairs, counts), limit))
    _whole_input_counts(stats, counts)
    if not stopper.event.is_set():
        await asyncio.to_thread(save_prefix, job.output_path, job.input_path, prefix, index)


def _whole_input_counts(stats: JobStats, counts: PendingCounts) -> None:
    """After a wrong guess the counts shown become those of the whole input."""
    stats.skipped, stats.failed_before = counts.done, counts.failed
    stats.duplicates = counts.duplicates
    stats.total += counts.pending + counts.invalid


async def _run_batch(
    parts: JobParts,
    plan: JobPlan,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    stopper: SignalStop,
    no_wait: bool,
    adopted: bool = False,
) -> JobStats:
    from runner.engine.batch import run_batch_job  # only now: a realtime run skips it

    # stopper.current: the grace period also ends a hung call here (as safe as a kill)
    deps = make_batch_deps(parts, no_wait=no_wait, adopted=adopted)
    task = asyncio.ensure_future(run_batch_job(plan, pending, parts.config, deps))
    stopper.current = task
    try:
        return await task
    except asyncio.CancelledError:
        if stopper.signame is None:
            raise
        log.warning(
            "grace period over; cancelled batch calls still in flight",
            extra={"job": parts.job.name},
        )
        return parts.stats
    finally:
        stopper.current = None


def _look_for_lost(
    ctx: _RunContext, job: JobConfig, client: GlmClient
) -> asyncio.Task[bool] | None:
    """A job whose mode may batch and that has no state file looks on the account for batches
    of a run whose work folder is gone (one list call, ``runner.engine.batch.adopt``), while
    its input is planned and the API's reachability checked: their lines are then left to
    them, whichever route the plan takes. The look leaves a state file, so the next run does
    not look again; a job in mode realtime never made any batch."""
    if job.mode == "realtime":
        return None
    from runner.io.batch_state import retire_if_output_gone, state_path

    if state_path(job).exists() and not retire_if_output_gone(job):
        return None
    from runner.engine.batch.adopt import adopt_lost_batches

    return asyncio.create_task(adopt_lost_batches(job, ctx.config, client))


async def _run_realtime(
    parts: JobParts,
    stopper: SignalStop,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    *,
    skip: set[int] | None = None,
) -> JobStats:
    """The realtime engine over ``pending``; ``skip``: keys left to running batches (the pass
    after a wrong prefix guess reads the input again, and so meets them again)."""
    engine = make_realtime_engine(parts)
    pending = not_in(pending, skip)
    task = asyncio.ensure_future(engine.run(pending))
    stopper.current = task
    try:
        await task
    except asyncio.CancelledError:
        if stopper.signame is None:
            raise
        log.warning(
            "grace period over; cancelled requests still in flight", extra={"job": parts.job.name}
        )
    finally:
        stopper.current = None
        parts.stats.finished = time.monotonic()
    return parts.stats
