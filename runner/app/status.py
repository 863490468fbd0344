"""``glmrun status CONFIG``: what is done, failed and pending per job, without network.

Reads only the input, every output file of the job (the main output and each shard's, see
``runner.io.job_files``; latest record per key wins, torn or corrupt lines skipped) and the
batch state files of the job and its shards; takes no lock, so it is safe to call while a run
is going on (the counts are then a snapshot). Cron wrappers use the exit code: 0 when every
job is finished, 75 when work is pending or batches are still tracked.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from runner.app.display import by_state, counted, shown, unsubmitted
from runner.config.schema import Config, JobConfig
from runner.core.cost import estimate, format_usage, in_batches_text, usage_from_lines
from runner.core.items import InvalidLine
from runner.core.keys import key_hash
from runner.core.plan import PendingCounts, done_line_filter, iter_pending
from runner.core.records import INVALID_INPUT, is_final, is_invalid_input, record_key
from runner.core.resume import FAILED, INVALID, OK, RETRYABLE, ResumeIndex
from runner.core.shard import Shard
from runner.errors import EXIT_OK, EXIT_TEMPFAIL
from runner.io.inputs import check_input
from runner.io.job_files import (
    iter_job_lines,
    job_output_files,
    job_work_dirs,
    start_over_refusal,
)
from runner.io.jsonl import parse_record
from runner.io.prepare import read_job_items
from runner.io.store import RunLock, load_resume_index

log = logging.getLogger(__name__)

STATUS_ROWS = 10  # open batches listed per job; the rest are counted by state


@dataclass
class FileStatus:
    """One output file of the job (the main output or a shard's), counted over the input's keys
    whose latest record is in it; ``pending`` is what that shard still owns (shards only)."""

    output: str
    shard: str | None = None  # "I/N", None for the main output
    exists: bool = True
    ok: int = 0
    errors: int = 0
    pending: int | None = None
    corrupt_output_lines: list[int] = field(default_factory=list)


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
    blocked: str = ""  # why a run would be refused: batches of another output or job name
    usage: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # route -> prompt/completion tokens spent
    usage_line: str = ""
    in_batches: dict[str, Any] = field(default_factory=dict)  # lines, estimate (money or None)
    in_batches_line: str = ""
    files: list[FileStatus] = field(default_factory=list)  # per output file: main, then shards
    running: list[str] = field(default_factory=list)  # runs writing its files now: who, since

    @property
    def open_batches(self) -> list[dict[str, Any]]:
        return [b for b in self.batches if not b.get("finished")]

    @property
    def finished(self) -> bool:
        return self.pending == 0 and self.invalid_unrecorded == 0 and not self.open_batches

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished}


def job_status(job: JobConfig, config: Config) -> JobStatus:
    """Counts per unique key of the input (a duplicate line counts once, as a duplicate), over
    the merge of every output file of the job, with a row per file and per shard."""
    files = _file_rows(job)
    if len(files) == 1:
        index = files[0][2]  # one file: its index as it is (a table base is not copied)
    else:
        index = ResumeIndex()
        for _, _, file_index in files:
            index.merge(file_index)
    main_corrupt = files[0][2].corrupt_lines if files and files[0][1] is None else []
    status = JobStatus(job.name, str(job.main_output_path), corrupt_output_lines=main_corrupt)
    status.files = [row for row, _, _ in files]
    if all(shard is None for _, shard, _ in files):  # the main output alone, or no output
        _count_main(job, config, index, status)
        for row, _, _ in files:
            row.ok, row.errors = status.ok, status.errors
    else:
        _count_per_file(job, config, index, files, status)
    status.batches = tracked_batches(job)
    status.running = running_now(job)
    status.blocked = start_over_refusal(job) or ""
    if job.work_dir.parent.is_dir() and not status.blocked:
        from runner.io.batch_state import run_refusal

        status.blocked = run_refusal(job, other_sharding=False) or ""
    return status


def _count_main(job: JobConfig, config: Config, index: ResumeIndex, status: JobStatus) -> None:
    """The counts of a job with one output file, read as a run's plan reads the input
    (``runner.core.plan``): finished text lines skipped by the pre-filter a batch of lines at a
    time, unparsed; the rest parsed, checked and counted by ``iter_pending``."""
    counts = PendingCounts()
    skip = done_line_filter(index, counts)
    todo: list[int] = []  # hashes of valid pending items: retryable ones are counted in bulk
    for h, item in iter_pending(read_job_items(job, config, skip), index, counts):
        if not isinstance(item, InvalidLine):
            todo.append(h)
            if len(todo) >= RETRYABLE_BATCH:
                status.retryable_errors += _retryable(index, todo)
                todo = []
    status.retryable_errors += _retryable(index, todo)
    status.ok = counts.done - counts.failed
    status.errors = counts.failed
    status.pending = counts.pending
    status.invalid_unrecorded = counts.invalid
    status.duplicates = counts.duplicates


RETRYABLE_BATCH = 1 << 16


def _retryable(index: ResumeIndex, hashes: list[int]) -> int:
    """How many of ``hashes`` (keys not done) have a retryable error as their latest record."""
    return index.states_of(hashes).count(RETRYABLE)


def _count_per_file(
    job: JobConfig,
    config: Config,
    index: ResumeIndex,
    files: list[tuple[FileStatus, Shard | None, ResumeIndex]],
    status: JobStatus,
) -> None:
    """The counts of a sharded job: per key, its state in the merged index and in each file."""
    seen: set[int] = set()
    for item in read_job_items(job, config):  # the same checks as a run (local files, models)
        h = key_hash(item.key)
        if h in seen:
            status.duplicates += 1
            continue
        seen.add(h)
        invalid = isinstance(item, InvalidLine)
        state = index.state(h)
        recorded = state == INVALID and invalid  # still invalid: its error record stands
        if state == OK:
            status.ok += 1
        elif state == FAILED or recorded:
            status.errors += 1
        elif invalid:
            status.invalid_unrecorded += 1
        else:  # never tried, a retryable error, or recorded invalid and valid now
            status.pending += 1
            if state == RETRYABLE:
                status.retryable_errors += 1
        for row, shard, file_index in files:
            file_state = state if file_index is index else file_index.state(h)
            if file_state == OK:
                row.ok += 1
            elif file_state == FAILED or (file_state == INVALID and invalid):
                row.errors += 1
            elif row.pending is not None and shard is not None and shard.owns(h):
                row.pending += not (index.is_done(h) or recorded)


def running_now(job: JobConfig) -> list[str]:
    """``pid 812, since 19:04:01, 3s ago`` per output file whose lock a run holds now (its
    counts are moving: a person in a second pane sees why the job is pending)."""
    out = []
    for f in job_output_files(job):
        lock = RunLock(f.path)
        if lock.held_now():
            shard = f" (shard {f.shard})" if f.shard is not None else ""
            out.append(f"{lock.held_by()}{shard}")
    return out


def _file_rows(job: JobConfig) -> list[tuple[FileStatus, Shard | None, ResumeIndex]]:
    """A row per existing output file, plus one per shard of each N seen that has no file yet
    (so ``status`` shows the shard that never ran)."""
    rows: list[tuple[FileStatus, Shard | None, ResumeIndex]] = []
    present: set[Shard] = set()
    counts: set[int] = set()
    for f in job_output_files(job):
        if not f.path.exists():
            continue
        index = load_resume_index(f.path)
        label = None if f.shard is None else str(f.shard)
        row = FileStatus(str(f.path), label, corrupt_output_lines=index.corrupt_lines)
        if f.shard is not None:
            row.pending = 0
            present.add(f.shard)
            counts.add(f.shard.count)
        rows.append((row, f.shard, index))
    for n in sorted(counts):
        for i in range(n):
            shard = Shard(i, n)
            if shard not in present:
                path = dataclasses.replace(job, shard=shard).output_path
                rows.append(
                    (FileStatus(str(path), str(shard), False, pending=0), shard, ResumeIndex())
                )
    rows.sort(key=lambda r: (0, 0, 0) if r[1] is None else (1, r[1].count, r[1].index))
    return rows


def tracked_batches(job: JobConfig) -> list[dict[str, Any]]:
    """The batch path's chunks for ``job`` and its shards (from their state files): each with
    ``batch_id``, ``state``, ``finished`` once its results are collected into the output, and
    ``shard`` ("I/N") when a shard submitted it."""
    from runner.io.batch_state import tracked_batches as from_state_file

    out: list[dict[str, Any]] = []
    for shard, _ in job_work_dirs(job):
        part = dataclasses.replace(job, shard=shard)
        for chunk in from_state_file(part):
            out.append(chunk if shard is None else {**chunk, "shard": str(shard)})
    return out


def collect(config: Config, job_name: str | None = None) -> list[JobStatus]:
    jobs = [config.job(job_name)] if job_name else list(config.jobs)
    for job in jobs:  # the one line names the job whose input is missing
        check_input(
            job.input_path, job.name, job.input_format, job.csv_url_column, job.csv_id_column
        )
    statuses = [job_status(job, config) for job in jobs]
    for job, status in zip(jobs, statuses, strict=True):
        add_usage(status, job, config)
    return statuses


def add_usage(status: JobStatus, job: JobConfig, config: Config) -> None:
    """Tokens spent per route (every record line with usage), with cost when priced."""

    totals = usage_from_lines(iter_job_lines(job))
    status.usage = {
        r: {"prompt": t.prompt, "completion": t.completion} for r, t in totals.by_route.items()
    }
    if totals.by_route:
        pairs = {r: (t.prompt, t.completion) for r, t in totals.by_route.items()}
        status.usage_line = format_usage(pairs, job, config.cost)
    lines = sum(b.get("lines") or 0 for b in status.open_batches if in_a_batch(b))
    if lines:
        est = estimate(job, lines, config.cost, read_job_items(job, config), iter_job_lines(job))
        money = None if est.batch is None else round(est.batch, 6)
        status.in_batches = {"lines": lines, "estimate": money}
        status.in_batches_line = in_batches_text(est, config.cost)


def in_a_batch(b: dict[str, Any]) -> bool:
    """A chunk whose batch exists (or may: its create was sent) and is not collected yet: the
    API bills its lines whatever happens next."""
    return bool(b.get("batch_id")) or b.get("local_state") == "Creating"


@dataclass
class ErrorGroup:
    """The error records of one code (the latest record per key), with the first examples."""

    code: str
    count: int = 0
    retryable: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)  # key, line, message


def error_groups(job: JobConfig, config: Config, limit: int = 5) -> list[ErrorGroup]:
    """Keys whose latest record is an error, grouped by code, most frequent first; examples
    carry the input line number when the key is still in the input."""
    latest: dict[str, dict[str, Any]] = {}
    for line in iter_job_lines(job):
        record = parse_record(line)
        key = None if record is None else record_key(record)
        if record is None or key is None:
            continue
        if record.get("status") == "error":
            latest[key] = record
        else:
            latest.pop(key, None)
    _settle_invalid(job, config, latest)
    groups: dict[str, ErrorGroup] = {}
    for key, record in latest.items():
        error = record.get("error")
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code"))
        group = groups.setdefault(code, ErrorGroup(code))
        group.count += 1
        group.retryable = bool(error.get("retryable")) or not is_final(record)
        if len(group.examples) < limit:
            example = {"key": key, "line": None, "message": str(error.get("message") or "")}
            group.examples.append(example)
    _add_line_numbers(job, config, groups)
    return sorted(groups.values(), key=lambda g: (-g.count, g.code))


def _settle_invalid(job: JobConfig, config: Config, latest: dict[str, dict[str, Any]]) -> None:
    """The invalid_input records as the input reads today (a run records a line invalid once,
    not at every run): a line the config now makes valid is dropped (the next run sends it;
    ``glmrun status`` counts it as pending), and so is a line no longer in the input (fixed by
    hand, a fixed line has another key); one still invalid shows today's reason."""
    invalid = {key for key, record in latest.items() if is_invalid_input(record)}
    if not invalid:
        return
    for item in read_job_items(job, config):
        if item.key in invalid:  # its first line decides, as in a run
            invalid.discard(item.key)
            if isinstance(item, InvalidLine):
                error = latest[item.key]["error"]
                latest[item.key]["error"] = {
                    **error,
                    "message": f"line {item.line_no}: {item.reason}",
                }
            else:
                del latest[item.key]
            if not invalid:
                return
    for key in invalid:
        del latest[key]


def _add_line_numbers(job: JobConfig, config: Config, groups: dict[str, ErrorGroup]) -> None:
    wanted = {ex["key"]: ex for g in groups.values() for ex in g.examples}
    if not wanted:
        return
    for item in read_job_items(job, config):
        ex = wanted.pop(item.key, None)
        if ex is not None:
            ex["line"] = item.line_no
            if not wanted:
                return


def format_errors(job: str, groups: list[ErrorGroup]) -> list[str]:
    """``describe: 3 keys with errors`` then per code a heading and its examples."""
    total = sum(g.count for g in groups)
    if not total:
        return [f"{job}: no error records"]
    lines = [f"{job}: {total:,} key{'s' if total != 1 else ''} with errors"]
    for g in groups:
        kind = "retried by the next run" if g.retryable else "permanent"
        if g.code == INVALID_INPUT:  # never sent: what makes the line valid makes it work
            kind = "never sent; a run sends the line once it is valid"
        lines.append(f"  {g.code} ×{g.count:,} ({kind})")
        for ex in g.examples:
            where = f"line {ex['line']}: " if ex["line"] else ""
            message = ex["message"].removeprefix(where)  # invalid_input messages start so
            lines.append(f"    {where}{shown(ex['key'])} — {message[:120]}")
        if g.count > len(g.examples):
            lines.append(f"    … {g.count - len(g.examples):,} more (--limit N shows more)")
    return lines


def exit_code(statuses: list[JobStatus]) -> int:
    return EXIT_OK if all(s.finished for s in statuses) else EXIT_TEMPFAIL


def format_status(s: JobStatus, *, errors_hint: bool = True) -> str:
    """The job's lines; ``errors_hint=False`` when the error list follows (``--errors``)."""
    done = s.ok + s.errors
    total = done + s.pending + s.invalid_unrecorded
    line = (
        f"{s.job}: {done:,}/{total:,} done (ok {s.ok:,}, errors {s.errors:,}), pending "
        f"{s.pending:,}"
    )
    line += counted(
        (s.retryable_errors, " ({} to retry)"),
        (s.invalid_unrecorded, ", invalid lines not yet recorded {}"),
        (s.duplicates, ", duplicate lines {}"),
    )
    if s.batches:
        running = sum(1 for b in s.open_batches if b.get("batch_id"))
        ended = sum(1 for b in s.open_batches if never_ran(b))  # dropped by a cancel, rejected
        waiting = len(s.open_batches) - running - ended  # built, not yet a batch on the account
        line += f"; batches {running:,} open"
        line += f", {waiting:,} chunk{'s' * (waiting != 1)} not submitted" if waiting else ""
        line += f", {ended:,} chunk{'s' * (ended != 1)} ended with no batch" if ended else ""
        line += f" / {len(s.batches):,} tracked"
    line += f" -> {'done' if s.finished else 'pending'}"
    if s.corrupt_output_lines:
        shown = ", ".join(map(str, s.corrupt_output_lines[:10]))
        line += f"; skipped corrupt output lines {shown}"
    if len(s.files) > 1 or any(f.shard for f in s.files):
        line += "".join(f"\n  {format_file(f)}" for f in s.files)
        line += f"\n  {'total':<12} ok {s.ok:,}, errors {s.errors:,}, pending {s.pending:,}"
    if s.usage_line:
        line += f"\n  tokens: {s.usage_line}"
    if s.in_batches_line:
        line += f"\n  {s.in_batches_line}"
    rows = s.open_batches
    listed = rows if len(rows) <= STATUS_ROWS else rows[: STATUS_ROWS - 1]
    for b in listed:
        line += "\n  " + batch_row(b)
    if len(rows) > len(listed):  # a million URLs are a hundred chunks: not a hundred lines
        rest = rows[len(listed) :]
        line += f"\n  … {len(rest):,} more ({by_state(rest)}): glmrun batches list"
    for run in s.running:
        line += f"\n  a run is writing it now ({run})"
    if s.blocked:
        line += f"\n  a run is refused: {s.blocked}"
    if s.errors and errors_hint:
        line += "\n  errors by code: glmrun status --errors"
    return line


def never_ran(b: dict[str, Any]) -> bool:
    """A chunk that ended with no batch: dropped by ``batches cancel`` or rejected."""
    return not b.get("batch_id") and b.get("local_state") in ("Ended", "Collecting")


def batch_row(b: dict[str, Any], now: float | None = None) -> str:
    """``batch_abc (shard 1/4): in_progress, 500/1,000 done, 3 failed; polled 12:03:04 (40s
    ago)``."""
    where = f" (shard {b['shard']})" if b.get("shard") else ""
    name = f"batch {b['batch_id']}" if b.get("batch_id") else f"{unsubmitted(b)}, no batch yet"
    text = f"{name}{where}: {b.get('state')}"
    if never_ran(b):  # it read "no batch yet: cancelled, 0/5,000 done", as if still to come
        return f"{unsubmitted(b)}{where}, no batch: {b.get('state')} before it was submitted"
    if b.get("total"):
        text += (
            f", {b.get('completed') or 0:,}/{b['total']:,} done, {b.get('failed') or 0:,} failed"
        )
    polled = b.get("polled_at")
    if polled:
        ago = max(0, int((now or time.time()) - polled))
        text += f"; polled {time.strftime('%H:%M:%S', time.localtime(polled))} ({ago}s ago)"
    return text


def format_file(f: FileStatus) -> str:
    """A row of the per-file view, e.g. ``shard 2/8  ok 120, errors 1, pending 5  FILE`` (ok and
    errors: input keys whose latest record is in that file; pending: what the shard owns)."""
    name = "main" if f.shard is None else f"shard {f.shard}"
    if not f.exists:
        return f"{name:<12} no output yet, pending {f.pending:,}  {f.output}"
    pending = "" if f.pending is None else f", pending {f.pending:,}"
    line = f"{name:<12} ok {f.ok:,}, errors {f.errors:,}{pending}  {f.output}"
    if f.corrupt_output_lines:
        line += f" (skipped corrupt lines {', '.join(map(str, f.corrupt_output_lines[:10]))})"
    return line
