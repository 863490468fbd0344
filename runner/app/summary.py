"""The end of a job for a person (a short summary, at most about six lines) and for cron
(the job's exit code, and the run's when several jobs disagree).

A rerun with nothing to do is one line. Error records this run wrote are listed by code with
their first few URLs; permanent errors from earlier runs do not fail the run (they are old,
known facts: ``glmrun status --errors`` lists them) unless ``--strict``.
"""

from __future__ import annotations

from typing import IO, Any

from runner.app.display import counted, fmt_duration, fmt_int, overall, spent
from runner.core.stats import JobStats
from runner.errors import (
    EXIT_API_STOPPED,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOME_ERRORS,
    EXIT_TEMPFAIL,
)

MAX_CODES = 3  # error codes listed with examples; the rest are counted on the last one

# What a GLM business code means, in a few words: the summary lists URLs, not messages, and
# "1301 ×2" alone sends a newcomer to the docs (glm-api.md; the message is in each record)
CODE_LABELS = {
    "1210": "invalid parameters",
    "1213": "a required field missing",
    "1214": "a field value invalid",
    "1261": "prompt too long",
    "1300": "blocked by policy",
    "1301": "unsafe content",
    "1302": "concurrency limit",
    "1303": "rate limit",
    "1305": "overloaded",
    "1312": "model overloaded",
    "sensitive": "answer blocked",
    "local_file": "local file gone or changed",
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
            f"{stats.name}: nothing to do — {input_name} has no items (blank and # lines are "
            "skipped)"
        )
    line = f"{stats.name}: nothing to do — {fmt_int(stats.done_before)} done"
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
    head = f"{stats.name}: ok {fmt_int(stats.ok)}, errors {fmt_int(stats.errors)}"
    if stats.invalid:
        head += f" ({plural(stats.invalid, 'invalid line')})"
    head += counted(
        (stats.done_before, ", skipped {} done before"),
        (stats.duplicates, ", {} duplicate lines"),
    )
    head += f" — {fmt_int(done)}/{fmt_int(total)} done"
    head += counted((stats.left_pending, ", {} left for a later run"))
    lines = [head]
    lines.extend(error_lines(stats))
    lines.extend("  " + line for line in traffic(stats, price, currency))
    if stats.failed_before and not stats.errors and not strict:
        n = stats.failed_before
        lines.append(
            f"  {fmt_int(n)} item{'s' if n != 1 else ''} {'have' if n != 1 else 'has'} permanent"
            " errors from earlier runs: glmrun status --errors"
        )
    return lines


def for_terminal(lines: list[str], out: IO[str]) -> list[str]:
    """``lines`` as a person's terminal shows them: each wrapped at spaces to its width, the
    continuation indented under the text, instead of the terminal cutting words and URLs in
    two. Unchanged when ``out`` is not a terminal (a pipe, a file, cron): one line each."""
    try:
        if not out.isatty():
            return lines
    except (AttributeError, ValueError):  # a closed or unusual stream
        return lines
    import shutil
    import textwrap

    width = shutil.get_terminal_size().columns
    wrapped: list[str] = []
    for line in lines:
        if len(line) <= width:
            wrapped.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        wrapped.extend(
            textwrap.wrap(
                line,
                width=max(width, 20),
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return wrapped


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
        out.append(f"  {code}{label} ×{fmt_int(n)}: {', '.join(examples)}{more}")
    rest = codes[MAX_CODES:]
    if rest:
        n = sum(c for _, c in rest)
        out[-1] += f"; {fmt_int(n)} more in {len(rest)} other codes: glmrun status --errors"
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
    if stats.batches_submitted:
        parts.append(f"batches {fmt_int(stats.batches_submitted)} submitted")
    parts.append(f"via {stats.route}")
    elapsed = stats.elapsed_s
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    parts.append(
        f"{fmt_duration(elapsed)}, {rate:,.1f} items/s" if stats.done else fmt_duration(elapsed)
    )
    lines = [" · ".join(parts)]
    if stats.prompt_tokens or stats.completion_tokens:
        tokens = (
            f"tokens {fmt_int(stats.prompt_tokens)} in / {fmt_int(stats.completion_tokens)} out"
        )
        money = spent(stats, price, currency)
        lines.append(f"{tokens} · {money}" if money else tokens)
    return lines
