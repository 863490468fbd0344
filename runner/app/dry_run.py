"""``glmrun run --dry-run``: a job's plan, why a run of it would be refused (as ``status``
says) or would wait (another run holds its output now), its first invalid input lines that a
run would record (of this shard, not recorded by an earlier run), with their reasons, the money
already in batches, how a batch route cuts its new lines into files, and an estimate of what
the run would pay for. Nothing is sent and nothing is written."""

from __future__ import annotations

import asyncio
import threading
from typing import IO

from runner.app.planning import daemon_call, describe_plan, plan_job, with_limit
from runner.app.summary import dry_run_sends, tracked_note
from runner.app.summary import say as to_terminal
from runner.config.schema import BatchConfig, Config, JobConfig
from runner.core.cost import estimate, format_estimate, in_batches_text
from runner.core.items import InvalidLine
from runner.core.keys import key_hash
from runner.core.plan import JobPlan
from runner.core.resume import INVALID
from runner.errors import Interrupted
from runner.io.job_files import iter_job_lines, start_over_refusal
from runner.io.prepare import read_job_items
from runner.io.store import RunLock

INVALID_SHOWN = 5  # invalid input lines --dry-run lists


async def dry_runs(
    jobs: list[JobConfig], config: Config, limit: int | None, out: IO[str]
) -> list[JobPlan]:
    """``dry_run`` of each job, in a thread: counting a big input takes seconds, and Ctrl-C
    (which cancels this task) ends it at once with one line, not after the whole plan is
    printed as if nothing had been pressed."""
    stop = threading.Event()
    done = daemon_call(
        lambda: [dry_run(job, config, limit, out, stop) for job in jobs], name="glmrun-dry-run"
    )
    try:
        return await done
    except asyncio.CancelledError:
        stop.set()  # the thread writes nothing more
        raise Interrupted(what="a dry run: nothing was sent or written") from None


def dry_run(
    job: JobConfig,
    config: Config,
    limit: int | None,
    out: IO[str],
    stop: threading.Event | None = None,
) -> JobPlan:
    """Print the job's plan, invalid lines and estimate to ``out``; return the plan (once
    ``stop`` is set, nothing more is printed and the count of a big input stops soon)."""

    def say(line: str) -> None:
        if stop is None or not stop.is_set():
            to_terminal(line, out)

    plan, index = plan_job(job, config, stop)
    plan = with_limit(plan, limit, config)
    say(describe_plan(plan))
    refusal = start_over_refusal(job)  # an output gone while its index remembers it
    if refusal is None and job.work_dir.parent.is_dir():  # batches another output left running
        from runner.io.batch_state import run_refusal

        refusal = run_refusal(job)
    if refusal:
        say(f"  a run is refused: {refusal}")
    lock = RunLock(job.output_path)
    if lock.held_now():  # the counts above are moving; a run now would not start
        say(
            f"  a run now would wait: {job.output_path} is in use by another glmrun run "
            f"({lock.held_by()}); it exits 75, or waits with --wait-lock"
        )
    shown: set[int] = set()  # a line listed twice is one invalid line, shown once
    for item in read_job_items(job, config):
        if isinstance(item, InvalidLine):
            h = key_hash(item.key)
            if job.shard is not None and not job.shard.owns(h):
                continue  # another shard's line: its own dry run lists it
            if index.state(h) == INVALID or h in shown:
                continue  # recorded by an earlier run: done, with an error (the header counts it)
            if len(shown) == INVALID_SHOWN:
                more = max(1, plan.counts.invalid - len(shown))
                say(
                    f"  … {more:,} more (glmrun status --errors lists them once a run records them)"
                )
                break
            say(f"  invalid line {item.line_no}: {item.reason}")
            shown.add(h)
    notes, sends = dry_run_sends(job, plan.pending, limit)
    for note in notes:
        say(note)
    _, paid, queued, _ = tracked_note(job)
    if paid:  # billed whatever this run does: money in flight, apart from the estimate below
        items = read_job_items(job, config)
        say(
            "  "
            + in_batches_text(
                estimate(job, paid, config.cost, items, iter_job_lines(job)), config.cost
            )
        )
    if plan.route == "batch" and sends:
        files = batch_files_note(sends - queued, config.batch)
        if files:
            say(files)
    if sends == 0:  # not an estimate of 0 tokens for 0 CNY
        name = job.name if job.shard is None else f"{job.name} shard {job.shard}"
        say(f"{name}: a run would send nothing now")
        return plan
    items = read_job_items(job, config)
    records = iter_job_lines(job)  # token averages from every output file of the job
    est = estimate(job, sends, config.cost, items, records)
    say(format_estimate(job, est, config.cost))
    return plan


def batch_files_note(lines: int, batch: BatchConfig) -> str:
    """How the new lines of a batch run are cut into files and how many of their batches are
    queued at once: ``  batch: 10 files of up to 10,000 requests, 1 queued at a time
    (batch.max_queued: 10,000 requests), each submitted as one before it finishes``. Asked
    "how many batch files, and do they run together?", the dry run said nothing; a 100,000-URL
    job under the 10,000 queue limit runs one batch after another, ten times a batch's wait."""
    if lines <= 0:
        return ""
    size = min(batch.max_requests_per_file, batch.max_queued)  # as the chunk builder cuts
    files = -(-lines // size)
    if files == 1:
        return f"  batch: 1 file of {lines:,} requests, one batch"
    at_once = max(1, batch.max_queued // size)
    note = f"  batch: {files:,} files of up to {size:,} requests"
    if at_once >= files:
        return note + f", all queued at once (batch.max_queued: {batch.max_queued:,} requests)"
    return note + (
        f", {at_once:,} queued at a time (batch.max_queued: {batch.max_queued:,} requests); "
        "the next is submitted as one finishes"
    )
