"""Engine fixtures: the realtime engine against a simulator with an injected sleep (no real
waiting), and simulators whose batches run on a FakeClock."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.api.glm import GlmClient
from runner.clock import FakeClock
from runner.config import Config, load_config
from runner.core.plan import PendingCounts, iter_pending
from runner.core.stats import JobStats
from runner.engine.realtime import RealtimeDeps, RealtimeEngine
from runner.engine.throttle import Throttle
from runner.errors import ApiStopped
from runner.io.inputs import read_items
from runner.io.store import ResultWriter, load_resume_index
from runner.simulator import Simulator
from tests.engine.batch_support import SimBox, StartBatchSim
from tests.support.configs import ENV, write_config
from tests.support.records import read_records
from tests.support.sim import INSTANT_BATCHES, MakeSim


@dataclass
class EngineRun:
    config: Config
    stats: JobStats
    records: list[dict[str, Any]]  # the whole output file, read back
    sleeps: list[float]  # every backoff the engine asked for
    stopped: ApiStopped | None = None
    counts: PendingCounts = field(default_factory=PendingCounts)

    def by_url(self) -> dict[str, dict[str, Any]]:
        return {r["url"]: r for r in self.records}


class EngineRunner:
    """``await run(urls, concurrency=, max_attempts=, rpm=, ...)``: one engine run on
    ``tmp_path``."""

    def __init__(self, tmp_path: Path, sim: Simulator):
        self.tmp_path = tmp_path
        self.sim = sim

    async def __call__(
        self,
        urls: Iterable[str] | None = None,
        *,
        concurrency: int = 4,
        max_attempts: int = 5,
        rpm: int | None = None,
        timeout_s: float = 5.0,
        seed: int = 0,
        write_input: bool = True,
    ) -> EngineRun:
        path = self.tmp_path / "config.yaml"
        if write_input or not path.exists():
            path = write_config(
                self.tmp_path,
                urls,
                api={"base_url": self.sim.base_url, "timeout_s": timeout_s},
                limits={"concurrency": concurrency, **({"rpm": rpm} if rpm else {})},
                retry={"max_attempts": max_attempts, "base_delay_s": 0.5, "max_delay_s": 30},
            )
        config = load_config(path, environ=ENV)
        job = config.jobs[0]
        counts = PendingCounts()
        pending = iter_pending(
            read_items(job.input_path), load_resume_index(job.output_path), counts
        )
        clock = FakeClock()
        stats = JobStats(job.name)
        stopped = None
        async with GlmClient(self.sim.base_url, config.api_key, timeout_s=timeout_s) as client:
            writer = ResultWriter(job.output_path)
            deps = RealtimeDeps(
                client=client,
                writer=writer,
                throttle=Throttle(concurrency, rpm=rpm),
                retry=config.retry,
                stats=stats,
                sleep=clock.sleep,
                rng=random.Random(seed),
            )
            try:
                await RealtimeEngine(job, deps).run(pending)
            except ApiStopped as exc:
                stopped = exc
            finally:
                writer.close()
        return EngineRun(
            config, stats, read_records(job.output_path), clock.sleeps, stopped, counts
        )


@pytest.fixture
def run_engine(tmp_path: Path, sim: Simulator) -> EngineRunner:
    """Run the realtime engine on ``tmp_path`` against the ``sim`` fixture."""
    return EngineRunner(tmp_path, sim)


@pytest.fixture
def start_batch_sim(start_sim: MakeSim) -> StartBatchSim:
    """``await start_batch_sim(clock=None, **settings)``: a simulator with instant batches (unless
    set) and no latency whose clock is a FakeClock; closed after the test."""

    async def start(clock: FakeClock | None = None, **settings: Any) -> SimBox:
        clock = clock or FakeClock()
        sim = await start_sim(clock=lambda: clock.now, **{**INSTANT_BATCHES, **settings})
        return SimBox(sim, clock)

    return start
