"""Live counters of one job, shared by the engine (writes) and progress/summary (reads)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 3  # example keys kept per error code
FLAGS = ("truncated", "parse_error", "schema_errors")  # fields of an ok record worth a line


@dataclass
class JobStats:
    """One job's counts in this run: what the live display and the summary show and the exit
    code is read from."""

    name: str
    route: str = "realtime"
    why: str = ""  # mode auto: why the plan chose its route (the summary says it beside "via")
    total: int = 0  # pending at start (what this run intends to finish)
    ok: int = 0
    errors: int = 0  # error records written this run (invalid input included)
    invalid: int = 0
    to_retry: int = 0  # error records of this run marked retryable: the next run sends them
    skipped: int = 0  # already finished before this run
    duplicates: int = 0
    failed_before: int = 0  # skipped because an earlier run recorded a permanent error
    # items this run left for a later run: a cancelled batch's, a fallback's cut short by a signal
    left_pending: int = 0
    beyond_limit: int = 0  # pending items ``--limit`` kept for the next run
    shard: str | None = None  # "I/N" for a ``--shard`` run: people see which shard a line is
    requests: int = 0  # HTTP chat requests sent (attempts)
    retries: int = 0
    throttled: int = 0
    in_flight: int = 0
    concurrency: int = 0
    prompt_tokens: int = 0
    usage_by_route: dict[str, list[int]] = field(
        default_factory=dict
    )  # route -> [prompt, completion]
    completion_tokens: int = 0
    batches_submitted: int = 0
    batches_running: int = 0  # left running when the run stopped waiting (--no-wait, max_wait_s)
    error_codes: dict[str, int] = field(default_factory=dict)  # error records written, by code
    error_examples: dict[str, list[str]] = field(default_factory=dict)  # code -> first few keys
    # ok records whose answer is not what was asked: ``truncated``, ``parse_error`` and
    # ``schema_errors`` (the record's field) -> how many, and the first few keys
    flagged: dict[str, int] = field(default_factory=dict)
    flagged_examples: dict[str, list[str]] = field(default_factory=dict)
    # ``concurrency: auto``: seconds the controller held each limit (``note_limit``), so the
    # summary can say what the account admitted; empty with a fixed concurrency
    held_s: dict[int, float] = field(default_factory=dict)
    limit_since: float | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def label(self) -> str:
        """The job as people see it in the summary and the live line (``describe shard 2/4``);
        events keep ``name`` (their ``shard`` field is in ``run started``)."""
        return self.name if self.shard is None else f"{self.name} shard {self.shard}"

    @property
    def done(self) -> int:
        return self.ok + self.errors

    @property
    def done_before(self) -> int:
        """Finished by earlier runs (ok or permanent error; ``skipped`` counts both): the
        display counts them as done."""
        return self.skipped

    def note_record(self, record: Any) -> None:
        """Called for every record written: error records are tallied by code, with the first
        ``EXAMPLES`` keys of each code, so the summary can say which URLs failed; ok records
        cut at max_tokens or not the JSON asked for are tallied by that field likewise."""
        if not isinstance(record, dict):
            return
        if record.get("status") == "ok":
            for flag in FLAGS:
                if record.get(flag):
                    self.flagged[flag] = self.flagged.get(flag, 0) + 1
                    examples = self.flagged_examples.setdefault(flag, [])
                    if len(examples) < EXAMPLES:
                        examples.append(str(record.get("url") or record.get("key")))
            return
        if record.get("status") != "error":
            return
        error = record.get("error")
        code = str(error.get("code") if isinstance(error, dict) else None)
        if isinstance(error, dict) and error.get("retryable") is True:
            self.to_retry += 1
        self.error_codes[code] = self.error_codes.get(code, 0) + 1
        examples = self.error_examples.setdefault(code, [])
        if len(examples) < EXAMPLES:
            key = record.get("url") or record.get("key")
            if code == "invalid_input" and isinstance(error, dict):
                key = str(error.get("message") or key).split(":", 1)[0]  # "line 7"
            examples.append(str(key))

    def note_limit(self, limit: int, now: float) -> None:
        """``concurrency: auto``: the controller's limit is ``limit`` from ``now`` on (the
        first call starts the clock; call it once more at the end to count the last limit)."""
        if self.limit_since is not None:
            held = max(0.0, now - self.limit_since)
            self.held_s[self.concurrency] = self.held_s.get(self.concurrency, 0.0) + held
        self.concurrency, self.limit_since = limit, now

    def auto_levels(self) -> tuple[int, int, int] | None:
        """``concurrency: auto``: (low, mostly, high): the limit held longest, and the range
        held for the middle 90 % of the time, so the first ramp and a brief probe do not
        widen it. None with a fixed concurrency or before any time was counted."""
        total = sum(self.held_s.values())
        if total <= 0:
            return None
        mostly = max(self.held_s, key=lambda k: (self.held_s[k], k))
        low = high = mostly
        seen = 0.0
        for level in sorted(self.held_s):
            before, seen = seen, seen + self.held_s[level]
            if before <= 0.05 * total < seen:
                low = level
            if before < 0.95 * total <= seen:
                high = level
        return low, mostly, high

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def add_usage(self, usage: Any, route: str | None = None) -> None:
        """Sum tokens, per job and per route (default: the job's route)."""
        if isinstance(usage, dict):
            p = int(usage.get("prompt_tokens") or 0)
            c = int(usage.get("completion_tokens") or 0)
            self.prompt_tokens += p
            self.completion_tokens += c
            totals = self.usage_by_route.setdefault(route or self.route, [0, 0])
            totals[0] += p
            totals[1] += c

    def summary(self) -> dict[str, Any]:
        elapsed = self.elapsed_s
        return {
            "job": self.name,
            "route": self.route,
            "ok": self.ok,
            "errors": self.errors,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "prompt_tokens": self.prompt_tokens,
            "tokens_by_route": {
                r: {"prompt": t[0], "completion": t[1]} for r, t in self.usage_by_route.items()
            },
            "completion_tokens": self.completion_tokens,
            "error_codes": dict(self.error_codes),
            "failed_before": self.failed_before,
            **self._auto_summary(),
            "wall_s": round(elapsed, 3),
            "requests_per_s": round(self.requests / elapsed, 2) if elapsed > 0 else 0.0,
        }

    def _auto_summary(self) -> dict[str, Any]:
        levels = self.auto_levels()
        if levels is None:
            return {}
        low, mostly, high = levels
        return {"auto_concurrency": {"mostly": mostly, "low": low, "high": high}}
