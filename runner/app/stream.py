"""A realtime run that counts as it sends: one pass over the input, not parsed before it.

When the route does not depend on the count (``mode: realtime``; ``mode: auto`` with at most
``batch.threshold`` lines left after the input's finished prefix, or ``--limit`` at most that),
counting the whole input first would only delay the first request (seconds for a million
lines). Such a run starts its engine on the input at once: the reader that feeds it is the
one that counts (``iter_pending`` fills ``PendingCounts`` as it goes), and the ``plan`` event,
the counts and the summary are those of that pass when it reaches the end of the input.

Until then the progress total is an upper bound: the counts so far plus every line the input
has left (a count of its newlines: ``COUNTED_AT_ONCE`` before the first request, the rest in
a thread; meanwhile the lines counted so far), lowered as lines turn out to be
done, duplicates, blank or comments, and exact once the reader reaches the end. A ``--limit``
run stops sending at its limit, then reads the rest of the input off the event loop, so its
summary counts the whole input, as a counted plan's does.

Every other guarantee is the counted plan's (``runner.app.planning``): the same reader, the
same pre-filter and noted prefix (with its ``Guess`` when the prefix check has not finished),
and ``_until`` stopping the reader soon after a signal. The reader runs on the event loop, so
a long stretch of finished lines is not streamed (``plan_or_stream``, ``MAX_SKIPPED``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from runner.app.planning import (
    Guess,
    PlanStart,
    _until,
    count_plan,
    log_plan,
    open_plan,
    with_limit,
)
from runner.config.schema import Config, JobConfig
from runner.core.items import InvalidLine, Item
from runner.core.plan import JobPlan, PendingCounts, Route, iter_pending, make_plan
from runner.core.resume import ResumeIndex
from runner.core.stats import JobStats
from runner.io.inputs import check_input
from runner.io.plancache import save_prefix
from runner.io.prepare import read_job_items

Pair = tuple[int, Item | InvalidLine]
_CHUNK = 1 << 20


def lines_after(path: Path, offset: int, *, most: int | None = None) -> int:
    """Lines of ``path`` from byte ``offset`` on (a last line without a newline counts): an
    upper bound of the items left to read there, whatever the format. With ``most``, stops
    counting once past it (returns a number > ``most``)."""
    n, last = 0, 10  # the last byte read: a newline before any
    with open(path, "rb") as handle:
        handle.seek(offset)
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while k := handle.readinto(view):
            n += buf.count(b"\n", 0, k)
            last = buf[k - 1]
            if most is not None and n > most:
                return n
    return n + (last != 10)


def fixed_route(
    job: JobConfig, config: Config, lines: int | None, limit: int | None
) -> Route | None:
    """The route when no count can change it (``lines``: at most this many items left, None
    when not counted), else None: the whole input is counted first. In mode auto the count
    routes (``choose_route``, ``with_limit``) on ``min(pending, limit)``, and pending is at
    most ``lines``."""
    if job.mode == "realtime":
        return "realtime"
    if job.mode != "auto":
        return None
    threshold = config.batch.threshold
    if lines is not None and lines <= threshold or limit is not None and limit <= threshold:
        return "realtime"
    return None


class Stream:
    """The pass of a realtime run whose route was fixed without a count (see the module).

    ``pairs(stats)`` is the engine's input: the pending (hash, item) pairs, keeping ``stats``
    (total, skipped, duplicates) up to date as it reads; ``complete`` once it has read the
    whole input, when ``plan`` holds the exact counts (and the ``plan`` event is logged)."""

    def __init__(
        self,
        job: JobConfig,
        config: Config,
        opened: PlanStart,
        route: Route,
        stop: threading.Event,
        limit: int | None,
        lines: int,
        *,
        exact: bool = True,
    ):
        self.job, self.config, self.opened = job, config, opened
        self.route = route
        self.stop, self.limit = stop, limit
        self.index: ResumeIndex = opened.index
        start = opened.start
        self.counts: PendingCounts = opened.counts  # the pre-filter's counts, and the reader's
        self.counts.done += start.done
        self.counts.failed += start.failed
        self.counts.duplicates += start.duplicates
        self.counts.start = (start.offset, start.line_no)
        self.guess = Guess(opened.check, opened.prefix) if opened.check is not None else None
        self.complete = False
        self.plan: JobPlan | None = None
        # the last line number the input can have; until a thread has counted them all (not
        # ``exact``), the best known: the lines counted so far
        self.last_line = start.line_no + lines
        self._pairs: Iterator[Pair] | None = None
        if not exact:
            threading.Thread(target=self.count_lines, name="glmrun-lines", daemon=True).start()

    def count_lines(self) -> None:
        start = self.opened.start
        try:
            self.last_line = start.line_no + lines_after(self.job.input_path, start.offset)
        except OSError:  # the reader reports an unreadable input; the total stays a count
            pass

    def route_plan(self) -> JobPlan:
        """The plan before the pass: its route, and the counts as they fill in."""
        return JobPlan(self.job, self.route, "the route does not depend on the count", self.counts)

    def new_stats(self) -> JobStats:
        shard = self.job.shard
        stats = JobStats(self.job.name, route=self.route, shard=str(shard) if shard else None)
        self._show(stats, self.opened.start.line_no)
        return stats

    def pairs(self, stats: JobStats) -> Iterator[Pair]:
        """The pending pairs; the same iterator every call (``drain`` finishes it)."""
        if self._pairs is None:
            self._pairs = self._read(stats)
        return self._pairs

    def _read(self, stats: JobStats) -> Iterator[Pair]:
        job, opened = self.job, self.opened
        items = self._to_end(read_job_items(job, self.config, opened.skip, opened.prefix))
        pending = _until(items, self.stop, quiet=True)
        show = self._show
        for h, item in iter_pending(pending, self.index, self.counts, job.shard):
            show(stats, item.line_no)
            yield h, item
        if self.complete:  # else a signal ended the reading: the counts are partial
            self._finish(stats)

    def _to_end(self, items: Iterator[Item | InvalidLine]) -> Iterator[Item | InvalidLine]:
        yield from items
        self.complete = True

    def _show(self, stats: JobStats, line_no: int) -> None:
        """``stats`` as known after reading line ``line_no``: the total is what is pending so
        far plus every line left (exact at the end)."""
        c = self.counts
        stats.skipped, stats.failed_before, stats.duplicates = c.done, c.failed, c.duplicates
        todo = c.pending + max(0, self.last_line - line_no)
        if self.limit is not None:
            todo = min(todo, self.limit)
        stats.total = todo + c.invalid

    def _finish(self, stats: JobStats) -> None:
        c = self.counts
        stats.skipped, stats.failed_before, stats.duplicates = c.done, c.failed, c.duplicates
        pending = c.pending if self.limit is None else min(c.pending, self.limit)
        stats.total = pending + c.invalid
        stats.beyond_limit = c.pending - pending
        plan = with_limit(make_plan(self.job, c, self.config.batch), self.limit, self.config)
        self.plan = plan
        if self.job.mode == "auto" and plan.route == self.route:
            stats.why = plan.why
        log_plan(plan)
        guess = self.guess
        if guess is not None and self.opened.prefix.offset > guess.check.offset:
            guess.check.start()  # a longer prefix is to be noted: hash it meanwhile

    def drain(self) -> None:
        """Read what ``--limit`` left unread, counting it (in a thread: the engine is done
        with the iterator)."""
        if self._pairs is not None:
            for _ in self._pairs:
                pass

    def save_prefix(self) -> None:
        """Note the input's finished prefix after a complete pass without a guess (a guess
        notes it when it is settled)."""
        if self.complete and self.guess is None and self.opened.text:
            job = self.job
            save_prefix(job.output_path, job.input_path, self.opened.prefix, self.index)


MAX_SKIPPED = 50_000  # finished lines a streamed reader may skip at once (blocking the loop)
COUNTED_AT_ONCE = 200_000  # lines counted before the first request (10-20 ms); the rest after


def done_keys(index: ResumeIndex) -> int:
    """At most this many keys of ``index`` are finished (no look-up: sizes only)."""
    return len(index.ok) + len(index.failed) + (len(index.base) if index.base is not None else 0)


def plan_or_stream(
    job: JobConfig,
    config: Config,
    stop: threading.Event,
    *,
    keep: int,
    limit: int | None,
) -> Stream | tuple[JobPlan, ResumeIndex, Guess | None]:
    """The plan of a run (``plan_job(save=True)`` without waiting for the input prefix check:
    with a ``Guess``, the caller sends, then ``settle_guess``), or a ``Stream`` when the route
    is fixed without a count. Runs in the planning thread: the index is loaded and the lines
    left are counted (up to ``COUNTED_AT_ONCE``, then a thread of the ``Stream`` counts on)
    before it returns.

    The streamed reader runs on the event loop, and the finished lines it skips yield nothing
    to the engine: with more than ``MAX_SKIPPED`` finished keys and as many lines left after
    the finished prefix (a first resume of a long history without a prefix note), a stretch of
    them could hold the loop (signals, answers, the display) for seconds, so that input is
    counted first, off the loop, as before."""
    opened = open_plan(job, save=True, early=True)
    check_input(job.input_path)  # a missing input: one line and exit 2, before any request
    most = max(config.batch.threshold, MAX_SKIPPED, COUNTED_AT_ONCE)
    lines = lines_after(job.input_path, opened.start.offset, most=most)
    exact = lines <= most
    route = fixed_route(job, config, lines if exact else None, limit)
    few_done = done_keys(opened.index) <= MAX_SKIPPED
    if route is not None and (few_done or exact and lines <= MAX_SKIPPED):
        return Stream(job, config, opened, route, stop, limit, lines, exact=exact)
    return count_plan(job, config, opened, stop, keep=keep, save=True, early=True)
