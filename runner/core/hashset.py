"""A set of 64-bit key hashes in 8 bytes per slot (open addressing in an ``array('Q')``).

A Python ``set`` of ints costs ~70 bytes per key (a 32-byte int object plus table slots); this
costs 16-32 (8-byte slots, kept between a quarter and half full). It serves the "seen
earlier in this input" check of ``plan.iter_pending``, which
holds every pending key of a run, so memory stays flat as inputs grow. Lookups run in Python,
about a microsecond each: fine for the pending keys, too slow to replace the resume index's
million-key sets, which are probed once per input line.
"""

from __future__ import annotations

from array import array

_EMPTY = 0
_MASK64 = (1 << 64) - 1


class HashSet:
    __slots__ = ("_limit", "_mask", "_size", "_slots")

    def __init__(self, capacity: int = 1024):
        size = 16
        while size < 2 * capacity:
            size *= 2
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._size = 0
        self._limit = size // 2  # grow at half full: short probe runs

    def add(self, h: int) -> bool:
        """Insert ``h``; True when it was new, False when it was already there."""
        h = (h & _MASK64) or 1  # 0 marks an empty slot
        slots, mask = self._slots, self._mask
        i = h & mask
        while True:
            v = slots[i]
            if v == _EMPTY:
                slots[i] = h
                self._size += 1
                if self._size > self._limit:
                    self._grow()
                return True
            if v == h:
                return False
            i = (i + 1) & mask

    def __contains__(self, h: object) -> bool:
        if not isinstance(h, int):
            return False
        h = (h & _MASK64) or 1
        slots, mask = self._slots, self._mask
        i = h & mask
        while True:
            v = slots[i]
            if v == _EMPTY:
                return False
            if v == h:
                return True
            i = (i + 1) & mask

    def __len__(self) -> int:
        return self._size

    def _grow(self) -> None:
        old = self._slots
        size = 2 * len(old)
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._limit = size // 2
        self._size = 0
        for v in old:
            if v != _EMPTY:
                self._reinsert(v)

    def _reinsert(self, h: int) -> None:
        slots, mask = self._slots, self._mask
        i = h & mask
        while slots[i] != _EMPTY:
            i = (i + 1) & mask
        slots[i] = h
        self._size += 1

    @property
    def nbytes(self) -> int:
        return self._slots.itemsize * len(self._slots)
