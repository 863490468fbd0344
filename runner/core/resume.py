"""Pure: which keys are finished, per the latest record of each (8-byte key hashes, no records).

Two layers: ``base`` is a ``KeyTable`` (sorted hashes and one state byte each: numpy arrays, or
blocks read on demand from the persistent index beside the output, so ten million keys cost a 160 KB
fence, not Python objects), and the sets ``ok``/``failed``/``retryable``/``invalid`` hold what was
read after it (the output's tail). A key in the sets wins over the base: the later record wins.

A key whose latest record is ``invalid_input`` is INVALID: not done (the line was never sent, so a
run whose config now makes it valid sends it), but not to be recorded again while the line is still
invalid (``runner.core.plan.iter_pending``), so a bad line costs one record, not one per run.

A job's records may be spread over several files (its main output and one per shard, see
``runner.core.shard``); the job's index is the merge of the per-file indexes (``merge``).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runner.core.keys import key_hash

NONE, OK, FAILED, RETRYABLE, INVALID = 0, 1, 2, 3, 4  # a key's state, as stored in the KeyTable
DONE = (OK, FAILED)  # the states a run skips; RETRYABLE and INVALID lines are read again
DONE_AGAIN = 5  # a pre-filter's code for a finished line whose key an earlier line had


def record_state(status: str | None, final: bool, invalid: bool = False) -> int:
    """The state a record gives its key: ok, a permanent error, an input line that could not
    become a request (``invalid``: never sent), or an error to retry."""
    if status == "ok":
        return OK
    if invalid:
        return INVALID
    return FAILED if final else RETRYABLE


def numpy() -> Any:
    """numpy, imported on first use: a run whose output has no records never loads it."""
    import numpy as np

    return np


def digests_to_ints(digests: bytes) -> list[int]:
    """The key hashes of joined 8-byte little-endian digests."""
    values = array("Q")
    values.frombytes(digests)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


BLOCK = 512  # keys per block of a fenced table (one 4 KiB read)


class DoneOnce:
    """The finished keys one read of the input has counted, so that a finished URL listed
    twice counts as done once and then as a duplicate line, as a pending one does. Every
    finished key is in the resume index, so a byte per key of its base table (made at the
    first finished line: 10 MB for ten million keys) and a dict of those read after it (the
    output's tail, small) do it without a set of every finished key.

    With ``prefix`` (the input's finished prefix as the reader grows it, see
    ``runner.io.inputs.TextPrefix``), a key is marked 1 while that prefix may still grow and
    2 after: a line after the prefix repeating a key marked 1 sets ``prefix.straddled``, since
    a plan that starts reading at the prefix would count that key as done a second time."""

    __slots__ = ("_base", "_later", "prefix")

    def __init__(self) -> None:
        self._base: bytearray | None = None
        self._later: dict[int, int] = {}
        self.prefix: Any = None

    @property
    def phase(self) -> int:
        """The mark of a key first seen now: 1 while the prefix may grow, else 2."""
        return 1 if self.prefix is None or self.prefix.growing else 2

    def repeated(self, mark: int) -> None:
        """A key marked ``mark`` came again."""
        if mark == 1 and self.phase == 2:
            self.prefix.straddled = True

    def marks(self, n: int) -> bytearray:
        """A byte per key of a base table of ``n`` keys: its mark once a line had it."""
        if self._base is None:
            self._base = bytearray(n)
        return self._base

    def first(self, slot: int, h: int, n: int) -> bool:
        """True the first time the finished key ``h`` is seen: ``slot`` is its position in
        the base table of ``n`` keys, or -1 when its state was read after the base."""
        if slot < 0:
            mark = self._later.get(h, 0)
            if not mark:
                self._later[h] = self.phase
        else:
            seen = self.marks(n)
            mark = seen[slot]
            if not mark:
                seen[slot] = self.phase
        if mark:
            self.repeated(mark)
        return not mark


class KeyTable:
    """Sorted unique uint64 key hashes with a uint8 state each (OK, FAILED, RETRYABLE or
    INVALID).

    In memory (``keys``, ``states`` numpy arrays), or fenced: only every BLOCK-th key
    (``fence``, an ``array('Q')``) is in memory and ``read(start, stop)`` (I/O, given by
    ``runner.io.keyindex``) fetches the raw keys and states of a range, so a few look-ups in ten
    million keys read a few blocks; those are answered with ``bisect`` and never import numpy
    (0.1-0.3 s of a resume's start). A look-up of many keys at once reads the whole table once
    instead (then kept).
    """

    __slots__ = ("_keys", "_read", "_states", "fence", "n")

    def __init__(
        self,
        keys: Any = None,
        states: Any = None,
        *,
        n: int = 0,
        fence: array[int] | None = None,
        read: Callable[[int, int], tuple[bytes, bytes]] | None = None,
    ):
        self._keys, self._states = keys, states
        self.n = int(keys.shape[0]) if keys is not None else n
        self.fence, self._read = fence, read

    @property
    def keys(self) -> Any:
        if self._keys is None:
            np = numpy()
            assert self._read is not None
            keys, states = self._read(0, self.n)
            self._keys = np.frombuffer(keys, dtype=np.uint64)
            self._states = np.frombuffer(states, dtype=np.uint8)
        return self._keys

    @property
    def states(self) -> Any:
        if self._states is None:
            _ = self.keys  # reads keys and states
        return self._states

    def __len__(self) -> int:
        return self.n

    def locate(self, q: Any) -> tuple[Any, Any, Any]:
        """For sorted uint64 queries: (insert positions, found mask, states or NONE)."""
        np = numpy()
        if self.n == 0:
            zeros = np.zeros(len(q), dtype=np.intp)
            return zeros, zeros.astype(bool), zeros.astype(np.uint8)
        if self.fence is not None and self._keys is None and len(q) * 8 < len(self.fence):
            return self._locate_blocks(q)
        keys = self.keys
        pos = keys.searchsorted(q)
        at = np.minimum(pos, self.n - 1)
        found = keys[at] == q
        return pos, found, np.where(found, self.states[at], NONE)

    def _locate_blocks(self, q: Any) -> tuple[Any, Any, Any]:
        np = numpy()
        assert self._read is not None and self.fence is not None
        fence = np.frombuffer(self.fence, dtype=np.uint64)
        blocks = np.maximum(fence.searchsorted(q, side="right") - 1, 0)
        pos = np.empty(len(q), dtype=np.intp)
        found = np.zeros(len(q), dtype=bool)
        codes = np.zeros(len(q), dtype=np.uint8)
        for b in np.unique(blocks).tolist():
            sel = blocks == b
            start = b * BLOCK
            raw_keys, raw_states = self._read(start, min(self.n, start + BLOCK))
            keys = np.frombuffer(raw_keys, dtype=np.uint64)
            states = np.frombuffer(raw_states, dtype=np.uint8)
            p = keys.searchsorted(q[sel])
            at = np.minimum(p, len(keys) - 1)
            hit = keys[at] == q[sel]
            pos[sel] = start + p
            found[sel] = hit
            codes[sel] = np.where(hit, states[at], NONE)
        return pos, found, codes

    def _few(self, hashes: list[int], slots: list[int] | None = None) -> list[int] | None:
        """The states of a few hashes of a fenced table, by bisect on the blocks they fall
        in (None: the table is in memory, or the look-up is large enough for numpy); with
        ``slots`` (one -1 per hash), the position of each one found."""
        fence, read = self.fence, self._read
        if self._keys is not None or fence is None or read is None:
            return None
        if len(hashes) * 8 >= len(fence):
            return None
        out = [NONE] * len(hashes)
        blocks: dict[int, list[int]] = {}
        for i, h in enumerate(hashes):
            blocks.setdefault(max(bisect_right(fence, h) - 1, 0), []).append(i)
        for b, where in blocks.items():
            start = b * BLOCK
            raw_keys, raw_states = read(start, min(self.n, start + BLOCK))
            keys = array("Q")
            keys.frombytes(raw_keys)
            for i in where:
                at = bisect_left(keys, hashes[i])
                if at < len(keys) and keys[at] == hashes[i]:
                    out[i] = raw_states[at]
                    if slots is not None:
                        slots[i] = start + at
        return out

    def state(self, h: int) -> int:
        return self.find(h)[1]

    def find(self, h: int) -> tuple[int, int]:
        """(position in the table, state) of ``h``; (-1, NONE) when absent."""
        where = [-1]
        few = self._few([h], where)
        if few is not None:
            return where[0], few[0]
        np = numpy()
        pos, found, codes = self.locate(np.array([h], dtype=np.uint64))
        return (int(pos[0]), int(codes[0])) if found[0] else (-1, NONE)

    def states_of_digests(self, digests: bytes, once: DoneOnce | None = None) -> list[int]:
        """Per key, given as joined 8-byte little-endian digests: OK, FAILED, INVALID, or NONE
        for absent and RETRYABLE alike (a pre-filter's question: done, recorded invalid, or
        to do); with ``once``, DONE_AGAIN for each of those a line before had (the first one
        is marked). No Python int per key unless the table is fenced and the look-up small."""
        if self._keys is None and self.fence is not None and len(digests) < len(self.fence):
            hashes = digests_to_ints(digests)
            slots = [-1] * len(hashes)
            few = self._few(hashes, slots)
            if few is not None:
                codes = [NONE if code == RETRYABLE else code for code in few]
                if once is not None:
                    for i, code in enumerate(codes):
                        if code != NONE and not once.first(slots[i], hashes[i], self.n):
                            codes[i] = DONE_AGAIN
                return codes
        np = numpy()
        q = np.frombuffer(digests, dtype="<u8")
        order = np.argsort(q)  # sorted queries walk the table in order (cache-friendly)
        sq = q[order]
        keys = self.keys
        at = np.minimum(keys.searchsorted(sq), self.n - 1)
        found = np.where(keys[at] == sq, self.states[at], NONE)
        found[found == RETRYABLE] = NONE
        if once is not None:
            _mark_repeats(found, at, once, self.n)
        out = np.empty(len(q), dtype=np.uint8)
        out[order] = found
        states: list[int] = out.tolist()
        return states

    def states_of(self, hashes: list[int]) -> list[int]:
        """The state of each hash (NONE when absent), the whole list searched at once."""
        few = self._few(hashes)
        if few is not None:
            return few
        np = numpy()
        q = np.array(hashes, dtype=np.uint64)
        order = np.argsort(q)
        out = np.empty(len(q), dtype=np.uint8)
        out[order] = self.locate(q[order])[2]  # sorted queries walk the table in order
        codes: list[int] = out.tolist()
        return codes

    def counts(self) -> list[int]:
        """Keys per state, indexed by state. INVALID is what the others leave: a temporary
        array per state costs a byte per key (and np.bincount eight)."""
        np = numpy()
        found = [0] + [int(np.count_nonzero(self.states == s)) for s in (OK, FAILED, RETRYABLE)]
        return [*found, self.n - sum(found)]

    @staticmethod
    def from_sequence(hashes: Any, states: Any) -> KeyTable:
        """The latest state per hash of a sequence in record order (later entries win)."""
        np = numpy()
        h = np.asarray(hashes, dtype=np.uint64)
        s = np.asarray(states, dtype=np.uint8)
        if h.shape[0] == 0:
            return KeyTable(h, s)
        order = np.argsort(h, kind="stable")  # equal hashes keep record order
        h, s = h[order], s[order]
        del order
        last = np.empty(h.shape[0], dtype=bool)
        last[-1] = True
        np.not_equal(h[1:], h[:-1], out=last[:-1])  # the last of each run of equal hashes
        return KeyTable(h[last], s[last])

    @staticmethod
    def from_digests(digests: bytearray, odd: list[tuple[int, int]]) -> KeyTable:
        """``from_sequence`` of little-endian 8-byte digests in record order, every state OK
        but the (position, state) pairs in ``odd``. All OK (the usual full scan): a plain sort
        (a tenth of a stable argsort's time), the duplicates dropped."""
        np = numpy()
        h = np.frombuffer(digests, dtype="<u8").astype(np.uint64, copy=False)
        if odd:
            s = np.full(h.shape[0], OK, dtype=np.uint8)
            where = np.fromiter((i for i, _ in odd), dtype=np.intp, count=len(odd))
            s[where] = np.fromiter((st for _, st in odd), dtype=np.uint8, count=len(odd))
            return KeyTable.from_sequence(h, s)
        keys = np.sort(h)
        keep = np.empty(keys.shape[0], dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        if not keep.all():
            keys = keys[keep]
        return KeyTable(keys, np.full(keys.shape[0], OK, dtype=np.uint8))

    @staticmethod
    def empty() -> KeyTable:
        np = numpy()
        return KeyTable(np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint8))


def _mark_repeats(found: Any, at: Any, once: DoneOnce, n: int) -> None:
    """In ``found`` (states of sorted queries at table positions ``at``), the keys an earlier
    batch had (marked in ``once``) and all but one of equal queries become DONE_AGAIN; the
    others are marked. Which of a batch's equal lines counts does not matter: one is done,
    the others duplicates, wherever a finished prefix of the input ends between them."""
    np = numpy()
    hit = np.flatnonzero(found != NONE)
    if not len(hit):
        return
    seen = np.frombuffer(once.marks(n), dtype=np.uint8)
    pos = at[hit]
    prior = seen[pos]
    again = prior != 0
    if again.any():
        once.repeated(int(prior.min(initial=2, where=again)))
    again[1:] |= pos[1:] == pos[:-1]
    seen[pos[~again]] = once.phase
    found[hit[again]] = DONE_AGAIN


@dataclass
class ResumeIndex:
    """Which keys are finished (ok, or a permanent error) per the latest record of each."""

    ok: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    retryable: set[int] = field(default_factory=set)
    invalid: set[int] = field(default_factory=set)
    records: int = 0
    corrupt_lines: list[int] = field(default_factory=list)
    base: KeyTable | None = None
    # the tail changed the state of a key the base had as done (another tool rewrote history)
    changed_done: bool = False
    # where it came from: the covered offset of the persistent index used (-1: a full scan),
    # output bytes read in all (just after the last newline), lines in them, and the index's
    # stable_from (no record after it changed the state of a key that was done before it)
    persisted: int = -1
    scanned: int = 0
    lines: int = 0
    stable_from: int = 0

    def state(self, h: int) -> int:
        if h in self.ok:
            return OK
        if h in self.failed:
            return FAILED
        if h in self.retryable:
            return RETRYABLE
        if h in self.invalid:
            return INVALID
        return self.base.state(h) if self.base is not None else NONE

    def is_done(self, h: int) -> bool:
        if h in self.ok or h in self.failed:
            return True
        if self.base is None or h in self.retryable or h in self.invalid:
            return False
        return self.base.state(h) in DONE

    def states_of(self, hashes: list[int]) -> list[int]:
        """``state`` of each hash, the base's looked up all at once (a key read after the
        base wins over it, as in ``state``)."""
        out = [NONE] * len(hashes)
        rest: list[int] = []
        for i, h in enumerate(hashes):
            for code, held in enumerate(self._overlay_sets(), start=OK):
                if h in held:
                    out[i] = code
                    break
            else:
                rest.append(i)
        if rest and self.base is not None:
            found = self.base.states_of([hashes[i] for i in rest])
            for i, code in zip(rest, found, strict=True):
                out[i] = code
        return out

    def done_slot(self, h: int) -> int | None:
        """None when ``h`` is not done; else where its state is kept: -1 for a key read
        after the base, its position in the base otherwise (``plan.DoneOnce`` marks it)."""
        if h in self.ok or h in self.failed:
            return -1
        if self.base is None or h in self.retryable or h in self.invalid:
            return None
        pos, state = self.base.find(h)
        return pos if state in DONE else None

    @property
    def empty(self) -> bool:
        return not (self.ok or self.failed or self.retryable or self.invalid) and not self.base

    def add(self, key: str, status: str | None, final: bool, invalid: bool = False) -> None:
        self.add_hash(key_hash(key), record_state(status, final, invalid))

    def add_hash(self, h: int, state: int) -> None:
        """The key's latest record has ``state`` (OK, FAILED, RETRYABLE or INVALID)."""
        if self.base is not None and not self.changed_done:
            before = self.state(h)
            if before in DONE and before != state:
                self.changed_done = True
        sets = self._overlay_sets()
        mine = sets[state - OK]
        mine.add(h)
        for held in sets:
            if held and held is not mine:  # usually empty: an all-ok tail costs one add
                held.discard(h)

    def _overlay_sets(self) -> tuple[set[int], set[int], set[int], set[int]]:
        """The sets of the keys read after the base, in state order (OK first)."""
        return self.ok, self.failed, self.retryable, self.invalid

    def merge(self, other: ResumeIndex) -> None:
        """Fold another file's index into this one. Files have no order between them, so a
        finished state wins: ok over a permanent error over an invalid line over a retryable
        error (a key finished in any file is never sent again; as ``glmrun export`` ranks
        them). Only a sharded job merges; an index with a base is materialised into sets first
        (the merged index is never saved: each file keeps its own persistent index)."""
        mine, theirs = self.sets(), other.sets()
        self.base = None
        self.ok, self.failed, self.retryable, self.invalid = mine
        self.ok |= theirs[0]
        self.failed |= theirs[1]
        self.failed -= self.ok
        self.invalid |= theirs[3]
        self.invalid -= self.ok
        self.invalid -= self.failed
        self.retryable |= theirs[2]
        self.retryable -= self.ok
        self.retryable -= self.failed
        self.retryable -= self.invalid
        self.records += other.records
        self.corrupt_lines.extend(other.corrupt_lines)
        self.persisted, self.scanned = -1, 0  # describes no one file (no plan note from it)

    def overlay(self) -> Iterator[tuple[int, int]]:
        """(hash, state) of every key read after the base."""
        yield from ((h, OK) for h in self.ok)
        yield from ((h, FAILED) for h in self.failed)
        yield from ((h, RETRYABLE) for h in self.retryable)
        yield from ((h, INVALID) for h in self.invalid)

    def sets(self) -> tuple[set[int], set[int], set[int], set[int]]:
        """(ok, failed, retryable, invalid) as Python sets, base and overlay merged (tests,
        small outputs)."""
        merged: dict[int, int] = {}
        if self.base is not None:
            merged = dict(zip(self.base.keys.tolist(), self.base.states.tolist(), strict=True))
        merged.update(self.overlay())
        out: tuple[set[int], set[int], set[int], set[int]] = (set(), set(), set(), set())
        for h, code in merged.items():
            out[code - 1].add(h)
        return out

    def counts(self) -> dict[str, int]:
        """Keys per state (base and overlay merged)."""
        out = {"ok": 0, "failed": 0, "retryable": 0, "invalid": 0}
        names = {OK: "ok", FAILED: "failed", RETRYABLE: "retryable", INVALID: "invalid"}
        if self.base is not None:
            per_state = self.base.counts()
            for code, name in names.items():
                out[name] = per_state[code]
            for h, code in self.overlay():
                old = self.base.state(h)
                if old != NONE:
                    out[names[old]] -= 1
                out[names[code]] += 1
        else:
            sets = zip(names.values(), self._overlay_sets(), strict=True)
            out = {name: len(held) for name, held in sets}
        return out

    def __len__(self) -> int:
        return sum(self.counts().values())

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"<ResumeIndex ok={c['ok']} failed={c['failed']} retryable={c['retryable']} "
            f"invalid={c['invalid']}>"
        )
