"""``glmrun status CONFIG``: what is done, failed and pending per job, without network.

Reads only the input, the output JSONL (latest record per key wins, torn or corrupt lines
skipped) and the job's batch state files; takes no lock, so it is safe to call while a run
is going on (the counts are then a snapshot). Cron wrappers use the exit code: 0 when every
job is finished, 75 when work is pending or batches are still tracked.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from runner.config.schema import Config, JobConfig
from runner.core.cost import format_usage, usage_from_lines
from runner.core.items import InvalidLine
from runner.core.keys import key_hash
from runner.core.resume import FAILED, OK, RETRYABLE
from runner.errors import EXIT_OK, EXIT_TEMPFAIL
from runner.io.jsonl import iter_lines
from runner.io.prepare import read_job_items
from runner.io.store import load_resume_index

log = logging.getLogger(__name__)


@dataclass
class JobStatus:
    job: str
    output: str
    ok: int = 0
    errors: int = 0  # permanent error records (not retried)
    pending: int = 0  # never tried, or last tried with a retryable error
    retryable_errors: int = 0  # of pending: the latest record is a retryable error
    invalid_unrecorded: int = 0  # invalid input lines the next run records as errors
    duplicates: int = 0
    corrupt_output_lines: list[int] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # route -> prompt/completion tokens spent
    usage_line: str = ""

    @property
    def open_batches(self) -> list[dict[str, Any]]:
        return [b for b in self.batches if not b.get("finished")]

    @property
    def finished(self) -> bool:
        return self.pending == 0 and self.invalid_unrecorded == 0 and not self.open_batches

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished}


def job_status(job: JobConfig, config: Config) -> JobStatus:
    """Counts per unique key of the input (a duplicate line counts once, as a duplicate)."""
    index = load_resume_index(job.output_path)
    status = JobStatus(job.name, str(job.output_path), corrupt_output_lines=index.corrupt_lines)
    seen: set[int] = set()
    for item in read_job_items(job, config):  # the same checks as a run (local files, models)
        h = key_hash(item.key)
        if h in seen:
            status.duplicates += 1
            continue
        seen.add(h)
        state = index.state(h)
        if state == OK:
            status.ok += 1
        elif state == FAILED:
            status.errors += 1
        elif isinstance(item, InvalidLine):
            status.invalid_unrecorded += 1
        else:
            status.pending += 1
            if state == RETRYABLE:
                status.retryable_errors += 1
    status.batches = tracked_batches(job)
    return status


def tracked_batches(job: JobConfig) -> list[dict[str, Any]]:
    """The batch path's chunks for ``job`` (from its state file): each with ``batch_id``,
    ``state`` and ``finished`` once its results are collected into the output."""
    from runner.io.batch_state import tracked_batches as from_state_file

    return list(from_state_file(job))


def collect(config: Config, job_name: str | None = None) -> list[JobStatus]:
    jobs = [config.job(job_name)] if job_name else list(config.jobs)
    statuses = [job_status(job, config) for job in jobs]
    for job, status in zip(jobs, statuses, strict=True):
        add_usage(status, job, config)
    return statuses


def add_usage(status: JobStatus, job: JobConfig, config: Config) -> None:
    """Tokens spent per route (every record line with usage), with cost when priced."""

    totals = usage_from_lines(iter_lines(job.output_path))
    status.usage = {
        r: {"prompt": t.prompt, "completion": t.completion} for r, t in totals.by_route.items()
    }
    if totals.by_route:
        pairs = {r: (t.prompt, t.completion) for r, t in totals.by_route.items()}
        status.usage_line = format_usage(pairs, job, config.cost)


def exit_code(statuses: list[JobStatus]) -> int:
    return EXIT_OK if all(s.finished for s in statuses) else EXIT_TEMPFAIL


def format_status(s: JobStatus) -> str:
    line = (
        f"{s.job}: ok {s.ok}, errors {s.errors}, pending {s.pending}"
        f" (retryable errors {s.retryable_errors}), invalid not yet recorded "
        f"{s.invalid_unrecorded}, duplicate lines {s.duplicates}; batches "
        f"{len(s.open_batches)} open / {len(s.batches)} tracked"
        f" -> {'done' if s.finished else 'pending'}"
    )
    if s.corrupt_output_lines:
        shown = ", ".join(map(str, s.corrupt_output_lines[:10]))
        line += f"; skipped corrupt output lines {shown}"
    if s.usage_line:
        line += f"\n  tokens: {s.usage_line}"
    for b in s.open_batches:
        line += f"\n  batch {b.get('batch_id') or '(not created yet)'}: {b.get('state')}"
        if b.get("status"):
            line += f" ({b['status']}"
            if b.get("total"):
                line += (
                    f", {b.get('completed') or 0}/{b['total']} done, {b.get('failed') or 0} failed"
                )
            line += ")"
    return line
