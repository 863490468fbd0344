"""The work behind ``glmrun batches``: list, cancel and look up the batches glmrun tracks.

State comes from ``io.batch_state``, transitions from ``core.batch_states.next_state``, the
client from ``app.wiring``; the command line only parses and prints.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from runner.api.glm import GlmClient
from runner.app.wiring import connect
from runner.config.schema import Config, JobConfig
from runner.core.batch_states import CancelAsked, Running, describe, next_state
from runner.core.retry import Verdict, classify
from runner.errors import ApiFailure, ApiStopped, GlmrunError
from runner.io.batch_state import chunk_view, load_state, save_state, saved_at, state_path
from runner.io.store import RunLock

T = TypeVar("T")


async def with_client(config: Config, fn: Callable[[GlmClient], Awaitable[T]]) -> T:
    """Call ``fn(client)`` against the config's API (the embedded simulator keeps its state
    in the same folder as ``glmrun run`` uses, so it shows the same batches)."""
    async with connect(config) as client:
        return await fn(client)


def api_error(what: str, failure: ApiFailure) -> GlmrunError:
    """``ApiStopped`` (exit 3) when retrying cannot help, else a plain ``GlmrunError``."""
    decision = classify(failure)
    if decision.verdict is Verdict.STOP and failure.status != 404:
        return ApiStopped(f"{what}: {failure.message}", code=decision.code, status=failure.status)
    return GlmrunError(f"{what}: {failure.message}")


async def list_remote(config: Config, *, after: str | None, limit: int) -> dict[str, Any]:
    """One page of the account's batches, as the API returns it."""

    async def fetch(client: GlmClient) -> dict[str, Any]:
        try:
            return await client.list_batches(after=after, limit=limit)
        except ApiFailure as failure:
            raise api_error("cannot list batches", failure) from None

    return await with_client(config, fetch)


def tracked_rows(jobs: list[JobConfig]) -> list[dict[str, Any]]:
    """One row per chunk in the jobs' state files: the job's name and the chunk's fields."""
    rows = []
    for job in jobs:
        path = state_path(job)
        state = load_state(path)
        if state is None:
            continue
        at = saved_at(path)
        for chunk in state.chunks:
            d = chunk_view(chunk, at)
            polled = d.pop("polled_at")
            d["polled"] = time.strftime("%H:%M:%S", time.localtime(polled)) if polled else None
            rows.append({"job": job.name, **d})
    return rows


async def cancel(config: Config, job_name: str | None) -> list[str]:
    """Cancel the jobs' in-flight batches and drop chunks not submitted yet, under each job's
    lock; one line per job says what happened."""

    async def cancel_all(client: GlmClient) -> list[str]:
        lines = []
        for job in config.select(job_name):
            path = state_path(job)
            state = load_state(path)
            if state is None:
                lines.append(f"{job.name}: no tracked batches")
                continue
            lock = RunLock(job.output_path)
            lock.acquire()
            try:
                remote = local = 0
                failed: list[str] = []
                for i, chunk in enumerate(state.chunks):
                    new = next_state(chunk, CancelAsked(), time.monotonic())
                    if new == chunk:
                        continue
                    if isinstance(chunk, Running):
                        try:
                            await client.cancel_batch(chunk.batch_id)
                        except ApiFailure as failure:
                            failed.append(f"{chunk.batch_id} ({failure.message[:120]})")
                            continue
                        remote += 1
                    else:
                        local += 1
                    state.chunks[i] = new
                state.cancelled = True
                save_state(path, state)
            finally:
                lock.release()
            lines.append(
                f"{job.name}: cancel requested for {remote} running batch(es); "
                f"{local} chunk(s) not submitted dropped"
            )
            if failed:
                raise GlmrunError(f"{job.name}: could not cancel {', '.join(failed)}")
        return lines

    return await with_client(config, cancel_all)


async def get_batch(config: Config, batch_id: str) -> dict[str, Any]:
    """One batch as the API returns it."""

    async def fetch(client: GlmClient) -> dict[str, Any]:
        try:
            return await client.get_batch(batch_id)
        except ApiFailure as failure:
            raise api_error(f"batch {batch_id}", failure) from None

    return await with_client(config, fetch)


def chunks_tracking(config: Config, batch_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(job name, chunk fields) for each chunk of the config's jobs that tracks ``batch_id``."""
    for job in config.jobs:
        state = load_state(state_path(job))
        for chunk in state.chunks if state else []:
            d = describe(chunk)
            if d["batch_id"] == batch_id:
                yield job.name, d
