"""The end of a job for a person (a short summary, at most about six lines) and for cron
(the job's exit code, and the run's when several jobs disagree).

A rerun with nothing to do is one line. Error records this run wrote are listed by code with
their first few URLs; permanent errors from earlier runs do not fail the run (they are old,
known facts: ``glmrun status --errors`` lists them) unless ``--strict``. After a signal, the
batches the API keeps running (and billing) are named with the two ways on.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from runner.app.display import counted, fmt_duration, fmt_int, overall, shown, spent
from runner.config.schema import Config, JobConfig
from runner.core.stats import JobStats
from runner.errors import (
    EXIT_API_STOPPED,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOME_ERRORS,
    EXIT_TEMPFAIL,
    GlmrunError,
)
from runner.logs import FIELD_INDENT, terminal_width, wrap_for_terminal

MAX_CODES = 3  # error codes listed with examples; the rest are counted on the last one

# What a GLM business code means, in a few words: the summary lists URLs, not messages, and
# "1301 ×2" alone sends a newcomer to the docs (glm-api.md; the message is in each record)
CODE_LABELS = {
    "429": "throttled",
    "500": "server error",
    "502": "bad gateway",
    "503": "service unavailable",
    "504": "gateway timeout",
    "1200": "API call error",
    "1210": "invalid parameters",
    "1213": "a required field missing",
    "1214": "a field value invalid",
    "1230": "API processing error",
    "1234": "network error",
    "1261": "prompt too long",
    "1300": "blocked by policy",
    "1301": "unsafe content",
    "1302": "concurrency limit",
    "1303": "rate limit",
    "1305": "overloaded",
    "1312": "model overloaded",
    "sensitive": "answer blocked",
    "local_file": "local file gone or changed",
    "batch_missing": "no result in the batch",
}

# Most serious first: a config error or a stopped API needs a person before anything else; then
# new error records; then "come back later" (75); 0 only when every job agrees.
SEVERITY = {EXIT_CONFIG: 4, EXIT_API_STOPPED: 4, EXIT_SOME_ERRORS: 3, EXIT_TEMPFAIL: 2, EXIT_OK: 0}


def most_serious(codes: list[int]) -> int:
    return max(codes, key=lambda c: SEVERITY.get(c, 1), default=EXIT_OK)


def job_exit_code(stats: JobStats, *, strict: bool = False) -> int:
    """1 when this run wrote error records (``--strict``: or any permanent error exists);
    75 when work was deliberately left for a later run; else 0."""
    if stats.errors or (strict and stats.failed_before):
        return EXIT_SOME_ERRORS
    if stats.left_pending:
        return EXIT_TEMPFAIL
    return EXIT_OK


def is_noop(stats: JobStats) -> bool:
    return stats.total == 0 and stats.done == 0 and stats.requests == 0 and not stats.left_pending


def noop_line(stats: JobStats, input_name: str | None = None) -> str:
    """``describe: nothing to do — 3,000 done (2 with permanent errors: glmrun status
    --errors)``; with nothing done either, what is wrong: the input (``input_name``, for an
    unsharded run) holds no items."""
    if not stats.done_before and input_name:
        return (
            f"{stats.label}: nothing to do — {input_name} has no items (blank and # lines are "
            "skipped)"
        )
    line = f"{stats.label}: nothing to do — {fmt_int(stats.done_before)} done"
    if stats.failed_before:
        line += f" ({fmt_int(stats.failed_before)} with permanent errors: glmrun status --errors)"
    return line


def summary_lines(
    stats: JobStats,
    *,
    price: Any = None,
    currency: str = "CNY",
    strict: bool = False,
    input_name: str | None = None,
) -> list[str]:
    """The job's summary: counts, errors by code with examples, traffic, tokens, cost, time."""
    if is_noop(stats):
        return [noop_line(stats, input_name)]
    done, total = overall(stats)
    head = f"{stats.label}: ok {fmt_int(stats.ok)}, errors {fmt_int(stats.errors)}"
    notes = [plural(stats.invalid, "invalid line")] if stats.invalid else []
    if stats.to_retry:  # "done" for this run, not for good: the next run sends them again
        notes.append(f"{fmt_int(stats.to_retry)} retried by the next run")
    if notes:
        head += f" ({', '.join(notes)})"
    head += counted((stats.done_before, ", skipped {} done before"))
    if stats.duplicates:
        head += f", {plural(stats.duplicates, 'duplicate line')}"
    # --limit: the job's whole total, so "1,200/3,000 done" does not read as finished
    head += f" — {fmt_int(done)}/{fmt_int(total + stats.beyond_limit)} done"
    head += counted(
        (stats.left_pending, ", {} left for a later run"),
        (stats.beyond_limit, ", {} left by --limit for the next run"),
    )
    lines = [head]
    lines.extend(error_lines(stats))
    lines.extend(flag_lines(stats))
    lines.extend("  " + line for line in traffic(stats, price, currency))
    if stats.failed_before and not stats.errors and not strict:
        n = stats.failed_before
        lines.append(
            f"  {fmt_int(n)} item{'s' if n != 1 else ''} {'have' if n != 1 else 'has'} permanent"
            " errors from earlier runs: glmrun status --errors"
        )
    return lines


def say(line: str, out: IO[str]) -> None:
    """Print ``line`` to ``out`` as ``for_terminal`` lays it out."""
    print("\n".join(for_terminal([line], out)), file=out)


def for_terminal(lines: list[str], out: IO[str]) -> list[str]:
    """``lines`` as a person's terminal shows them: each wrapped at spaces to its width, the
    continuation indented under the text (``runner.logs.wrap_for_terminal``), instead of the
    terminal cutting words and URLs in two. Unchanged when ``out`` is not a terminal (a pipe,
    a file, cron): one line each."""
    width = terminal_width(out)
    if width is None:
        return lines
    wrapped: list[str] = []
    for line in lines:
        if len(line) <= width:
            wrapped.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" "))) + FIELD_INDENT
        for piece in _at_dots(line, width, indent):
            wrapped += wrap_for_terminal(piece, width)
    return wrapped


def _at_dots(line: str, width: int, indent: str) -> list[str]:
    """A line of ``a · b · c`` parts broken between parts where it can be, so a part such as
    ``29.4s, 679.7 items/s`` or ``concurrency auto 20–26, mostly 24`` stays whole."""
    parts = line.split(" · ")
    pieces = [parts[0]]
    for i, part in enumerate(parts[1:], 2):
        room = width - (2 if i < len(parts) else 0)  # a piece that more follow ends with " ·"
        if len(pieces[-1]) + 3 + len(part) <= room:
            pieces[-1] += " · " + part
        else:
            pieces[-1] += " ·"
            pieces.append(indent + part)
    return pieces


def plural(n: int, noun: str) -> str:
    return f"{fmt_int(n)} {noun}{'' if n == 1 else 's'}"


def error_lines(stats: JobStats) -> list[str]:
    """``  1301 ×2: https://x/7.jpg, https://x/9.jpg`` per code, most frequent first."""
    codes = sorted(stats.error_codes.items(), key=lambda kv: -kv[1])
    out = []
    for code, n in codes[:MAX_CODES]:
        examples = stats.error_examples.get(code, [])
        more = f", … {fmt_int(n - len(examples))} more" if n > len(examples) else ""
        label = f" ({CODE_LABELS[code]})" if code in CODE_LABELS else ""
        out.append(f"  {code}{label} ×{fmt_int(n)}: {', '.join(map(shown, examples))}{more}")
    rest = codes[MAX_CODES:]
    if rest:
        n = sum(c for _, c in rest)
        where = f"with code {rest[0][0]}" if len(rest) == 1 else f"in {len(rest)} other codes"
        out[-1] += f"; {fmt_int(n)} more {where}: glmrun status --errors"
    return out


# what each flag of an ok record means, for its summary line
FLAG_LABELS = {
    "truncated": "cut at max_tokens (truncated)",
    "parse_error": "not valid JSON (parse_error)",
    "schema_errors": "not the schema (schema_errors)",
}


def flag_lines(stats: JobStats) -> list[str]:
    """``  ok but cut at max_tokens (truncated) ×2: https://x/7.jpg, …``: answers recorded as
    ok that are not what was asked, which the counts above do not show."""
    out = []
    for flag, label in FLAG_LABELS.items():
        n = stats.flagged.get(flag, 0)
        if n:
            examples = stats.flagged_examples.get(flag, [])
            more = f", … {fmt_int(n - len(examples))} more" if n > len(examples) else ""
            out.append(f"  ok but {label} ×{fmt_int(n)}: {', '.join(map(shown, examples))}{more}")
    return out


def traffic(stats: JobStats, price: Any, currency: str) -> list[str]:
    """Two lines: requests, route, time and rate; then tokens and cost (when any)."""
    parts = []
    if stats.requests or stats.route == "realtime":
        req = f"requests {fmt_int(stats.requests)}"
        if stats.retries:
            req += f", retries {fmt_int(stats.retries)}"
            if stats.throttled:
                req += f" ({fmt_int(stats.throttled)} throttled)"
        parts.append(req)
    levels = stats.auto_levels()
    if levels is not None:
        low, mostly, high = levels
        held = f"{mostly}" if low == high else f"{low}–{high}, mostly {mostly}"
        parts.append(f"concurrency auto {held}")
    if stats.batches_submitted:
        parts.append(f"batches {fmt_int(stats.batches_submitted)} submitted")
    if stats.batches_running:  # a --no-wait run's stdout (a cron mail) says what is left
        running = stats.batches_running
        parts.append(f"{fmt_int(running)} batch{'' if running == 1 else 'es'} still running")
    used = {*stats.usage_by_route, stats.route}  # a realtime run that also collects batches
    via = "via " + " + ".join(r for r in ("realtime", "batch") if r in used)
    # mode auto chose the route: a person who expected the batch price reads why it did not
    parts.append(f"{via} ({stats.why})" if stats.why and used == {stats.route} else via)
    elapsed = stats.elapsed_s
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    # A batch run's items/s is not a speed: a run that collects batches submitted an hour ago
    # would show thousands per second. Its time is this run's; its batches' own lines say more.
    # Nor is that of a run that sent nothing (its lines were all invalid input).
    shown_rate = stats.done and stats.route == "realtime" and stats.requests
    parts.append(
        f"{fmt_duration(elapsed)}, {rate:,.1f} items/s" if shown_rate else fmt_duration(elapsed)
    )
    lines = [" · ".join(parts)]
    if stats.prompt_tokens or stats.completion_tokens:
        tokens = (
            f"tokens {fmt_int(stats.prompt_tokens)} in / {fmt_int(stats.completion_tokens)} out"
        )
        money = spent(stats, price, currency)
        if set(stats.usage_by_route) - {stats.route}:
            both = len(stats.usage_by_route) > 1
            # one part per route, so a narrow terminal breaks between them, not in one
            tokens = "tokens " + " · ".join(by_route(stats, price if both else None, currency))
            money = f"total {money}" if money and both else money
        lines.append(f"{tokens} · {money}" if money else tokens)
    return lines


def by_route(stats: JobStats, price: Any, currency: str) -> list[str]:
    """``batch 2,970,836 in / 59,180 out (6.0600 CNY)``, ``realtime ...`` as ``glmrun status``
    writes them (the cost of each only with ``price``): a batch job whose lines went realtime
    (``batch.on_failure``) paid the full price for those, and one total alone hid that
    half-price work had cost double."""
    from runner.core.cost import usage_parts

    usage = stats.usage_by_route
    ordered: dict[str, list[int]] = {r: usage[r] for r in ("batch", "realtime") if r in usage}
    return usage_parts(ordered, price, currency)


def still_remote(config: Config, jobs: list[JobConfig], stats: list[JobStats]) -> str:
    """After a signal: the batches the API keeps running (and billing) for the batch jobs of
    this run, and the two ways on; '' when there are none (the state modules are imported by
    batch runs only)."""
    batch_jobs = {s.name for s in stats if s.route == "batch"}
    if not batch_jobs:
        return ""
    from runner.core.batch_states import left_behind
    from runner.io.batch_state import owned_state

    parts = []
    for job in jobs:
        try:
            state = owned_state(job) if job.name in batch_jobs else None
        except GlmrunError:  # unreadable: the interrupted run's one line must still come out
            continue
        left = left_behind(state.chunks) if state is not None else ""
        if left:
            name = job.name if job.shard is None else f"{job.name} shard {job.shard}"
            parts.append(f"{name}: {left}")
    if not parts:
        return ""
    if "still running" not in " ".join(parts):
        return "; ".join(parts) + ": run the same command again to submit them"
    return "; ".join(parts) + (
        ". Batches keep running (and are billed) after glmrun exits: run the same command "
        f"again to collect them, or `glmrun batches cancel {shown_path(config.path)}` to "
        "cancel them"
    )


def tracked_note(job: JobConfig) -> tuple[str, int, int, int]:
    """For ``--dry-run`` of a batch job: what its tracked chunks hold, and their lines already
    in batches (billed whatever happens next), built but not yet submitted, and in chunks
    that ended with no batch (dropped by a cancel: the next run leaves them for a later one)."""
    from runner.core.batch_states import chunk_of, left_behind, no_batch, tracked_lines
    from runner.io.batch_state import owned_state

    state = owned_state(job)  # another output's chunks in the folder are not this job's
    if state is None:
        return "", 0, 0, 0
    dropped = sum(chunk_of(c).lines for c in state.chunks if no_batch(c))
    return left_behind(state.chunks), *tracked_lines(state.chunks), dropped


def dry_run_sends(job: JobConfig, pending: int, limit: int | None) -> tuple[list[str], int]:
    """``--dry-run``: what the job's tracked chunks hold and what ``--limit`` keeps (lines
    for the person), and how many lines the run would pay for (the estimate's count). Any
    mode: a job switched to realtime leaves its open batch chunks to them."""
    left, paid, queued, dropped = tracked_note(job)
    parts = [left] if left else []
    if left or dropped:
        parts.append(f"{paid:,} lines already in batches")
    if dropped:
        parts.append(
            f"{dropped:,} in chunks batches cancel dropped (the next run notes them, a later "
            "one sends them)"
        )
    notes = [f"  tracked: {'; '.join(parts)}"] if parts else []
    sends = to_send(pending - dropped, limit, paid, queued)
    if limit is not None and sends < pending - paid - dropped:
        notes.append(f"  --limit {limit:,}: this run sends {sends:,} of them")
    return notes, sends


def to_send(pending: int, limit: int | None, paid: int = 0, queued: int = 0) -> int:
    """What a run would pay for now: the built chunks, then new items up to ``--limit``;
    lines already in batches are paid for and never sent again."""
    new = max(0, pending - paid - queued)
    return queued + (new if limit is None else min(new, limit))


def shown_path(path: Path) -> str:
    """``path`` as a person would type it here: relative to the current folder when inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
