"""Bulk work done in one go, such as turning a batch result file into records or reading a
chunk's sidecar: the cyclic garbage collector waits until it is over.

Such work makes a small tuple or list for every line it reads (the rows of one ``findall``,
their columns, the fields of a split). None of them can form a reference cycle: they hold
bytes, and they are freed by reference counting as soon as the step ends. Yet each 700 of
them start a pass of the collector over everything young, and every tenth of those passes
over more. ``benchmarks/bench_batch.py`` (collect, interleaved runs): about 5 % faster with
the collector paused. It runs again as soon as the step ends; while the step runs nothing else
does (the step is synchronous), so nothing else goes without it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the ``with`` block, on again after it (unless it
    was off before: then it stays off). Reference counting frees as usual meanwhile."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
