"""The adaptive concurrency controller's arithmetic, driven directly with no traffic."""

from __future__ import annotations

import pytest

from runner.core.adaptive import AdaptiveLimit


def grow(ctl: AdaptiveLimit, n: int, latency_s: float = 0.2) -> int:
    for _ in range(n):
        ctl.on_success(latency_s)
    return ctl.limit


def test_starts_low_and_doubles_per_round_trip_in_slow_start() -> None:
    """Slow start adds one per success, so a full round trip of successes doubles the limit."""
    ctl = AdaptiveLimit(max_limit=256, initial=4)
    assert ctl.limit == 4
    assert grow(ctl, 4) == 8
    assert grow(ctl, 8) == 16


def test_never_exceeds_the_ceiling_setting() -> None:
    """limits.max_concurrency caps the limit however long requests succeed."""
    ctl = AdaptiveLimit(max_limit=10, initial=4)
    assert grow(ctl, 1000) == 10


def test_first_throttle_cuts_multiplicatively_and_ends_slow_start() -> None:
    """A throttle after a clean stretch cuts to max_beta of the limit; growth becomes additive."""
    ctl = AdaptiveLimit(max_limit=256, initial=4)
    grow(ctl, 28)  # slow start to 32
    ctl.on_throttled(now=10.0)
    assert ctl.value == pytest.approx(32 * ctl.max_beta)
    after_cut = ctl.value
    grow(ctl, int(after_cut))  # one round trip of successes
    assert ctl.value - after_cut < 1  # probing near the ceiling, not doubling


def test_a_burst_of_throttles_cuts_once_then_steps_down_by_one() -> None:
    """Within the cool-down (one round trip) further throttles subtract one each, not multiply."""
    ctl = AdaptiveLimit(max_limit=256, initial=4)
    grow(ctl, 28, latency_s=0.2)  # 32, rtt 0.2
    ctl.on_throttled(now=100.0)
    first = ctl.value
    assert first == pytest.approx(32 * 0.95)
    for i in range(1, 6):
        ctl.on_throttled(now=100.0 + 0.01 * i)
    assert ctl.value == pytest.approx(first - 5)
    assert ctl.cuts == 1


def test_throttle_after_the_cool_down_cuts_by_the_share_that_got_through() -> None:
    """A second cut after the cool-down uses the throttled share since the last cut (deep drop)."""
    ctl = AdaptiveLimit(max_limit=256, initial=16)
    grow(ctl, 0)
    ctl.rtt_s = 0.2
    ctl.on_throttled(now=0.0)  # cut 1
    v = ctl.value
    grow(ctl, 2)
    v = ctl.value
    ctl.ok_since_cut, ctl.throttled_since_cut = (
        3,
        8,
    )  # 3 of 12 attempts got through (incl. the next)
    ctl.on_throttled(now=1.0)
    assert ctl.cuts == 2
    assert ctl.value == pytest.approx(v * ctl.min_beta)  # 3/12 = 0.25 clamps to min_beta 0.5


def test_limit_never_drops_below_the_minimum() -> None:
    """However many throttles arrive, the gate admits at least one request."""
    ctl = AdaptiveLimit(max_limit=256, initial=4)
    for i in range(100):
        ctl.on_throttled(now=float(i))
    assert ctl.limit == 1


def test_other_failures_leave_the_limit_alone() -> None:
    """Timeouts, 500s and per-item refusals say nothing about the account's concurrency."""
    ctl = AdaptiveLimit(initial=8)
    for verdict in ("retry", "record", "stop"):
        assert ctl.on_result(verdict, 0.1, now=1.0) == 8
    assert ctl.on_result("throttle", 0.0, now=1.0) == 4  # nothing got through yet: min_beta
    assert ctl.on_result("ok", 0.1, now=1.0) == 4


def test_probe_near_the_ceiling_is_slow_and_forgets_it_when_passed() -> None:
    """Near the last throttle point growth is a small probe; 10% past it, slow start resumes."""
    ctl = AdaptiveLimit(max_limit=256, initial=4)
    grow(ctl, 12)  # 16
    ctl.on_throttled(now=0.0)  # ceiling 16, value 15.2
    assert ctl.ceiling == pytest.approx(16)
    start = ctl.value
    grow(ctl, 15)  # one round trip
    assert ctl.value - start == pytest.approx(ctl.probe_gain, rel=0.1)
    grow(ctl, 2000)  # the server never throttles again: the limit keeps searching upwards
    assert ctl.ceiling is None
    assert ctl.limit == 256


def test_steady_state_against_a_hidden_limit_stays_near_it_with_few_throttles() -> None:
    """Replaying a server with hidden limit 16 round by round: ~0.95 of it, throttles ~1%."""
    ctl = AdaptiveLimit(max_limit=256, initial=4)
    hidden, now, sent, throttled, used = 16, 0.0, 0, 0, 0.0
    for _ in range(500):  # round trips of 0.2 s
        limit = ctl.limit
        admitted = min(limit, hidden)
        for _ in range(limit - admitted):
            throttled += 1
            ctl.on_throttled(now)
        for _ in range(admitted):
            ctl.on_success(0.2)
        sent += limit
        used += admitted
        now += 0.2
    assert used / (500 * hidden) >= 0.9
    assert throttled / sent <= 0.05
