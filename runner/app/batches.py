"""The work behind ``glmrun batches``: list, cancel and look up the batches glmrun tracks.

State comes from ``io.batch_state``, transitions from ``core.batch_states.next_state``, the
client from ``app.wiring``; the command line only parses and prints. A job run as shards has
a state file per shard (``runner.io.job_files.job_parts``); each is listed and cancelled under
that shard's lock, its rows named ``job shard I/N``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from runner.api.glm import GlmClient
from runner.app.wiring import connect
from runner.config.schema import Config, JobConfig
from runner.core.batch_names import batch_metadata
from runner.core.batch_states import (
    MAY_HAVE_BATCH,
    TERMINAL_STATUSES,
    BatchSeen,
    BatchView,
    CancelAsked,
    CancelChecked,
    ChunkState,
    Ended,
    Running,
    chunk_of,
    describe,
    next_state,
)
from runner.core.retry import Verdict, classify
from runner.engine.batch.lookup import find_batch
from runner.errors import ApiFailure, ApiStopped, ComeBackLater, GlmrunError
from runner.io.batch_state import (
    JobState,
    chunk_view,
    load_state,
    owned_state,
    save_state,
    saved_at,
    state_path,
)
from runner.io.job_files import job_parts
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
    for job in (part for j in jobs for part in job_parts(j)):
        path = state_path(job)
        state = owned_state(job)
        if state is None:
            continue
        at = saved_at(path)
        for chunk in state.chunks:
            d = chunk_view(chunk, at)
            polled = d.pop("polled_at")
            d["polled"] = time.strftime("%H:%M:%S", time.localtime(polled)) if polled else None
            rows.append({"job": _label(job), **d})
    return rows


def _label(job: JobConfig) -> str:
    return job.name if job.shard is None else f"{job.name} shard {job.shard}"


async def cancel(config: Config, job_name: str | None) -> list[str]:
    """Cancel the jobs' in-flight batches and drop chunks not submitted yet, under each job's
    (or shard's) lock; one line per job or shard says what happened.

    A chunk caught mid-create (Uploading, Uploaded, Creating) may have a batch glmrun never
    heard of: the account's batches are listed by the chunk's metadata first. A batch found is
    cancelled and tracked like any cancelled one (the next run collects its partial results);
    only a chunk with no batch in the list is dropped. When the listing keeps failing the chunk
    stays as it is and the command ends with exit 75."""

    async def cancel_all(client: GlmClient) -> list[str]:
        lines = []
        for whole in config.select(job_name):
            parts = [p for p in job_parts(whole) if state_path(p).exists()]
            if not parts:
                lines.append(f"{whole.name}: no tracked batches")
            for job in parts:
                lines.append(await cancel_part(client, job))
        return lines

    async def cancel_part(client: GlmClient, job: JobConfig) -> str:
        path = state_path(job)
        state = load_state(path)
        if state is None:
            return f"{_label(job)}: no tracked batches"
        if not state.belongs_to(job):
            return (
                f"{_label(job)}: the batches in {job.work_dir} are those of {state.output} (this"
                " job's output before, or another config's job of this name): cancel them with"
                f" the config that writes {state.output}"
            )
        lock = RunLock(job.output_path)
        # a run that waits for its batches holds the lock for hours: say how to get past it
        lock.acquire(advice="stop that run first (its batches keep running), then cancel again")
        try:
            remote = local = ended = already = 0
            failed: list[str] = []
            unknown: list[str] = []
            for i, chunk in enumerate(state.chunks):
                if isinstance(chunk, MAY_HAVE_BATCH):
                    try:
                        view = await _lookup(client, config, job, state, chunk)
                    except ApiFailure as failure:
                        unknown.append(f"chunk {chunk.chunk.index} ({failure.message[:120]})")
                        continue
                    new = next_state(chunk, CancelChecked(view), time.monotonic())
                else:
                    new = next_state(chunk, CancelAsked(), time.monotonic())
                if new == chunk:
                    if isinstance(chunk, Running) and chunk.cancel_requested:
                        already += 1  # an earlier cancel asked; the API is still at it
                    continue
                if isinstance(new, Running):
                    try:
                        answer = await client.cancel_batch(new.batch_id)
                    except ApiFailure as failure:
                        failed.append(f"{new.batch_id} ({failure.message[:120]})")
                        if not isinstance(chunk, Running):
                            state.chunks[i] = new  # found: tracked, even if not cancelled
                        continue
                    if answer.get("status") in TERMINAL_STATUSES:
                        ended += 1  # it had finished: the next run collects what it did
                    else:
                        remote += 1
                elif isinstance(new, Ended) and new.batch_id is not None:
                    ended += 1  # found already finished: collected by the next run
                else:
                    local += 1
                state.chunks[i] = new
            state.cancelled = True
            save_state(path, state)
        finally:
            lock.release()
        if failed:
            raise GlmrunError(f"{_label(job)}: could not cancel {', '.join(failed)}")
        if unknown:
            raise ComeBackLater(
                f"{_label(job)}: cannot tell whether {', '.join(unknown)} has a batch; "
                "it stays tracked: run the same command again later"
            )
        return _cancelled_line(_label(job), remote, ended, local, already)

    return await with_client(config, cancel_all)


def _cancelled_line(label: str, remote: int, ended: int, local: int, already: int = 0) -> str:
    """What ``batches cancel`` did to a job: batches still running are cancelled (their unrun
    lines go to a later run); batches the API answered as finished were past cancelling, and
    the next run collects all they did; chunks never submitted are dropped. Batches an earlier
    cancel already asked about are not asked again, and the line says so."""
    if already and not (remote or ended or local):
        batches = f"{already} running batch{'' if already == 1 else 'es'}"
        return (
            f"{label}: cancel already requested for {batches} (not asked again); the next "
            "run collects what they finished"
        )
    parts = []
    if remote or not (ended or already):
        parts.append(f"cancel requested for {remote} running batch{'' if remote == 1 else 'es'}")
    if already:
        parts.append(f"{already} already cancelling")
    if ended:
        had = f"{ended} batch{' had' if ended == 1 else 'es had'}"
        parts.append(f"{had} finished already (the next run collects them)")
    parts.append(f"{local} chunk{'' if local == 1 else 's'} not submitted dropped")
    then = (
        "; the next run collects what they finished, and a later run sends the rest again"
        if remote
        else ""
    )
    return f"{label}: {'; '.join(parts)}{then}"


async def _lookup(
    client: GlmClient, config: Config, job: JobConfig, state: JobState, chunk: ChunkState
) -> BatchView | None:
    """The chunk's batch in the account's list, or None; the list call is retried with backoff
    (``retry.max_attempts``); the last failure is raised, a refused account at once."""
    meta = batch_metadata(job, state.tag, state.config_hash, chunk_of(chunk))
    file_id = getattr(chunk, "file_id", None)
    attempt = 0
    while True:
        attempt += 1
        try:
            obs = await find_batch(client, file_id, meta, job.name)
        except ApiFailure as failure:
            if classify(failure).verdict is Verdict.STOP and failure.status != 404:
                raise api_error("cannot list batches", failure) from None
            if attempt >= config.retry.max_attempts:
                raise
            await asyncio.sleep(
                config.retry.delay_s(attempt, random.Random(), retry_after_s=failure.retry_after_s)
            )
            continue
        return obs.view if isinstance(obs, BatchSeen) else None


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
    for job in (part for j in config.jobs for part in job_parts(j)):
        state = owned_state(job)
        for chunk in state.chunks if state else []:
            d = describe(chunk)
            if d["batch_id"] == batch_id:
                yield _label(job), d
