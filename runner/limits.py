"""Concurrency and pacing behind one ``async with throttle:``.

- In flight: a counting gate whose limit can move (fixed, or adaptive in ``limits.concurrency:
  auto``); the engine runs enough workers for the ceiling and the gate admits ``limit``.
- Starts per minute: ``AsyncLimiter(1, 60 / rpm)`` spaces starts evenly. ``AsyncLimiter(rpm,
  60)`` would let ``rpm`` requests out at once at start, which is exactly the burst that earns
  429s from a concurrency-limited account.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

from aiolimiter import AsyncLimiter


class Throttle:
    def __init__(self, concurrency: int, *, rpm: int | None = None):
        self.limit = concurrency
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._rpm = AsyncLimiter(1, 60.0 / rpm) if rpm else None

    async def acquire(self) -> None:
        if self.in_flight >= self.limit or self._waiters:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self.release()  # we were handed a slot we will not use: pass it on
                else:
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass
                raise
        else:
            self.in_flight += 1
        if self._rpm is not None:
            try:
                await self._rpm.acquire()
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def set_limit(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._wake()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Throttle in_flight={self.in_flight}/{self.limit} waiting={len(self._waiters)}>"
