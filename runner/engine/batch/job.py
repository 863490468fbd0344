"""One job's whole batch path: recover or start its state, build chunks, drive them to the end.

A job with no state file first asks the account for batches of a run whose work folder is
gone (``adopt``): they start the new state, so their lines are not built again.

``run_batch_job`` is what ``runner.app.orchestrate`` calls (the caller holds the job's output
lock). Lines already in a tracked chunk are not built again; invalid input lines become error
records here, as on the realtime path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from runner.config.schema import Config, JobConfig
from runner.core.batch_names import config_hash
from runner.core.batch_states import (
    Built,
    ChunkState,
    Collecting,
    Creating,
    Ended,
    Running,
    Uploaded,
    Uploading,
    no_batch,
    recovered,
    tracked_lines,
)
from runner.core.items import InvalidLine, Item
from runner.core.plan import JobPlan
from runner.core.records import invalid_input_record
from runner.core.stats import JobStats
from runner.engine.batch.adopt import find_lost_batches
from runner.engine.batch.driver import BatchDeps, BatchDriver
from runner.errors import ComeBackLater, OutputError
from runner.io.batch_state import (
    JobState,
    claim_state,
    refuse_if_tracked_elsewhere,
    save_state,
    state_path,
    tracked_hashes,
)
from runner.io.store import ResultWriter

log = logging.getLogger(__name__)


def _new_items(
    pending: Iterator[tuple[int, Item | InvalidLine]],
    tracked: set[int],
    writer: ResultWriter,
    stats: JobStats,
) -> Iterator[tuple[int, Item]]:
    for h, item in pending:
        if isinstance(item, InvalidLine):
            writer.append(invalid_input_record(item))
            stats.errors += 1
            stats.invalid += 1
            continue
        if h in tracked:
            continue
        yield h, item


def _rebuild_unsubmitted(job: JobConfig, state: JobState) -> None:
    """The prompt, system, messages, model or params changed since the chunks were built: those
    not uploaded yet cost nothing so far, so they are dropped (their files too) and their lines
    built again with the new ones; a chunk uploaded or submitted finishes as built."""
    stale = [c for c in state.chunks if isinstance(c, Built) and c.chunk.rebatch_of is None]
    if stale:
        state.chunks = [c for c in state.chunks if c not in stale]
        save_state(state_path(job), state)  # first: a crash never leaves a chunk with no file
        for c in stale:
            for name in (c.chunk.file, c.chunk.ids):
                (job.work_dir / name).unlink(missing_ok=True)
    log.warning(
        "the job's prompt, system, messages, model or params changed since its batches were "
        "built; those uploaded or submitted finish as built, chunks not submitted yet are built "
        "again",
        extra={
            "job": job.name,
            "rebuilt_chunks": len(stale),
            "rebuilt_lines": sum(c.chunk.lines for c in stale),
        },
    )


def _tell_resumed(job: JobConfig, chunks: list[ChunkState]) -> None:
    """``batches resumed``: what an earlier run left tracked, which this one collects and
    submits instead of sending those lines again. A rerun after Ctrl-C or ``--no-wait`` said
    nothing of them until the first was collected, maybe hours later."""
    # a chunk that ended with no batch (dropped by batches cancel, rejected) is none to collect
    batches = [c for c in chunks if isinstance(c, (Creating, Running, Ended, Collecting))]
    batches = [c for c in batches if not no_batch(c)]
    waiting = [c for c in chunks if isinstance(c, (Built, Uploading, Uploaded))]
    if not batches and not waiting:
        return
    paid, queued = tracked_lines(chunks)
    log.info(
        "batches resumed",
        extra={
            "job": job.name,
            "batches": len(batches),
            "lines": paid,
            "chunks_not_submitted": len(waiting),
            "lines_not_submitted": queued,
        },
    )


async def run_batch_job(
    plan: JobPlan,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    config: Config,
    deps: BatchDeps,
) -> JobStats:
    """Build, submit, track, collect: one job's whole batch path. The caller holds the job's
    lock and owns ``deps.writer`` (``runner.app.wiring.make_batch_deps`` builds the rest).

    ``deps.no_wait`` submits and returns (ComeBackLater, exit 75); ``deps.fallback`` is how
    lines that did not run in a batch are sent when ``batch.on_failure`` is ``realtime``."""
    job = plan.job
    deps.stats.route = "batch"
    try:
        return await _run_batch_job(job, pending, config, deps, plan.route == "batch")
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        where = exc.filename or job.work_dir
        raise OutputError(
            f"{where}: cannot read or write the batch files or state: {exc.strerror or exc}; "
            "what was collected is kept, the next run goes on from the saved state"
        ) from None


async def _run_batch_job(
    job: JobConfig,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    config: Config,
    deps: BatchDeps,
    building: bool,
) -> JobStats:
    chash = config_hash(job, config.batch)
    adopted: list[ChunkState] = []
    if not state_path(job).exists():  # a first run, or one whose work folder is gone
        refuse_if_tracked_elsewhere(job)
        adopted = await find_lost_batches(
            job, config, deps.client, chash, clock=deps.clock, rng=deps.rng
        )
    state = claim_state(job, chash, adopted)
    if state.chunks:
        state.chunks = [recovered(c) for c in state.chunks]
        if not adopted and not deps.adopted_now:  # adopted batches have their own warning
            _tell_resumed(job, state.chunks)
        if state.config_hash != chash and building:
            _rebuild_unsubmitted(job, state)
        elif state.config_hash != chash:  # a realtime run left the lines of all to them
            log.warning(
                "the job's prompt, system, messages, model or params changed since its batches "
                "were built; tracked ones finish as built",
                extra={"job": job.name},
            )
    writer, stats = deps.writer, deps.stats
    driver = BatchDriver(job, config, state, deps)
    try:
        tracked = tracked_hashes(job, state)
        before = len(state.chunks)
        built = driver.add_chunks(_new_items(pending, tracked, writer, stats))
        writer.flush()
        if built or before == 0:
            driver.save()
        if built:
            log.info(
                "batch files built",
                extra={"job": job.name, "chunks": len(built), "lines": sum(c.lines for c in built)},
            )
        try:
            await driver.run()
        except ComeBackLater as exc:
            exc.stats = stats
            raise
    finally:
        stats.finished = deps.clock.monotonic()
    return stats
