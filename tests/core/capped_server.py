"""A pure discrete-event model of clients sharing a server with a hidden in-flight cap.

No sockets, no event loop: time is a number. Each client keeps as many requests in flight as
its controller's limit allows (there is always more work waiting, as with glmrun's many
workers). The server admits a request while fewer than ``cap_at(t)`` are in flight, holds
it for a sampled latency and frees the slot a moment before the client sees the answer (as a
real server does); a request over the cap is refused at once with a throttle that reaches the
client after ``throttle_latency_s``. Every answer goes to the client's controller before the
slot is refilled, as in ``runner.engine.realtime``, and a controller's ``wake_at`` is honoured
as ``runner.engine.throttle.AdaptiveGate`` does. The controllers' clock reads
``t + clock_offset_s``, so their cycle grid does not line up with the cap schedule by accident.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Controller(Protocol):
    """What the model drives: ``runner.core.adaptive.AdaptiveLimit``'s interface."""

    @property
    def limit(self) -> int: ...

    def on_result(
        self, verdict: str, latency_s: float, now: float, in_flight: int | None = None
    ) -> int: ...

    def tick(self, now: float, in_flight: int | None = None) -> int: ...

    @property
    def wake_at(self) -> float | None: ...


@dataclass
class ClientTrace:
    """What one client saw, in model time."""

    ok: int = 0
    throttled: int = 0
    ok_times: list[float] = field(default_factory=list)  # when each success reached the client
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (t, server-side in flight)
    throttle_times: list[float] = field(default_factory=list)


def step_cap(schedule: list[tuple[float, int]]) -> Callable[[float], int]:
    """The cap as a step function: ``[(0, 16), (6, 4)]`` is 16 until t=6 s, then 4."""

    def cap_at(t: float) -> int:
        cap = schedule[0][1]
        for at_s, value in schedule:
            if at_s <= t:
                cap = value
        return cap

    return cap_at


def run(
    controllers: list[Controller],
    cap_at: Callable[[float], int],
    duration_s: float,
    *,
    latency_s: float = 0.2,
    jitter_s: float = 0.0,
    throttle_latency_s: float = 0.002,
    one_way_s: float = 0.0005,
    starts_s: list[float] | None = None,
    seed: int = 0,
    clock_offset_s: float = 0.0,
    demand: int | None = None,
    lag_s: list[float] | None = None,
) -> list[ClientTrace]:
    """Run the clients against the server until ``duration_s``; one trace per client. With
    ``demand`` a client never has more than that many requests out, whatever its limit (its
    own CPU, not the server, is the bottleneck). ``lag_s``: per client, the most its event loop
    delays what reaches it (each answer and refusal is late by a uniform share of it), as a
    process that gets less of a busy machine's CPU sees its refusals later."""
    rng = random.Random(seed)
    n = len(controllers)
    starts = starts_s or [0.0] * n
    traces = [ClientTrace() for _ in range(n)]
    limits = [0] * n
    in_flight = [0] * n  # client side: sent, answer not yet seen
    on_server = [0] * n  # server side: admitted, not yet finished
    ticks: list[float | None] = [None] * n  # the wake-up already scheduled per client
    events: list[tuple[float, int, str, int, float]] = []  # (t, seq, kind, client, sent_at)
    seq = 0

    def late(client: int) -> float:
        return rng.uniform(0.0, lag_s[client]) if lag_s else 0.0

    def push(t: float, kind: str, client: int, sent_at: float) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, client, sent_at))

    def fill(client: int, now: float) -> None:
        most = limits[client] if demand is None else min(limits[client], demand)
        while in_flight[client] < most:
            in_flight[client] += 1
            push(now + one_way_s, "arrive", client, now)
        wake = controllers[client].wake_at
        if wake is not None:
            wake -= clock_offset_s
        if wake is not None and wake > now and wake != ticks[client]:
            ticks[client] = wake
            push(wake, "tick", client, wake)

    for i, start in enumerate(starts):
        push(start, "start", i, start)
    while events:
        now, _, kind, i, sent_at = heapq.heappop(events)
        if now > duration_s:
            break
        if kind == "start":
            limits[i] = controllers[i].limit
            fill(i, now)
        elif kind == "tick":
            if ticks[i] == sent_at:
                ticks[i] = None
            limits[i] = controllers[i].tick(now + clock_offset_s, in_flight[i])
            fill(i, now)
        elif kind == "arrive":
            if sum(on_server) >= cap_at(now):
                push(sent_at + throttle_latency_s + late(i), "throttle", i, sent_at)
            else:
                on_server[i] += 1
                traces[i].admitted.append((now, on_server[i]))
                lat = max(0.0, latency_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0))
                push(now + lat, "finish", i, sent_at)
        elif kind == "finish":
            on_server[i] -= 1
            push(now + one_way_s + late(i), "ok", i, sent_at)
        else:
            trace = traces[i]
            if kind == "ok":
                trace.ok += 1
                trace.ok_times.append(now)
            else:
                trace.throttled += 1
                trace.throttle_times.append(now)
            limits[i] = controllers[i].on_result(
                kind, now - sent_at, now + clock_offset_s, in_flight[i]
            )
            in_flight[i] -= 1
            fill(i, now)
    return traces
