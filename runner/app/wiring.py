"""The one place that builds the real pieces: API client, simulator, throttles, writers, engines.

``run``, ``bench``, ``batches`` and the batch path's realtime fallback all get their pieces
here, so a setting such as ``api.auth: jwt`` or ``limits.tpm`` reaches every command (when
each built its own client, ``bench`` and ``batches`` sent the raw key with ``auth: jwt``).
Engines never construct anything: they receive what is built here, which is also what lets
tests hand them fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.api.glm import GlmClient
from runner.api.protocol import ApiClient
from runner.clock import SYSTEM_CLOCK, Clock
from runner.config.schema import Config, JobConfig
from runner.core.adaptive import AdaptiveLimit
from runner.core.items import Item
from runner.core.stats import JobStats
from runner.engine.realtime import RealtimeDeps, RealtimeEngine
from runner.engine.throttle import AdaptiveGate, Throttle
from runner.errors import ConfigError
from runner.io.store import ResultWriter

if TYPE_CHECKING:  # the batch engine is imported by a batch run only
    from runner.engine.batch.driver import BatchDeps, Fallback
    from runner.simulator.settings import SimSettings

log = logging.getLogger(__name__)

OnResult = Callable[[str, float], None]
FALLBACK_AUTO_CONCURRENCY = 4  # with concurrency: auto, the fallback's fixed gate


def simulator_state_dir(config: Config) -> Path:
    """Where the embedded simulator keeps its files and batches between runs.

    Beside the config's *first* job, not the selected one: ``--job b --no-wait`` and a later
    run of all jobs (or ``glmrun batches``) must see the same batches."""
    return config.jobs[0].output_path.parent / ".glmrun" / "simulator"


def simulator_settings(config: Config) -> SimSettings:
    """The ``simulator:`` section as the embedded simulator takes it; a misspelt knob is a
    ConfigError (``--dry-run`` asks too, so it fails there as the run would)."""
    from runner.simulator import settings_from_dict  # only when it is used

    try:
        return settings_from_dict(config.simulator)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{config.path}: simulator.{exc}") from None


@contextlib.asynccontextmanager
async def api_base_url(config: Config, state_dir: Path | None = None) -> AsyncIterator[str]:
    """The base URL to talk to; ``simulator`` starts the embedded simulator for the block."""
    if not config.api.is_simulator:
        yield config.api.base_url
        return
    from runner.simulator import Simulator  # only when it is used

    sim = Simulator(simulator_settings(config), state_dir=state_dir or simulator_state_dir(config))
    base_url = await sim.start()
    try:
        yield base_url
    finally:
        await sim.close()


def max_connections(config: Config) -> int:
    """Pool size: the most requests the run can have in flight."""
    c = config.limits.concurrency
    return config.limits.max_concurrency if c == "auto" else max(c, 1)


def make_client(
    config: Config, base_url: str, *, connections: int | None = None, clock: Clock = SYSTEM_CLOCK
) -> GlmClient:
    """The API client, with every ``api.*`` setting applied (auth, timeouts, JWT lifetime)."""
    try:
        return GlmClient(
            base_url,
            config.api_key,
            timeout_s=config.api.timeout_s,
            connect_timeout_s=config.api.connect_timeout_s,
            max_connections=connections or max_connections(config),
            auth=config.api.auth,
            jwt_ttl_s=config.api.jwt_ttl_s,
            clock=clock,
        )
    except ValueError as exc:  # api.auth: jwt with a key that is not <id>.<secret>
        raise ConfigError(
            f"{config.path}: {exc} (the key in {config.api.api_key_env}); "
            "use auth: bearer for plain keys"
        ) from None


@contextlib.asynccontextmanager
async def connect(
    config: Config, *, state_dir: Path | None = None, connections: int | None = None
) -> AsyncIterator[GlmClient]:
    """An open client for the config's API (starting the embedded simulator if it is one)."""
    async with (
        api_base_url(config, state_dir) as base_url,
        make_client(config, base_url, connections=connections) as client,
    ):
        yield client


def make_writer(job: JobConfig, *, stats: JobStats | None = None) -> ResultWriter:
    """The job's single appender (one writer owns the output file); ``stats`` tallies its
    error records by code for the summary."""
    return ResultWriter(job.output_path, on_record=None if stats is None else stats.note_record)


def make_throttle(
    config: Config, stats: JobStats, *, concurrency: int | None = None, clock: Clock = SYSTEM_CLOCK
) -> tuple[Throttle, int, AdaptiveGate | None]:
    """The gate for a realtime run and how many workers feed it.

    ``concurrency`` overrides ``limits.concurrency`` (bench levels, the batch fallback). With
    ``auto``, the workers are sized for the ceiling and the adaptive controller moves the
    gate's limit from every answer and on its own timer (the returned ``AdaptiveGate``; close
    it when the run ends)."""
    limits = config.limits
    fixed = concurrency if concurrency is not None else limits.concurrency
    if fixed != "auto":
        stats.concurrency = fixed
        throttle = Throttle(
            fixed, rpm=limits.rpm, tpm=limits.tpm, monotonic=clock.monotonic, sleep=clock.sleep
        )
        return throttle, fixed, None
    controller = AdaptiveLimit(max_limit=limits.max_concurrency)
    throttle = Throttle(
        controller.limit,
        rpm=limits.rpm,
        tpm=limits.tpm,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    stats.note_limit(controller.limit, clock.monotonic())

    def on_change(limit: int) -> None:
        stats.note_limit(limit, clock.monotonic())

    gate = AdaptiveGate(controller, throttle, monotonic=clock.monotonic, on_change=on_change)
    return throttle, limits.max_concurrency, gate


@dataclass(frozen=True)
class JobParts:
    """What one job's engines are built around: the realtime engine of a run or a bench level,
    and the batch path with its realtime fallback (both on the job's one writer and stats)."""

    job: JobConfig
    config: Config
    client: ApiClient
    writer: ResultWriter
    stats: JobStats
    stop: asyncio.Event


def make_realtime_engine(
    parts: JobParts,
    *,
    concurrency: int | None = None,
    on_result: OnResult | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> RealtimeEngine:
    """A realtime engine for ``job`` under the config's limits and retry policy.

    ``on_result`` is called with every answer's verdict and latency besides the adaptive
    controller's own (bench counts attempts and throttles with it)."""
    job, config, stats = parts.job, parts.config, parts.stats
    throttle, workers, gate = make_throttle(config, stats, concurrency=concurrency, clock=clock)
    adaptive = None if gate is None else gate.on_result
    callbacks = [cb for cb in (adaptive, on_result) if cb is not None]

    def on_any(verdict: str, latency_s: float) -> None:
        for cb in callbacks:
            cb(verdict, latency_s)

    def finish(gate: AdaptiveGate) -> None:
        gate.close()
        stats.note_limit(stats.concurrency, clock.monotonic())  # the last limit's time counts

    deps = RealtimeDeps(
        client=parts.client,
        writer=parts.writer,
        throttle=throttle,
        retry=config.retry,
        stats=stats,
        stop=parts.stop,
        flush_interval_s=config.run.flush_interval_s,
        workers=workers,
        on_result=(callbacks[0] if len(callbacks) == 1 else on_any) if callbacks else None,
        on_finish=None if gate is None else functools.partial(finish, gate),
        clock=clock,
    )
    return RealtimeEngine(job, deps)


def make_fallback(parts: JobParts) -> Fallback:
    """``batch.on_failure: realtime``: lines that did not run in a batch go through a realtime
    engine with the batch job's client, writer, stats and stop event (so ``limits.rpm`` and
    ``limits.tpm`` hold there too). Returns how many got a record: fewer than given when the
    run was stopped meanwhile (the rest are pending for the next run)."""
    c = parts.config.limits.concurrency
    concurrency = FALLBACK_AUTO_CONCURRENCY if c == "auto" else c

    async def send(items: list[tuple[int, Item]]) -> int:
        engine = make_realtime_engine(parts, concurrency=concurrency)
        log.info("batch fallback to realtime", extra={"job": parts.job.name, "items": len(items)})
        await engine.run(items)
        return engine.recorded

    return send


def make_batch_deps(
    parts: JobParts, *, no_wait: bool = False, clock: Clock = SYSTEM_CLOCK, adopted: bool = False
) -> BatchDeps:
    """What the batch path runs with: the job's client, writer, stats and stop event, and the
    realtime fallback around the same writer (used when ``batch.on_failure`` is ``realtime``)."""
    from runner.engine.batch.driver import BatchDeps  # a realtime run never imports it

    return BatchDeps(
        client=parts.client,
        writer=parts.writer,
        stats=parts.stats,
        stop=parts.stop,
        clock=clock,
        no_wait=no_wait,
        fallback=make_fallback(parts),
        adopted_now=adopted,
    )
