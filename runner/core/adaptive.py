"""Pure: the adaptive concurrency controller behind ``limits.concurrency: auto``.

The API's real limit is per-account concurrency that the user does not know. The controller
finds it from the answers alone, like TCP congestion control:

- slow start: +1 per success (the limit doubles every round trip) until the first throttle;
- additive increase: +1 per round trip (``1/limit`` per success) below the last known
  ceiling, and a probe (``probe_gain`` per round trip, sized so the probing costs about
  ``target_throttled_share`` of requests in throttles) once within 10% of it, so the limit
  sits just under the ceiling instead of saw-toothing far below it;
- multiplicative cut on a throttle answer (429, 1302, 1305 ...): the new limit is the share
  of attempts that got through since the last cut (``limit * (1 - throttled share)``),
  clamped to ``[min_beta, max_beta] * limit``. Past the old ceiling without a throttle the
  server's limit may have gone up: the excess over the ceiling doubles every round trip, and
  10% past it the ceiling is forgotten and slow start resumes. A small overshoot costs a
  10% cut; a sudden drop of the hidden limit (16 -> 4) a deep one;
- cool-down: after a cut, further throttles within one round trip (the answers to requests
  sent before the cut) do not cut multiplicatively again, so one burst cuts once; each of
  them still takes one off the limit (a throttled slot would be refilled at once and
  throttled again), which stops by itself once the limit fits the server.

No clock of its own and no I/O: the caller passes ``now`` and the latency it measured. The
engine applies ``limit`` to ``Throttle.set_limit``; tests drive the arithmetic directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class AdaptiveLimit:
    max_limit: int = 256
    initial: int = 4
    min_limit: int = 1
    min_beta: float = 0.5  # deepest single cut
    max_beta: float = 0.95  # mildest single cut
    target_throttled_share: float = 0.01  # what the probe near the ceiling may cost in throttles
    min_probe_gain: float = 0.1  # increase per round trip near the ceiling, at least
    min_cooldown_s: float = 0.05  # floor of the cool-down when round trips are very short
    rtt_alpha: float = 0.1  # EWMA weight of a new latency sample

    def __post_init__(self) -> None:
        self.value: float = float(max(self.min_limit, min(self.initial, self.max_limit)))
        self.ssthresh: float = math.inf  # slow start until the first throttle
        self.ceiling: float | None = None  # the limit at which we were last throttled
        self.rtt_s: float | None = None
        self.last_cut_at: float = -math.inf
        self.ok_since_cut = 0
        self.throttled_since_cut = 0
        self.cuts = 0

    @property
    def limit(self) -> int:
        """What the gate should admit now (whole requests, at least ``min_limit``)."""
        return max(self.min_limit, int(self.value))

    @property
    def cooldown_s(self) -> float:
        return max(self.min_cooldown_s, self.rtt_s or 0.0)

    @property
    def probe_gain(self) -> float:
        """Increase per round trip near the ceiling C, chosen so that one throttle per probe
        cycle is ``target_throttled_share`` of requests: a cycle climbs C * (1 - max_beta) at
        ``g`` per round trip while sending C per round trip, so share = g / (C^2 (1 - beta))."""
        c = self.ceiling or self.value
        return max(self.min_probe_gain, self.target_throttled_share * c * c * (1.0 - self.max_beta))

    def on_success(self, latency_s: float) -> int:
        self.ok_since_cut += 1
        if latency_s >= 0:
            self.rtt_s = (
                latency_s
                if self.rtt_s is None
                else self.rtt_s + self.rtt_alpha * (latency_s - self.rtt_s)
            )
        v = self.value
        if v < self.ssthresh:
            v += 1.0
        elif self.ceiling is not None and v > self.ceiling:
            # past the last ceiling without a throttle: the server's limit may have gone up.
            # The excess doubles every round trip, and 10% past it slow start takes over.
            if v > 1.1 * self.ceiling + 1:
                self.ceiling = None
                self.ssthresh = math.inf
            else:
                v += (v - self.ceiling + self.probe_gain) / v
        elif self.ceiling is not None and v >= 0.9 * self.ceiling:
            v += self.probe_gain / v
        else:
            v += 1.0 / v
        self.value = min(float(self.max_limit), v)
        return self.limit

    def on_throttled(self, now: float) -> int:
        self.throttled_since_cut += 1
        if now - self.last_cut_at < self.cooldown_s:
            # The same burst: no second multiplicative cut, but each further throttle is one
            # request too many (its slot would be refilled at once and throttled again), so
            # step down by one: the steps stop by themselves once the limit fits the server.
            self.value = max(float(self.min_limit), self.value - 1.0)
            self.ssthresh = self.value
            return self.limit
        attempts = self.ok_since_cut + self.throttled_since_cut
        got_through = self.ok_since_cut / attempts
        beta = min(self.max_beta, max(self.min_beta, got_through))
        self.ceiling = self.value
        self.value = max(float(self.min_limit), self.value * beta)
        self.ssthresh = self.value
        self.last_cut_at = now
        self.ok_since_cut = 0
        self.throttled_since_cut = 0
        self.cuts += 1
        return self.limit

    def on_result(self, verdict: str, latency_s: float, now: float) -> int:
        """Feed one attempt's outcome (``retry.Verdict`` value or ``ok``); return the new limit."""
        if verdict == "ok":
            return self.on_success(latency_s)
        if verdict == "throttle":
            return self.on_throttled(now)
        return self.limit  # other failures say nothing about the account's concurrency

    def __repr__(self) -> str:
        return f"<AdaptiveLimit {self.value:.2f} ceiling={self.ceiling} cuts={self.cuts}>"
