"""The in-process simulator for tests: on 127.0.0.1 with an OS-chosen port, closed after use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from runner.simulator import SimSettings, Simulator

MakeSim = Callable[..., Awaitable[Simulator]]

# Batches that validate, run and finalise at once, and chat answers without latency.
INSTANT_BATCHES: dict[str, Any] = {
    "latency_mean_s": 0.0,
    "batch_validating_s": 0.0,
    "batch_in_progress_s": 0.0,
    "batch_finalizing_s": 0.0,
}


@asynccontextmanager
async def running_sim(
    *,
    clock: Callable[[], float] | None = None,
    state_dir: Path | None = None,
    **settings: Any,
) -> AsyncIterator[Simulator]:
    """A started Simulator(SimSettings(**settings)); ``sim.base_url`` and ``sim.stats`` are live.

    Closing it releases hanging requests, so a test that leaves one behind still ends quickly.
    """
    sim = Simulator(SimSettings(**settings), clock=clock, state_dir=state_dir)
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.close()
