"""Progress while a run goes on, and the summary at its end.

On a TTY a live one-line bar is redrawn a few times a second; without one (cron, pipes) a
``progress`` log event is written every ``progress_interval_s`` instead, so logs stay short.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import IO

from runner.core.stats import JobStats

log = logging.getLogger(__name__)


def progress_line(stats: JobStats) -> str:
    done = stats.done
    total = max(stats.total, done)
    rate = stats.rate
    eta = (total - done) / rate if rate > 0 and total > done else 0.0
    pct = 100.0 * done / total if total else 100.0
    width = 24
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    return (
        f"{stats.name} [{bar}] {done}/{total} {pct:5.1f}% {rate:7.1f}/s eta {_fmt_s(eta)} "
        f"err {stats.errors} inflight {stats.in_flight} conc {stats.concurrency}"
    )


def _fmt_s(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(
        self,
        stats: JobStats,
        *,
        tty: bool | None = None,
        interval_s: float = 10.0,
        stream: IO[str] | None = None,
    ):
        self.stats = stats
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = 0.25 if self.tty else interval_s

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                self.show()
        finally:
            if self.tty:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()

    def show(self) -> None:
        s = self.stats
        if self.tty:
            self.stream.write("\r\x1b[2K" + progress_line(s))
            self.stream.flush()
        else:
            log.info(
                "progress",
                extra={
                    "job": s.name,
                    "done": s.done,
                    "total": s.total,
                    "ok": s.ok,
                    "errors": s.errors,
                    "in_flight": s.in_flight,
                    "concurrency": s.concurrency,
                    "rate": round(s.rate, 1),
                },
            )


def format_summary(stats: JobStats) -> str:
    s = stats.summary()
    return (
        f"{s['job']}: ok {s['ok']}, errors {s['errors']} (invalid input {s['invalid']}), "
        f"skipped as done {s['skipped']}, duplicates {s['duplicates']}; "
        f"requests {s['requests']}, retries {s['retries']} (throttled {s['throttled']}); "
        f"tokens {s['prompt_tokens']} in / {s['completion_tokens']} out; "
        f"via {s['route']}; {s['wall_s']:.1f}s, {s['requests_per_s']:.1f} req/s"
    )
