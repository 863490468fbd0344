"""Concurrency and pacing behind one ``async with throttle:``.

- In flight: a counting gate whose limit can move (fixed, or adaptive in ``limits.concurrency:
  auto``); the engine runs enough workers for the ceiling and the gate admits ``limit``.
  ``AdaptiveGate`` feeds every answer to a limit controller and applies what it says, also
  at the moments the controller asks to be woken when no answer comes (a limit of 0 is a
  pause that only such a wake-up ends).
- Starts per minute: ``AsyncLimiter(1, 60 / rpm)`` spaces starts evenly. ``AsyncLimiter(rpm,
  60)`` would let ``rpm`` requests out at once at start, which is exactly the burst that earns
  429s from a concurrency-limited account.
- Tokens per minute (``limits.tpm``): a ``TokenBudget`` refilled at ``tpm / 60`` per second.
  Each start charges an estimate (the running mean of answers' ``usage.total_tokens``); when
  the answer comes, ``settle(usage)`` corrects the charge to what the answer really used (a
  failed attempt is refunded).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported by a run with limits.rpm only (it costs ~10 ms of start-up)
    from aiolimiter import AsyncLimiter


class TokenBudget:
    """A token bucket of ``tpm`` tokens per minute that may go into debt by corrections.

    ``wait_s(now)`` says how long until an estimate fits; ``charge`` takes it; ``settle``
    replaces one earlier estimate by the tokens really used. Pure arithmetic on ``now``.
    """

    def __init__(
        self, tpm: int, *, initial_estimate: float = 1200.0, now: float = 0.0, burst_s: float = 1.0
    ):
        self.rate = tpm / 60.0
        self.capacity = max(self.rate * burst_s, 1.0)
        self.level = self.capacity
        self.estimate = float(initial_estimate)
        self.samples = 0
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self.level = min(self.capacity, self.level + (now - self._at) * self.rate)
            self._at = now

    def wait_s(self, now: float) -> float:
        """Seconds until the current estimate can be charged (0 when it fits now)."""
        self._refill(now)
        need = min(
            self.estimate, self.capacity
        )  # an answer bigger than the bucket still goes, alone
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def charge(self, now: float) -> float:
        self._refill(now)
        charged = self.estimate
        self.level -= charged
        return charged

    def settle(self, charged: float, used: int | None) -> None:
        """Correct a charge: ``used`` tokens really spent (None: the attempt failed, refund)."""
        actual = 0.0 if used is None else float(used)
        self.level = min(self.capacity, self.level + charged - actual)
        if used is not None and used > 0:
            self.samples += 1
            weight = 1.0 / self.samples if self.samples < 20 else 0.05
            self.estimate += weight * (used - self.estimate)


def total_tokens(usage: object) -> int | None:
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if isinstance(total, int):
            return total
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) or isinstance(completion, int):
            return int(prompt or 0) + int(completion or 0)
    return None


def _spaced_starts(rpm: int) -> AsyncLimiter:
    """One start every ``60 / rpm`` s; aiolimiter is imported only by runs that pace starts."""
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(1, 60.0 / rpm)


class Throttle:
    def __init__(
        self,
        concurrency: int,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ):
        self.limit = concurrency
        self.in_flight = 0  # slots taken (a request waiting for its rpm start holds one)
        self.starting = 0  # of those, requests waiting for their rpm start
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._rpm = _spaced_starts(rpm) if rpm else None
        self._monotonic = monotonic
        self._sleep = sleep
        self.tokens = TokenBudget(tpm, now=monotonic()) if tpm else None
        self._token_lock = asyncio.Lock() if tpm else None

    async def charge_tokens(self) -> float:
        """Wait until the token budget fits one more request's estimate, and charge it.

        Returns the amount charged (pass it to ``settle_tokens``); 0 without ``limits.tpm``.
        Waiters queue on a lock so a large backlog is admitted in order, one estimate at a time.
        """
        budget = self.tokens
        if budget is None or self._token_lock is None:
            return 0.0
        async with self._token_lock:
            while (delay := budget.wait_s(self._monotonic())) > 0:
                await self._sleep(delay)
            return budget.charge(self._monotonic())

    def settle_tokens(self, charged: float, usage: object) -> None:
        if self.tokens is not None:
            self.tokens.settle(charged, total_tokens(usage))

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
            self.starting += 1
            try:
                await self._rpm.acquire()
            except BaseException:
                self.release()
                raise
            finally:
                self.starting -= 1

    @property
    def out(self) -> int:
        """Requests out (or about to be): the slots taken but those waiting for their start."""
        return self.in_flight - self.starting

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
        """Admit ``limit`` at once (0 pauses: requests in flight finish, none start)."""
        self.limit = max(0, limit)
        self._wake()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Throttle in_flight={self.in_flight}/{self.limit} waiting={len(self._waiters)}>"


class LimitController(Protocol):
    """What ``AdaptiveGate`` needs from a controller (``runner.core.adaptive.AdaptiveLimit``)."""

    @property
    def limit(self) -> int: ...

    @property
    def wake_at(self) -> float | None: ...

    def on_result(
        self, verdict: str, latency_s: float, now: float, in_flight: int | None = None
    ) -> int: ...

    def tick(self, now: float, in_flight: int | None = None) -> int: ...


class AdaptiveGate:
    """Moves a ``Throttle``'s limit as a controller decides, from answers and from time.

    ``on_result`` is the engine's hook (called before the attempt's slot is released, so a cut
    lands before a waiter takes the slot). After each decision a loop timer is set for the
    controller's ``wake_at``: a raise is confirmed by a quiet window and a pause ends at a
    deadline, both of which may pass with no answer at all. ``close`` cancels the timer.
    """

    def __init__(
        self,
        controller: LimitController,
        throttle: Throttle,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] | None = None,
    ):
        self.controller = controller
        self.throttle = throttle
        self._monotonic = monotonic
        self._on_change = on_change
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    def on_result(self, verdict: str, latency_s: float) -> None:
        """The controller hears the requests actually out (``Throttle.out``), not the slots
        taken: with ``limits.rpm`` the pace of starts, not the limit, may be what holds them."""
        now, in_flight = self._monotonic(), self.throttle.out
        self._apply(self.controller.on_result(verdict, latency_s, now, in_flight))

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        now, in_flight = self._monotonic(), self.throttle.out
        self._apply(self.controller.tick(now, in_flight), after_tick=True)

    def _apply(self, limit: int, *, after_tick: bool = False) -> None:
        """Set the limit, and a timer for the controller's next deadline (one in the past
        after a tick would spin: a controller keeps its deadlines ahead of ``now``)."""
        if self._closed:
            return
        if limit != self.throttle.limit:
            self.throttle.set_limit(limit)
            if self._on_change is not None:
                self._on_change(limit)
        wake_at = self.controller.wake_at
        if wake_at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if wake_at is not None:
            delay = wake_at - self._monotonic()
            if delay <= 0 and after_tick:
                return  # a tick left the deadline in the past: wait for an answer instead
            self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._tick)
            self._timer_at = wake_at

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None

    def __repr__(self) -> str:
        limit, wake_at = self.throttle.limit, self._timer_at
        return f"<AdaptiveGate {self.controller!r} limit={limit} wake_at={wake_at}>"
