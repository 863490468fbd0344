"""The realtime fallback of ``batch.on_failure: realtime``: the one place the batch path builds
a realtime engine (with the job's client, writer, stats and stop event).
"""

from __future__ import annotations

import asyncio
import logging

from runner.api.glm import GlmClient
from runner.config.schema import Config, JobConfig
from runner.core.stats import JobStats
from runner.engine.batch.driver import Fallback
from runner.engine.realtime import RealtimeDeps, RealtimeEngine
from runner.engine.throttle import Throttle
from runner.io.inputs import Item
from runner.io.store import ResultWriter

log = logging.getLogger(__name__)


def realtime_fallback(
    job: JobConfig,
    config: Config,
    client: GlmClient,
    writer: ResultWriter,
    stats: JobStats,
    stop: asyncio.Event,
) -> Fallback:
    """on_failure: realtime -> send the items through the realtime engine with the same client."""

    async def send(items: list[tuple[int, Item]]) -> None:
        concurrency = config.limits.concurrency
        limit = 4 if concurrency == "auto" else concurrency
        deps = RealtimeDeps(
            client=client,
            writer=writer,
            throttle=Throttle(limit, rpm=config.limits.rpm, tpm=config.limits.tpm),
            retry=config.retry,
            stats=stats,
            stop=stop,
            flush_interval_s=config.run.flush_interval_s,
        )
        log.info("batch fallback to realtime", extra={"job": job.name, "items": len(items)})
        await RealtimeEngine(job, deps).run(items)

    return send
