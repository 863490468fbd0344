"""Pure: input items + resume index + config -> what to do for each job.

``iter_pending`` is the one place that decides whether an input line is work: finished keys
(per the resume index) and keys already seen earlier in the same file are skipped, so a URL
listed twice is sent once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from .config import BatchConfig, JobConfig
from .inputs import InvalidLine, Item
from .store import ResumeIndex, key_hash

Route = Literal["realtime", "batch"]


@dataclass
class PendingCounts:
    pending: int = 0
    done: int = 0
    failed: int = 0  # of done: finished with a permanent error record
    invalid: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class JobPlan:
    job: JobConfig
    route: Route
    why: str
    counts: PendingCounts

    @property
    def pending(self) -> int:
        return self.counts.pending


def iter_pending(
    items: Iterable[Item | InvalidLine], index: ResumeIndex, counts: PendingCounts | None = None
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """Yield (key hash, item) for every line that still needs work, each key once."""
    counts = counts if counts is not None else PendingCounts()
    seen: set[int] = set()
    for item in items:
        h = key_hash(item.key)
        if index.is_done(h):
            counts.done += 1
            if h in index.failed:
                counts.failed += 1
            continue
        if h in seen:
            counts.duplicates += 1
            continue
        seen.add(h)
        if isinstance(item, InvalidLine):
            counts.invalid += 1
        else:
            counts.pending += 1
        yield h, item


def count_pending(items: Iterable[Item | InvalidLine], index: ResumeIndex) -> PendingCounts:
    counts = PendingCounts()
    for _ in iter_pending(items, index, counts):
        pass
    return counts


def choose_route(job: JobConfig, pending: int, batch: BatchConfig) -> tuple[Route, str]:
    if job.mode == "realtime":
        return "realtime", "mode: realtime"
    if job.mode == "batch":
        return "batch", "mode: batch"
    if pending > batch.threshold:
        return "batch", f"mode: auto, {pending} pending > batch.threshold {batch.threshold}"
    return "realtime", f"mode: auto, {pending} pending <= batch.threshold {batch.threshold}"


def make_plan(job: JobConfig, counts: PendingCounts, batch: BatchConfig) -> JobPlan:
    route, why = choose_route(job, counts.pending, batch)
    return JobPlan(job, route, why, counts)
