"""The progress bar line and the end-of-job summary line."""

from __future__ import annotations

import io

from runner.app.progress import Progress, format_summary, progress_line
from runner.core.stats import JobStats


def stats() -> JobStats:
    s = JobStats(
        "describe",
        total=400,
        ok=150,
        errors=2,
        skipped=7,
        duplicates=1,
        requests=170,
        retries=18,
        throttled=5,
        in_flight=16,
        concurrency=16,
        prompt_tokens=1200,
        completion_tokens=300,
    )
    s.started = 100.0
    s.finished = 110.0
    return s


def test_tty_bar_shows_done_total_rate_eta_errors_in_flight() -> None:
    """On a TTY the bar redraws one line with done/total, rate, ETA, errors and in-flight."""
    stream = io.StringIO()
    Progress(stats(), tty=True, stream=stream).show()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[2K") and "\n" not in text
    assert "152/400" in text and "15.2/s" in text and "eta 00:16" in text
    assert "err 2" in text and "inflight 16" in text


def test_progress_line_when_everything_was_done_before() -> None:
    """Nothing pending still draws a full bar instead of dividing by zero."""
    assert "0/0 100.0%" in progress_line(JobStats("t"))


def test_summary_has_every_figure() -> None:
    """The summary names ok, errors, skipped, requests, retries, tokens, wall time, requests/s."""
    line = format_summary(stats())
    assert line.startswith(
        "describe: ok 150, errors 2 (invalid input 0), skipped as done 7, duplicates 1; "
    )
    assert "requests 170, retries 18 (throttled 5); tokens 1200 in / 300 out;" in line
    assert line.endswith("10.0s, 17.0 req/s")
