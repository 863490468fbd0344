"""Bulk work done in one go, such as turning a batch result file into records, reading a
chunk's sidecar, or the process's own start-up: the cyclic garbage collector waits until it is
over.

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

# gen-0 threshold while the program starts: more objects than importing glmrun, aiohttp and
# their libraries creates (about 36,000), so no pass runs before the event loop starts
START_UP_THRESHOLD = 100_000
_saved_threshold: tuple[int, int, int] | None = None


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


def pause_gc_for_start_up() -> None:
    """Called first thing by the glmrun program (``runner.cli``). Importing what a run uses
    creates ~36,000 objects that live as long as the process (modules, classes, functions)
    and no garbage worth a pass; with the usual threshold (700) the collector makes ~85
    passes over them meanwhile, about 20 ms of a one-URL run's 0.3 s to its first request.
    The threshold is raised, not the collector switched off: a command that never reaches
    ``start_up_over`` still collects (every 100,000 allocations)."""
    global _saved_threshold
    if _saved_threshold is None:
        _saved_threshold = gc.get_threshold()
        gc.set_threshold(START_UP_THRESHOLD, *_saved_threshold[1:])


def start_up_over() -> None:
    """The usual threshold again (the event loop is about to start). What start-up made is
    moved out of the collector's generations first (``gc.freeze``): a long run's full passes
    do not walk it again and again."""
    global _saved_threshold
    if _saved_threshold is not None:
        gc.freeze()
        gc.set_threshold(*_saved_threshold)
        _saved_threshold = None
