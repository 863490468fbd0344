"""Planning a job before anything is sent: resume index + input -> plan, off the event loop.

Counting millions of input lines runs in a thread so that a signal is answered at once;
``pending_items`` then hands the engine what the plan kept, or reads the input a second time.
A plan has two halves, ``open_plan`` (the index, where to read from) and ``count_plan`` (the
count); a realtime route that no count can change skips the second: ``runner.app.stream``
counts as the run sends.

A run may plan on a guess (``open_plan(early=True)``): a text input is read from where the
last plan found it all done before the check that it still starts the same has finished
(hashing the prefix of a ten-million-line list takes longer than planning its new lines). The
run sends what that plan found, then ``settle_guess`` waits for the check. A wrong guess
costs a read of the whole input, never a URL: ``input_pairs`` through ``Sent.unsent`` yields
every pending line the run has not yet sent (``Sent`` records them), so nothing is skipped and
nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from runner.app.signals import SignalStop
from runner.config.schema import Config, JobConfig
from runner.core.hashset import HashSet
from runner.core.items import InvalidLine, Item
from runner.core.plan import (
    JobPlan,
    PendingCounts,
    choose_route,
    count_pending,
    done_line_filter,
    iter_pending,
    make_plan,
)
from runner.core.resume import ResumeIndex
from runner.io.inputs import SkipLine, TextPrefix, detect_format
from runner.io.job_files import load_job_index
from runner.io.plancache import PrefixCheck, forget_prefix, save_prefix, start_prefix
from runner.io.prepare import read_job_items

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class PlanStopped(Exception):
    """A signal came while planning (counting a big input runs in a thread)."""


KEEP_PENDING = 10_000  # a resume with at most this many left reads its input once


@dataclass
class Guess:
    """A plan that started reading the input at the noted offset before the check of the
    bytes before it finished: true once ``check.wait()`` says so. ``prefix`` is how far the
    input was all done, to note when it is."""

    check: PrefixCheck
    prefix: TextPrefix


def plan_job(
    job: JobConfig,
    config: Config,
    stop: threading.Event | None = None,
    *,
    keep: int = 0,
    save: bool = False,
) -> tuple[JobPlan, ResumeIndex]:
    """Plan ``job`` from its index (every output file of the job, merged) and what this
    process does: with ``job.shard``, only the items its shard owns. A text input of an
    unsharded run starts where the last plan found only finished lines, once that is checked
    (``runner.io.plancache``; a shard run reads the whole input). With ``save`` (the caller
    holds the output's lock) a full scan of the output leaves a persistent resume index, and
    the input's finished prefix is noted."""
    opened = open_plan(job, save=save, early=False)
    plan, index, _ = count_plan(job, config, opened, stop, keep=keep, save=save, early=False)
    return plan, index


@dataclass
class PlanStart:
    """The first half of a plan, before any input line is read: the resume index, where the
    input is read from (``prefix``, a copy of it as ``start``) and the pre-filter of finished
    text lines (counting into ``counts``)."""

    index: ResumeIndex
    counts: PendingCounts
    skip: SkipLine | None
    text: bool
    prefix: TextPrefix
    start: TextPrefix
    check: PrefixCheck | None


def open_plan(job: JobConfig, *, save: bool, early: bool) -> PlanStart:
    """Load the job's index and find where to read its input from (see ``plan_job``)."""
    index = load_job_index(job, save=save)
    skipped = PendingCounts()  # finished lines the text pre-filter counts without parsing
    skip = done_line_filter(index, skipped, job.shard)
    text = skip is not None and detect_format(job.input_path, job.input_format) == "text"
    text = text and job.shard is None
    prefix, check = TextPrefix(), None
    if text:
        prefix, check = start_prefix(job.output_path, job.input_path, index)
        if check is not None and not early and not check.wait():
            prefix, check = TextPrefix(), None
        prefix.check = check
    prefix.growing = text
    skipped.once.prefix = prefix  # tells a finished prefix key listed again after it
    return PlanStart(index, skipped, skip, text, prefix, dataclasses.replace(prefix), check)


def count_plan(
    job: JobConfig,
    config: Config,
    opened: PlanStart,
    stop: threading.Event | None,
    *,
    keep: int,
    save: bool,
    early: bool,
) -> tuple[JobPlan, ResumeIndex, Guess | None]:
    """The second half of a plan: read the whole input from ``opened.prefix`` and count what
    is pending (today's route-deciding count); with an unchecked prefix, a ``Guess``."""
    index, skipped, prefix, start = opened.index, opened.counts, opened.prefix, opened.start
    check = opened.check
    items = read_job_items(job, config, opened.skip, prefix)
    counts = count_pending(
        items if stop is None else _until(items, stop),
        index,
        keep=keep,
        shard=job.shard,
        once=skipped.once,
    )
    counts.done += skipped.done + start.done
    counts.failed += skipped.failed + start.failed
    counts.duplicates += skipped.duplicates + start.duplicates
    counts.other_shards += skipped.other_shards
    counts.start = (start.offset, start.line_no)
    guess = None
    if early and check is not None:
        guess = Guess(check, prefix)
        if prefix.offset > check.offset:
            check.start()  # proven by its stat, but a longer prefix is noted: hash it meanwhile
    elif save and opened.text:
        save_prefix(job.output_path, job.input_path, prefix, index)
    return make_plan(job, counts, config.batch), index, guess


def settle_guess(job: JobConfig, guess: Guess, index: ResumeIndex) -> bool:
    """Wait for the check of a guessed plan (the caller holds the lock): True when the input
    still starts as noted (the longer prefix is noted); False when it changed (the note is
    dropped and the caller reads the whole input with ``input_pairs``)."""
    if guess.check.wait():
        save_prefix(job.output_path, job.input_path, guess.prefix, index)
        return True
    log.warning(
        "the input changed before the noted prefix; reading all of it",
        extra={"job": job.name, "file": str(job.input_path), "offset": guess.check.offset},
    )
    forget_prefix(job.output_path)
    return False


class Sent:
    """The key hashes a run has handed to its engine (after a wrong guess, ``unsent``
    skips them), and how many of them were items (for ``--limit``)."""

    def __init__(self) -> None:
        self.hashes = HashSet()
        self.items = 0

    def record(
        self, pairs: Iterator[tuple[int, Item | InvalidLine]]
    ) -> Iterator[tuple[int, Item | InvalidLine]]:
        for h, item in pairs:
            self.hashes.add(h)
            self.items += isinstance(item, Item)
            yield h, item

    def unsent(
        self, pairs: Iterator[tuple[int, Item | InvalidLine]], counts: PendingCounts
    ) -> Iterator[tuple[int, Item | InvalidLine]]:
        """After a wrong guess, the whole input's ``pairs`` but those already sent (moved in
        ``counts`` from pending to duplicates)."""
        for h, item in pairs:
            if h in self.hashes:
                if isinstance(item, InvalidLine):
                    counts.invalid -= 1
                else:
                    counts.pending -= 1
                counts.duplicates += 1
                continue
            yield h, item

    def __repr__(self) -> str:
        return f"<Sent items={self.items}>"


def pending_items(
    job: JobConfig,
    config: Config,
    plan: JobPlan,
    index: ResumeIndex,
    stop: threading.Event | None = None,
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """The pending (hash, item) pairs: those the plan kept, else a second pass over the input
    (from where the plan started: the lines before are finished)."""
    if plan.counts.kept is not None:
        kept, plan.counts.kept = plan.counts.kept, None
        return iter(kept)
    offset, line_no = plan.counts.start
    prefix = TextPrefix(offset, line_no, growing=False)
    return input_pairs(job, config, index, PendingCounts(), prefix, stop)


def left_to_batches(job: JobConfig) -> set[int]:
    """Keys in the job's batches still running: whatever sends realtime (a run's realtime
    route, ``glmrun bench``) must not pay for them again; refused, as a batch run is, over
    batches a work folder of another job name or output still runs (batch modules only for
    a job that has a work folder)."""
    if not job.work_dir.parent.is_dir():
        return set()
    from runner.io.batch_state import open_batch_keys

    keys = open_batch_keys(job)
    if keys:
        log.info(
            "lines in batches still running are left to them",
            extra={"job": job.name, "lines": len(keys)},
        )
    return keys


def not_in(
    pending: Iterator[tuple[int, Item | InvalidLine]], keys: set[int] | None
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """``pending`` without the pairs whose key hash is in ``keys`` (as it is when none)."""
    return ((h, item) for h, item in pending if h not in keys) if keys else pending


def plan_rest(
    job: JobConfig,
    config: Config,
    index: ResumeIndex,
    sent: Sent,
    limit: int | None,
    stop: threading.Event | None,
) -> tuple[JobPlan, TextPrefix]:
    """After a wrong guess in mode auto: what the whole input still needs, but what this
    run already sent, counted and routed as a plan of that size would be (``--limit`` too);
    with the input's finished prefix to note."""
    counts, prefix = PendingCounts(), TextPrefix()
    for _ in sent.unsent(input_pairs(job, config, index, counts, prefix, stop), counts):
        pass
    return with_limit(make_plan(job, counts, config.batch), limit, config), prefix


def input_pairs(
    job: JobConfig,
    config: Config,
    index: ResumeIndex,
    counts: PendingCounts,
    prefix: TextPrefix,
    stop: threading.Event | None,
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """The pending (hash, item) pairs of the input from ``prefix`` on: finished lines dropped
    unparsed by the pre-filter, the rest by the index (``counts`` counts both). From a fresh
    ``TextPrefix``, the whole input (after a wrong guess: ``prefix`` grows over the finished
    lines it starts with, to be noted)."""
    skip = done_line_filter(index, counts, job.shard)
    counts.once.prefix = prefix
    items = read_job_items(job, config, skip, prefix)
    return iter_pending(
        items if stop is None else _until(items, stop, quiet=True), index, counts, job.shard
    )


def daemon_call(fn: Callable[..., _T], *args: Any, name: str, **kwargs: Any) -> asyncio.Future[_T]:
    """``fn(*args, **kwargs)`` in a daemon thread; its value or error lands in the returned
    future. Exit does not wait for the thread, and once the loop is gone nobody waits for the
    future either: the thread then ends on its own."""
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

    threading.Thread(target=target, name=name, daemon=True).start()
    return done


async def _planned(stopper: SignalStop, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args)`` in a daemon thread; a signal returns at once (PlanStopped), leaving the
    thread to finish reading on its own (it writes nothing, and exit does not wait for it)."""
    done = daemon_call(fn, *args, name="glmrun-plan", **kwargs)
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


def log_plan(plan: JobPlan) -> None:
    """The ``plan`` event: a counted plan's before it is sent, a streamed run's at its end."""
    log.info(
        "plan",
        extra={
            "job": plan.job.name,
            "pending": plan.pending,
            "done": plan.counts.done,
            "route": plan.route,
            "why": plan.why,
        },
    )


def describe_plan(plan: JobPlan) -> str:
    c = plan.counts
    job = plan.job
    name = job.name if job.shard is None else f"{job.name} shard {job.shard}"
    others = f", {c.other_shards:,} lines for other shards" if job.shard is not None else ""
    return (
        f"{name}: {c.pending:,} pending, {c.done:,} done ({c.failed:,} as errors), "
        f"{c.invalid:,} invalid, {c.duplicates:,} duplicate line{'' if c.duplicates == 1 else 's'}"
        f"{others} -> {plan.route} "
        f"({plan.why})"
    )


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
