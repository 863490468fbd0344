"""Helpers for the batch engine tests: their config, a client that crashes on cue, one batch run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.api.glm import GlmClient
from runner.app.planning import plan_job
from runner.app.wiring import JobParts, make_batch_deps, make_writer
from runner.clock import FakeClock
from runner.config import Config, Secret, load_config
from runner.core.plan import iter_pending
from runner.core.stats import JobStats
from runner.engine.batch import run_batch_job
from runner.io.prepare import read_job_items
from runner.io.store import RunLock
from runner.simulator import Simulator
from tests.support.configs import make_urls


class Crash(Exception):
    """Stands for a kill: raised by CrashingClient between two driver steps."""


def urls(n: int, prefix: str = "https://img.example/p") -> list[str]:
    return make_urls(n, prefix=prefix, digits=6)


class CrashingClient:
    """Proxies a GlmClient; the ``after``-th call of ``method`` completes, then raises Crash."""

    def __init__(self, client: GlmClient, method: str, after: int = 1, *, before: bool = False):
        self._client = client
        self.method = method
        self.after = after
        self.before = before
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != self.method:
            return attr

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.before and self.calls >= self.after:
                raise Crash(name)
            result = await attr(*args, **kwargs)
            if self.calls >= self.after:
                raise Crash(name)
            return result

        return wrapped


@dataclass
class SimBox:
    """A simulator whose batch phases run on ``clock``: advance ``clock.now`` to move them on."""

    sim: Simulator
    clock: FakeClock


StartBatchSim = Callable[..., Awaitable[SimBox]]


async def run_batch(
    config_path: Path,
    box: SimBox,
    *,
    wrap: Callable[[GlmClient], Any] | None = None,
    no_wait: bool = False,
    stop: asyncio.Event | None = None,
) -> JobStats:
    """One batch run of the config's job against ``box`` (the caller's run, lock held)."""
    config = load_config(config_path)
    job = config.jobs[0]
    plan, index = plan_job(job, config)
    pending = iter_pending(read_job_items(job, config), index)
    stats = JobStats(job.name)
    async with GlmClient(box.sim.base_url, Secret("")) as client:
        use = wrap(client) if wrap else client
        with RunLock(job.output_path):
            stop = stop or asyncio.Event()
            writer = make_writer(job, stats=stats)
            parts = JobParts(job, config, use, writer, stats, stop)
            try:
                deps = make_batch_deps(parts, no_wait=no_wait, clock=box.clock)
                return await run_batch_job(plan, pending, config, deps)
            finally:
                writer.close()


def load(config_path: Path) -> Config:
    return load_config(config_path)


def output_path(config_path: Path) -> Path:
    """Where the config's (only) job writes its records."""
    return load(config_path).jobs[0].output_path
