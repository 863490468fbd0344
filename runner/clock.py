"""The one time source: engines, the throttle, the writer and JWT take a ``Clock``.

Tests pass a ``FakeClock`` and advance time instead of sleeping; ``sleep_or_stop`` is the
one way anything in glmrun waits while a stop signal may cut the wait short.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "<SystemClock>"


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """``sleep(s)`` records ``s``, advances ``now`` and yields once: waits are asserted,
    not waited."""

    def __init__(self, start: float = 1_000.0):
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<FakeClock now={self.now:.3f} sleeps={len(self.sleeps)}>"


async def sleep_or_stop(
    seconds: float, stop: asyncio.Event | None, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """Wait ``seconds`` on ``clock``, or less if ``stop`` is set first; True when stopped."""
    if stop is None:
        await clock.sleep(seconds)
        return False
    if stop.is_set():
        return True
    if clock is SYSTEM_CLOCK:  # the common case, without a second task
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waiter.cancel()
    return stop.is_set()
