"""Pure: input items + resume index + config -> what to do for each job.

``iter_pending`` is the one place that decides whether an input line is work: finished keys
(per the resume index) and keys already seen earlier in the same file are skipped, so a URL
listed twice is sent once. With ``--shard I/N`` it also skips the items another shard owns
(``runner.core.shard``), before anything else, so they count nowhere but in ``other_shards``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from runner.config.schema import BatchConfig, JobConfig
from runner.core.hashset import HashSet
from runner.core.items import InvalidLine, Item
from runner.core.keys import key_digests, key_hash
from runner.core.resume import (
    DONE_AGAIN,
    FAILED,
    INVALID,
    NONE,
    OK,
    DoneOnce,
    ResumeIndex,
    digests_to_ints,
)
from runner.core.shard import Shard

Route = Literal["realtime", "batch"]

OTHER_SHARD = 3  # done_line_filter's code for a line another shard owns
RECORDED_INVALID = INVALID  # its code for a line whose latest record is invalid_input (4)


# DONE_AGAIN (5): its code for a finished line whose key an earlier line of the read had
@dataclass
class PendingCounts:
    """One read of a job's input: lines pending, done (of them failed), invalid, duplicate, and
    another shard's."""

    pending: int = 0
    done: int = 0
    failed: int = 0  # of done: finished with a permanent error record
    invalid: int = 0
    duplicates: int = 0
    other_shards: int = 0  # lines owned by another shard (``--shard I/N``)
    # the finished keys counted so far: the pre-filter and the reader of one read share it
    once: DoneOnce = field(default_factory=DoneOnce, repr=False, compare=False)
    kept: list[tuple[int, Item | InvalidLine]] | None = field(
        default=None, repr=False, compare=False
    )
    # (byte offset, line number) where the input was read from: the lines before were all
    # finished at the last plan (runner.io.plancache), so a second pass starts there too
    start: tuple[int, int] = field(default=(0, 0), repr=False, compare=False)


@dataclass(frozen=True)
class JobPlan:
    """A job's route (realtime or batch), why, and the counts its read of the input found."""

    job: JobConfig
    route: Route
    why: str
    counts: PendingCounts

    @property
    def pending(self) -> int:
        return self.counts.pending


def iter_pending(
    items: Iterable[Item | InvalidLine],
    index: ResumeIndex,
    counts: PendingCounts | None = None,
    shard: Shard | None = None,
) -> Iterator[tuple[int, Item | InvalidLine]]:
    """Yield (key hash, item) for every line that still needs work, each key once.

    A line whose latest record is ``invalid_input`` is work again when it is now valid (it
    was never sent); still invalid, it counts as done with an error, as it did before, and
    is not recorded a second time."""
    counts = counts if counts is not None else PendingCounts()
    seen = HashSet()  # 16-32 bytes per pending key, not a Python set's ~70
    for item in items:
        h = key_hash(item.key)
        if shard is not None and not shard.owns(h):
            counts.other_shards += 1
            continue
        slot = index.done_slot(h)
        if slot is not None:
            if not counts.once.first(slot, h, len(index.base or ())):
                counts.duplicates += 1
            else:
                counts.done += 1
                counts.failed += index.state(h) == FAILED
            continue
        if not seen.add(h):
            counts.duplicates += 1
            continue
        if isinstance(item, InvalidLine):
            if index.state(h) == INVALID:  # still invalid and already recorded: done as before
                counts.done += 1
                counts.failed += 1
                continue
            counts.invalid += 1
        else:
            counts.pending += 1
        yield h, item


def count_pending(
    items: Iterable[Item | InvalidLine],
    index: ResumeIndex,
    *,
    keep: int = 0,
    shard: Shard | None = None,
    once: DoneOnce | None = None,
) -> PendingCounts:
    """Count what is pending; with ``keep``, also hold on to the pending pairs when there are
    at most that many, so a resume with little left to do reads its input once, not twice.
    ``once``: the finished keys the pre-filter of this read counted already."""
    counts = PendingCounts() if once is None else PendingCounts(once=once)
    kept: list[tuple[int, Item | InvalidLine]] | None = [] if keep > 0 else None
    for pair in iter_pending(items, index, counts, shard):
        if kept is not None:
            if len(kept) < keep:
                kept.append(pair)
            else:
                kept = None
    counts.kept = kept
    return counts


def done_line_filter(
    index: ResumeIndex, counts: PendingCounts, shard: Shard | None = None
) -> Callable[[list[bytes]], list[int]] | None:
    """A pre-filter for text inputs, a batch of lines at a time: 1 for a line whose bytes hash
    to an ok key, 2 to a permanently failed one (both counted as done and never parsed), 5
    (``DONE_AGAIN``) to either when an earlier line had the key (counted as a duplicate), 3
    (``OTHER_SHARD``) to a key another shard owns (counted in ``other_shards``, never parsed),
    4 (``RECORDED_INVALID``) to a key whose latest record is invalid_input (not counted: the
    reader parses it again, see ``runner.io.inputs``), 0 for the rest. A text line's key is its
    own text, so its UTF-8 bytes hash exactly like ``key_hash(item.key)``; longer lines (whose
    invalid_input key is shortened) and lines not yet finished take the normal path. The base
    table is searched for the whole batch at once (numpy), the sets read after it per line."""
    if index.empty and shard is None:
        return None
    # the records read after the base win over it: one dict look-up per line (the sets are
    # disjoint, and small: the tail the persistent index does not cover yet)
    later = (
        dict.fromkeys(index.ok, OK)
        | dict.fromkeys(index.failed, FAILED)
        | dict.fromkeys(index.invalid, RECORDED_INVALID)
        | dict.fromkeys(index.retryable, NONE)
    )
    base = index.base
    base_n = len(base) if base is not None else 0

    def skip(lines: list[bytes]) -> list[int]:
        if max(map(len, lines)) > MAX_KEY_BYTES:  # keyed by a shortened text: the normal path
            short = [j for j, x in enumerate(lines) if len(x) <= MAX_KEY_BYTES]
            out = [0] * len(lines)
            codes = skip([lines[j] for j in short]) if short else []
            for j, code in zip(short, codes, strict=True):
                out[j] = code
            return out
        digests = key_digests(lines)  # as bytes: no int per line
        if base_n:
            assert base is not None
            codes = base.states_of_digests(digests, counts.once)  # repeats: DONE_AGAIN
        else:
            codes = [NONE] * len(lines)
        hashes = digests_to_ints(digests) if later or shard is not None else []
        if later:
            codes = [later.get(h, c) for h, c in zip(hashes, codes, strict=True)]
            if OK in codes or FAILED in codes or RECORDED_INVALID in codes:
                _once(codes, hashes)
        out = codes  # OK, FAILED, RECORDED_INVALID, DONE_AGAIN or NONE (RETRYABLE is not done)
        if shard is not None:  # another shard's line counts only there, whatever its state
            n, i = shard.count, shard.index
            out = [OTHER_SHARD if h % n != i else c for h, c in zip(hashes, out, strict=True)]
        others = out.count(OTHER_SHARD)
        again = out.count(DONE_AGAIN)
        counts.other_shards += others
        counts.duplicates += again
        counts.done += len(out) - out.count(0) - others - out.count(RECORDED_INVALID) - again
        counts.failed += out.count(FAILED)
        return out

    def _once(codes: list[int], hashes: list[int]) -> None:
        """Lines whose state was read after the base (``later``) and whose key an earlier
        line had become DONE_AGAIN, as the base's do in ``states_of_digests``."""
        first = counts.once.first
        for j, h in enumerate(hashes):
            if codes[j] in _MARKED and h in later and not first(-1, h, 0):
                codes[j] = DONE_AGAIN

    return skip


_MARKED = frozenset((OK, FAILED, RECORDED_INVALID))
MAX_KEY_BYTES = 2000  # inputs._KEY_CHARS: longer invalid lines are keyed by a shortened text


def choose_route(job: JobConfig, pending: int, batch: BatchConfig) -> tuple[Route, str]:
    if job.mode == "realtime":
        return "realtime", "mode: realtime"
    if job.mode == "batch":
        return "batch", "mode: batch"
    if pending > batch.threshold:
        return "batch", f"mode: auto, {pending:,} pending > batch.threshold {batch.threshold:,}"
    return "realtime", f"mode: auto, {pending:,} pending <= batch.threshold {batch.threshold:,}"


def make_plan(job: JobConfig, counts: PendingCounts, batch: BatchConfig) -> JobPlan:
    route, why = choose_route(job, counts.pending, batch)
    return JobPlan(job, route, why, counts)
