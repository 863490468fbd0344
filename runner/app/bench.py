"""``glmrun bench CONFIG``: find the concurrency that suits an account, without wasting work.

The job's next pending URLs go through the configured endpoint (the real API or the simulator)
at each concurrency level in turn, through the ordinary realtime engine: every answer is
written to the job's output as usual, so a later run skips them. A level gets ``sample`` URLs,
by default four round trips' worth of it (``sample_for``: 4 x the level, at least 50), so a high
level is measured full rather than by one burst. Per level: requests/s (while every slot had a
URL: ``steady``), p50/p95 latency, the share of 429-type answers and the error records. The
recommendation is the level with the best throughput among those with an acceptable 429 share,
preferring the lower level when a higher one gains less than 5%. When the level above it was
throttled, the account's limit lies between the two: ``next_probe`` halves that gap a level at
a time (16 and 32 -> 24 -> 28 ...), so an account that takes 24 is not told 16.
"""

from __future__ import annotations

import asyncio
import io
import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runner.api.glm import GlmClient
from runner.app.planning import left_to_batches, not_in, pending_items, plan_job
from runner.app.signals import SignalStop, acquire_lock
from runner.app.summary import say
from runner.app.wiring import JobParts, connect, make_realtime_engine, make_writer
from runner.config.schema import Config, JobConfig
from runner.core.items import InvalidLine, Item
from runner.core.stats import JobStats
from runner.errors import ConfigError, Interrupted
from runner.io.job_files import refuse_to_start_over
from runner.io.store import ResultWriter, RunLock

ACCEPTABLE_429_SHARE = 0.05
DEFAULT_LEVELS = (4, 8, 16, 32, 64)
MIN_SAMPLE = 50
ROUND_TRIPS = 4  # a level's default sample: this many round trips of requests at that level
MAX_PROBES = 4  # levels tried between the recommended one and the throttled one above it


@dataclass
class LevelResult:
    concurrency: int
    results: int = 0  # records written (ok + error)
    ok: int = 0
    errors: int = 0
    attempts: int = 0
    throttled: int = 0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list, repr=False)
    sample: int = 0  # URLs the level was given; fewer results: the pending URLs ran out
    # (results, seconds) while every slot had a URL (``steady``); None: never more than slots
    full: tuple[int, float] | None = None

    @property
    def short(self) -> bool:
        """The level got fewer URLs than its sample: a rate from its tail, not a measure."""
        return self.results < self.sample

    @property
    def rate(self) -> float:
        """Results per second while every slot of the level had a URL (``full``), else over
        the level's whole time."""
        if self.full is not None and self.full[1] > 0:
            return self.full[0] / self.full[1]
        return self.results / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.attempts if self.attempts else 0.0

    def latency_q(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        if len(self.latencies_s) == 1:
            return self.latencies_s[0]
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[int(q * 100) - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "results": self.results,
            "ok": self.ok,
            "errors": self.errors,
            "requests": self.attempts,
            "requests_per_s": round(self.rate, 2),
            "p50_latency_s": _round(self.latency_q(0.5)),
            "p95_latency_s": _round(self.latency_q(0.95)),
            "share_429": round(self.throttled_share, 4),
            "wall_s": round(self.wall_s, 3),
            "full_s": None if self.full is None else round(self.full[1], 3),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--concurrency: expected numbers separated by commas, found {text!r}"
        ) from None
    if not levels or any(level < 1 for level in levels):
        raise ConfigError(f"--concurrency: expected numbers >= 1, found {text!r}")
    twice = sorted({level for level in levels if levels.count(level) > 1})
    if twice:  # each level's sample is paid for: measuring one twice buys nothing
        listed = ", ".join(map(str, twice))
        raise ConfigError(f"--concurrency: {listed} listed more than once in {text!r}")
    return levels


def recommend(
    levels: list[LevelResult], acceptable_share: float = ACCEPTABLE_429_SHARE
) -> LevelResult | None:
    """Best throughput with an acceptable 429 share; a lower level wins unless beaten by 5%.
    A level whose URLs ran out before its sample is compared only when no level got its
    whole sample (its few requests say little of what that concurrency sustains)."""
    usable = [lv for lv in levels if lv.results and lv.throttled_share <= acceptable_share]
    usable = [lv for lv in usable if not lv.short] or usable
    if not usable:
        return None
    best = max(usable, key=lambda lv: lv.rate)
    for lv in sorted(usable, key=lambda lv: lv.concurrency):
        if lv.rate >= 0.95 * best.rate:
            return lv
    return best


def steady(finished_at: list[float], started: float, level: int) -> tuple[int, float] | None:
    """(results, seconds) of a level while each of its ``level`` slots had a URL: from its
    start to the result after which fewer URLs than slots were left unfinished. ``finished_at``
    are the times its results came back, in order. What follows is the level's tail: its
    last round trip, and any retry the last URLs wait on (a 500 retried after a backoff of
    0.2 s made a 50-URL level at 50 ms take twice as long, and halved its rate). None when
    the level never had a round trip's worth more URLs than slots."""
    k = len(finished_at) - level
    if k < level:
        return None
    return k, finished_at[k - 1] - started


def sample_for(level: int, sample: int | None = None) -> int:
    """URLs a level gets: ``sample`` when given, else ``ROUND_TRIPS`` round trips of requests
    at that level (at least ``MIN_SAMPLE``): 50 URLs at 64 in flight are one burst, not a
    throughput."""
    return sample if sample is not None else max(MIN_SAMPLE, ROUND_TRIPS * level)


def next_probe(
    levels: list[LevelResult], acceptable_share: float = ACCEPTABLE_429_SHARE
) -> int | None:
    """The level halfway between the recommended one and the next one tried above it, when
    that one was throttled past the acceptable share (the account's limit lies between); None
    when there is no such pair or they are close (within an eighth of the lower, or 2)."""
    best = recommend(levels, acceptable_share)
    if best is None:
        return None
    above = [lv for lv in levels if lv.concurrency > best.concurrency]
    if not above:
        return None
    nearest = min(above, key=lambda lv: lv.concurrency)
    if nearest.throttled_share <= acceptable_share:
        return None  # not limited there: slower for another reason (latency, the client)
    gap = nearest.concurrency - best.concurrency
    if gap <= max(2, best.concurrency // 8):
        return None
    return best.concurrency + gap // 2


def format_table(levels: list[LevelResult]) -> str:
    head = (
        f"{'concurrency':>11} {'req/s':>8} {'p50 s':>7} {'p95 s':>7} {'429 share':>9}"
        f" {'errors':>6} {'results':>7}"
    )
    rows = [head]
    for lv in levels:
        p50, p95 = lv.latency_q(0.5), lv.latency_q(0.95)
        results = f"{lv.results}/{lv.sample}" if lv.short else str(lv.results)
        rows.append(
            f"{lv.concurrency:>11} {lv.rate:>8.1f} {_fmt(p50):>7} {_fmt(p95):>7} "
            f"{100 * lv.throttled_share:>8.1f}% {lv.errors:>6} {results:>7}"
        )
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_recommendation(
    levels: list[LevelResult], acceptable_share: float = ACCEPTABLE_429_SHARE
) -> str:
    best = recommend(levels, acceptable_share)
    if best is None:
        return (
            f"no level kept 429 answers under {100 * acceptable_share:.0f}% of requests: "
            "try lower levels (--concurrency 1,2,4) or limits.concurrency: auto"
        )
    top = max(levels, key=lambda lv: lv.concurrency)
    hint = (
        " (the highest level tried: try higher levels too)"
        if best is top and best.throttled_share == 0 and not top.short
        else ""
    )
    short = [lv for lv in levels if lv.short]
    if short:
        lv = short[0]
        hint += (
            f"; the pending URLs ran out at concurrency {lv.concurrency} ({lv.results:,} of "
            f"{lv.sample:,}): append URLs to the input to measure higher levels"
        )
    return (
        f"recommended: limits.concurrency: {best.concurrency}  ({best.rate:.1f} req/s, "
        f"{100 * best.throttled_share:.1f}% 429){hint}"
    )


def check_plot_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install matplotlib (or, in glmrun's clone, "
            "pip install -e '.[plot]')"
        ) from None


def plot(
    levels: list[LevelResult],
    path: Path,
    title: str,
    acceptable_share: float = ACCEPTABLE_429_SHARE,
) -> None:
    """Three panels on one concurrency axis: requests/s, the 429 share (which explains a drop
    in throughput) with the acceptable share, and p50/p95 latency on an axis from zero. The
    recommended level is a vertical line through all three; legends sit outside the plots so
    they hide no point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [lv.concurrency for lv in levels]
    best = recommend(levels, acceptable_share)
    fig, (top, mid, low) = plt.subplots(
        3, 1, sharex=True, figsize=(8, 7), gridspec_kw={"height_ratios": [3, 2, 3]}
    )
    top.plot(xs, [lv.rate for lv in levels], "o-", color="tab:blue", label="requests/s")
    top.set_ylabel("requests/s")
    top.set_ylim(bottom=0, top=max([lv.rate for lv in levels] + [1]) * 1.15)
    shares = [100 * lv.throttled_share for lv in levels]
    # on the log axis a bar spans x / f .. x * f, f set by its nearest neighbour, so the close
    # levels bench tried between two others (24, 26, 28) stay apart
    spans = [_span(x, xs) for x in xs]
    mid.bar(
        [x / f for x, f in zip(xs, spans, strict=True)],
        shares,
        width=[x * f - x / f for x, f in zip(xs, spans, strict=True)],
        align="edge",
        color="tab:orange",
        label="429 share",
    )
    labelled = _labelled(xs, None if best is None else best.concurrency)
    mid.axhline(
        100 * acceptable_share,
        color="grey",
        ls=":",
        label=f"acceptable ({100 * acceptable_share:.0f}%)",
    )
    for x, share in zip(xs, shares, strict=True):  # a 0% bar is invisible: say it
        if x not in labelled:
            continue  # too close to a labelled level to be read: the table has it
        mid.annotate(
            f"{share:.1f}%",
            (x, share),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="x-small",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
        )
    mid.set_ylabel("429 share (%)")
    mid.set_ylim(0, max(shares + [100 * acceptable_share]) * 1.25)
    p50 = [lv.latency_q(0.5) or 0 for lv in levels]
    p95 = [lv.latency_q(0.95) or 0 for lv in levels]
    low.plot(xs, p50, "s-", color="tab:green", label="p50 latency")
    low.plot(xs, p95, "^--", color="tab:red", label="p95 latency")
    low.set_ylabel("latency (s)")
    low.set_ylim(bottom=0, top=max(p95 + [0.001]) * 1.15)
    low.set_xscale("log", base=2)
    low.set_xticks(xs, [str(x) if x in labelled else "" for x in xs])
    low.minorticks_off()
    low.set_xlabel("concurrency")
    for ax in (top, mid, low):
        if best is not None:
            ax.axvline(
                best.concurrency,
                color="black",
                ls="--",
                lw=1,
                label=f"recommended: {best.concurrency}",
            )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    top.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _span(x: int, xs: list[int]) -> float:
    """Half a bar's width on the log axis, as a factor: 0.35 of the way (in log terms) to the
    nearest other level, at most 1.35 (a lone level)."""
    ratios = [max(x, o) / min(x, o) for o in xs if o != x]
    return min([1.35] + [math.pow(r, 0.35) for r in ratios])


def _labelled(xs: list[int], best: int | None, apart: float = 1.25) -> set[int]:
    """The levels whose numbers are printed on the axis: the recommended one first, then the
    others in order, each at least ``apart`` times from every one already labelled."""
    chosen: set[int] = set()
    for x in ([best] if best is not None else []) + sorted(xs):
        if all(max(x, c) / min(x, c) >= apart for c in chosen):
            chosen.add(x)
    return chosen


def take(
    pending: Iterator[tuple[int, Item | InvalidLine]], n: int
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """The next ``n`` sendable items (invalid lines pass through and are recorded as usual)."""
    taken = 0
    while taken < n:
        try:
            h, item = next(pending)
        except StopIteration:
            return
        if isinstance(item, Item):
            taken += 1
        yield h, item


async def bench(
    config: Config,
    *,
    job_name: str | None = None,
    sample: int | None = None,
    levels: list[int] | None = None,
    plot_path: Path | None = None,
    out: IO[str] | None = None,
    quiet: bool = False,
    refine: bool = True,
) -> list[LevelResult]:
    """Each level in turn, then (``refine``) the levels between the recommended one and the
    throttled one above it, a progress line each (not with ``quiet``); then the table, in
    order of concurrency, and the recommendation: the result, printed even with ``quiet``."""
    out = out or sys.stdout
    progress = io.StringIO() if quiet else out
    levels = list(levels or DEFAULT_LEVELS)
    job = config.one_job(job_name)
    if plot_path is not None:
        check_plot_available()
    stopper = SignalStop(config.run.grace_s)
    stopper.install()
    results: list[LevelResult] = []
    lock = RunLock(job.output_path)
    try:
        await acquire_lock(lock, wait=False, stop=stopper.event)
        try:
            refuse_to_start_over(job)  # an output gone while its index remembers it
            most = sum(sample_for(lv, sample) for lv in levels)
            most += MAX_PROBES * sample_for(max(levels), sample) if refine else 0
            plan, index = plan_job(job, config, keep=most)
            # lines in the job's batches still running are theirs: sending them here would
            # pay for them twice (as a run's realtime route leaves them)
            held = left_to_batches(job)
            per = f"{sample} URLs" if sample is not None else f"{ROUND_TRIPS} round trips"
            theirs = f" ({len(held):,} in batches still running, left to them)" if held else ""
            header = (
                f"{job.name}: {plan.pending:,} pending{theirs}; concurrency "
                f"{','.join(map(str, levels))}, {per} each"
            )
            say(header, progress)
            pending = not_in(pending_items(job, config, plan, index), held)
            async with connect(config, connections=max(levels)) as client:
                writer = make_writer(job)
                stopper.writers.append(writer)
                try:
                    queue, probes = list(levels), 0
                    while queue and not stopper.event.is_set():
                        level = queue.pop(0)
                        result = await _run_level(
                            job,
                            config,
                            client,
                            writer,
                            stopper.event,
                            level,
                            take(pending, sample_for(level, sample)),
                        )
                        result.sample = sample_for(level, sample)
                        if result.results == 0:
                            say(_none_left(job.name, level, results), out)
                            break
                        results.append(result)
                        tried = [lv.concurrency for lv in results]
                        between = (
                            f" (between {max(c for c in tried if c < level)} and "
                            f"{min(c for c in tried if c > level)})"
                            if level not in levels
                            else ""
                        )
                        print(
                            f"  concurrency {level}: {result.rate:.1f} req/s{between}",
                            file=progress,
                            flush=True,
                        )
                        probe = next_probe(results) if refine and not queue else None
                        if probe is not None and probes < MAX_PROBES:
                            queue.append(probe)
                            probes += 1
                finally:
                    writer.close()
                    stopper.writers.remove(writer)
        finally:
            lock.release()
    finally:
        stopper.uninstall()
    if stopper.signame is not None:
        raise Interrupted(stopper.signame)
    results.sort(key=lambda lv: lv.concurrency)
    if results:
        print(format_table(results), file=out)
        say(format_recommendation(results), out)
        if plot_path is not None:
            plot(results, plot_path, f"glmrun bench: {job.name}")
            print(f"plot written to {plot_path}", file=out)
    return results


def _none_left(job: str, level: int, results: list[LevelResult]) -> str:
    if not results:
        return (
            f"{job}: no pending URLs to measure with (bench sends the job's pending URLs, and "
            "every one is done): append new URLs to its input, or bench another job"
        )
    return f"no pending URLs left for concurrency {level}: the table stops before it"


async def _run_level(
    job: JobConfig,
    config: Config,
    client: GlmClient,
    writer: ResultWriter,
    stop: asyncio.Event,
    level: int,
    items: Iterator[tuple[int, Item | InvalidLine]],
) -> LevelResult:
    result = LevelResult(level)
    stats = JobStats(job.name)
    finished_at: list[float] = []  # when each answer that ends a URL came back

    def on_result(verdict: str, latency_s: float) -> None:
        result.attempts += 1
        if verdict == "ok":
            result.latencies_s.append(latency_s)
        elif verdict == "throttle":
            result.throttled += 1
        if verdict in ("ok", "record"):
            finished_at.append(time.monotonic())

    parts = JobParts(job, config, client, writer, stats, stop)
    engine = make_realtime_engine(parts, concurrency=level, on_result=on_result)
    started = time.monotonic()
    await engine.run(items)
    result.wall_s = time.monotonic() - started
    # invalid input lines are recorded as usual but never sent: no answer of this level
    result.ok, result.errors = stats.ok, stats.errors - stats.invalid
    result.results = stats.ok + result.errors
    result.full = steady(finished_at, started, level)
    return result
