"""Helpers for the batch engine tests: a config on disk, a simulator, one batch run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from runner.api.glm import GlmClient
from runner.app.planning import plan_job
from runner.app.wiring import make_fallback
from runner.clock import FakeClock
from runner.config import Config, Secret, load_config
from runner.core.plan import iter_pending
from runner.core.stats import JobStats
from runner.engine.batch import run_batch_job
from runner.io.prepare import read_job_items
from runner.io.store import RunLock
from runner.simulator import SimSettings, Simulator


class Crash(Exception):
    """Stands for a kill: raised by CrashingClient between two driver steps."""


def urls(n: int, prefix: str = "https://img.example/p") -> list[str]:
    return [f"{prefix}/{i:06d}.jpg" for i in range(n)]


def write_config(
    tmp_path: Path,
    items: list[str],
    *,
    base_url: str = "simulator",
    mode: str = "batch",
    simulator: dict[str, Any] | None = None,
    input_name: str = "urls.txt",
    **batch: Any,
) -> Path:
    """A config with one job over ``items`` (lines of the input); batch keys default to fast test values."""
    (tmp_path / input_name).write_text("".join(u + "\n" for u in items))
    data = {
        "api": {"base_url": base_url},
        "limits": {"concurrency": 8},
        "retry": {"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.05},
        "batch": {"poll_interval_s": 0, **batch},
        "simulator": simulator
        or {
            "latency_mean_s": 0.0,
            "batch_validating_s": 0.0,
            "batch_in_progress_s": 0.0,
            "batch_finalizing_s": 0.0,
        },
        "jobs": [
            {
                "name": "j",
                "input": input_name,
                "output": "out/results.jsonl",
                "model": "glm-4v-plus-0111",
                "prompt": "Describe.",
                "mode": mode,
            }
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_bytes(orjson.dumps(data))
    return path


def read_records(config: Config) -> list[dict[str, Any]]:
    path = config.jobs[0].output_path
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out[r.get("key", r["url"])] = r
    return out


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
    sim: Simulator
    clock: FakeClock


async def start_sim(clock: FakeClock | None = None, **settings: Any) -> SimBox:
    clock = clock or FakeClock()
    fields = {
        "latency_mean_s": 0.0,
        "batch_validating_s": 0.0,
        "batch_in_progress_s": 0.0,
        "batch_finalizing_s": 0.0,
    }
    fields.update(settings)
    sim = Simulator(SimSettings(**fields), clock=lambda: clock.now)
    await sim.start()
    return SimBox(sim, clock)


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
            return await run_batch_job(
                plan,
                pending,
                config,
                use,
                stats,
                stop,
                no_wait=no_wait,
                fallback=lambda writer: make_fallback(job, config, use, writer, stats, stop),
                clock=box.clock,
            )


def load(config_path: Path) -> Config:
    return load_config(config_path)
