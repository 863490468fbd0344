"""The adaptive controller's benchmark figures in the ideal model (``capped_server``).

The live benchmarks (``run_all.py`` adaptive16, adaptive64, adaptive-schedule, adaptive-slow,
shards) take minutes and swing with the machine's load; here the same schedules run in model
time, without sockets, CPU or process start-up, so a controller change that costs throughput,
throttles or fairness fails in seconds. Each bound sits a little below (or above) what the
controller reaches today, noted beside it; the live figures are lower by start-up and CPU.
A single client runs at several clock offsets, since where the cycle grid falls against the
moment the cap moves decides how soon a rise is found.
"""

from __future__ import annotations

import random
import statistics

import pytest

from runner.core.adaptive import AdaptiveLimit
from tests.core.capped_server import ClientTrace, run, step_cap

OFFSETS_S = (1000.0, 1000.13, 1000.31, 1000.77, 1001.5)
Schedule = list[tuple[float, int]]


def capacity(schedule: Schedule, latency_s: float, until_s: float) -> float:
    """Answers a client holding exactly the cap would have had by ``until_s``."""
    total = 0.0
    for i, (start, cap) in enumerate(schedule):
        end = schedule[i + 1][0] if i + 1 < len(schedule) else until_s
        total += cap / latency_s * max(0.0, min(end, until_s) - start)
    return total


def throttled_share(traces: list[ClientTrace]) -> float:
    sent = sum(t.ok + t.throttled for t in traces)
    return sum(t.throttled for t in traces) / sent


def run_alone(
    schedule: Schedule, latency_s: float, jitter_s: float, duration_s: float, offset_s: float
) -> tuple[float, float]:
    """(share of the time-weighted capacity, throttled share) of one client."""
    trace = run(
        [AdaptiveLimit()],
        step_cap(schedule),
        duration_s,
        latency_s=latency_s,
        jitter_s=jitter_s,
        throttle_latency_s=0.002,
        clock_offset_s=offset_s,
    )[0]
    return trace.ok / capacity(schedule, latency_s, duration_s), throttled_share([trace])


ALONE = [
    # schedule, latency, jitter, duration, worst ratio, mean ratio, throttled (today's figures)
    pytest.param([(0, 16)], 0.2, 0.0, 25.0, 0.96, 0.96, 0.02, id="16 @ 200 ms (0.971, 1.7 %)"),
    pytest.param([(0, 64)], 0.2, 0.0, 20.0, 0.93, 0.93, 0.006, id="64 @ 200 ms (0.946, 0.4 %)"),
    pytest.param(
        [(0, 16), (6, 4), (12, 32)],
        0.2,
        0.0,
        17.0,
        0.92,
        0.93,
        0.03,
        id="16->4->32 @ 200 ms (0.926-0.945, mean 0.935; 2.8 %)",
    ),
    pytest.param(
        [(0, 8), (20, 32), (40, 12)],
        2.0,
        0.5,
        57.0,
        0.82,
        0.9,
        0.03,
        id="8->32->12 @ 2+-0.5 s (0.839-0.972, mean 0.92; 2.8 %)",
    ),
]


@pytest.mark.parametrize("schedule,latency_s,jitter_s,duration_s,worst,mean,throttled", ALONE)
def test_one_client_keeps_the_capacity_with_few_throttles(
    schedule: Schedule,
    latency_s: float,
    jitter_s: float,
    duration_s: float,
    worst: float,
    mean: float,
    throttled: float,
) -> None:
    """One client against a fixed or moving cap, at five grid phases: the share of the
    time-weighted capacity (start included) and of requests throttled stay within bounds."""
    figures = [run_alone(schedule, latency_s, jitter_s, duration_s, o) for o in OFFSETS_S]
    ratios = [r for r, _ in figures]
    assert min(ratios) >= worst, ratios
    assert statistics.mean(ratios) >= mean, ratios
    assert max(t for _, t in figures) <= throttled, figures


def run_together(
    seed: int,
    clients: int,
    cap: int,
    *,
    within_s: float,
    jitter_s: float,
    lag_s: list[float] | None = None,
) -> tuple[list[float], list[ClientTrace]]:
    """``clients`` controllers started at random moments within ``within_s`` on one cap at
    200 ms +- ``jitter_s`` for 40 s: (their starts, their traces)."""
    rng = random.Random(seed)
    starts = sorted(rng.uniform(0.0, within_s) for _ in range(clients))
    traces = run(
        [AdaptiveLimit() for _ in range(clients)],
        step_cap([(0, cap)]),
        40.0,
        latency_s=0.2,
        jitter_s=jitter_s,
        throttle_latency_s=0.002,
        starts_s=starts,
        clock_offset_s=1000.0 + 0.37 * seed,
        seed=seed,
        lag_s=lag_s,
    )
    return starts, traces


def run_shards(seed: int, clients: int = 4, cap: int = 16) -> tuple[float, float, list[float]]:
    """``clients`` clients started within a second of each other (as processes are) on one cap
    at 200 +- 30 ms for 40 s: (combined share of capacity, throttled share, each client's
    answers from 3 s after the last start, relative to the mean)."""
    duration = 40.0
    starts, traces = run_together(seed, clients, cap, within_s=1.0, jitter_s=0.03)
    since = starts[-1] + 3.0
    counts = [sum(1 for t in trace.ok_times if t >= since) for trace in traces]
    mean = statistics.mean(counts)
    combined = sum(t.ok for t in traces) / capacity([(0, cap)], 0.2, duration)
    return combined, throttled_share(traces), [k / mean for k in counts]


def test_four_shards_share_one_account_fairly() -> None:
    """Issue 13's benchmark in the model, 12 seeds: 4 clients on cap 16 together keep >= 0.95
    of it (today 0.97), <= 5 % of requests throttled in every seed (today 2.7 % median, 3.1 %
    at most), each client within 0.6x-1.6x of the mean in every seed (today 0.81-1.14; before
    the common ticks' give-back 0.73-1.30) and the median smallest share >= 0.8 (today 0.94)."""
    figures = [run_shards(seed) for seed in range(12)]
    for combined, throttled, shares in figures:
        assert combined >= 0.95
        assert throttled <= 0.05
        assert min(shares) >= 0.6 and max(shares) <= 1.6, shares
    assert statistics.median(min(shares) for _, _, shares in figures) >= 0.8


def run_processes(
    seed: int, clients: int = 4, cap: int = 32, each: int = 800, lag_s: list[float] | None = None
) -> tuple[float, float, list[float]]:
    """``run_all.py``'s adaptive-shared in the model: ``clients`` processes started within 0.3 s
    (as 4 launched together on 2 cores are) on a cap of 32 at 200 +- 50 ms, counted until the
    first has ``each`` answers: (combined share of capacity, throttled share, each client's
    answers relative to the mean; the start-up's head start included, as the benchmark does)."""
    _, traces = run_together(seed, clients, cap, within_s=0.3, jitter_s=0.05, lag_s=lag_s)
    window = min(t.ok_times[each - 1] for t in traces if len(t.ok_times) >= each)
    counts = [sum(1 for t in trace.ok_times if t <= window) for trace in traces]
    refused = sum(sum(1 for t in trace.throttle_times if t <= window) for trace in traces)
    mean = statistics.mean(counts)
    combined = sum(counts) / capacity([(0, cap)], 0.2, window)
    return combined, refused / (refused + sum(counts)), [k / mean for k in counts]


def test_four_processes_share_one_account_fairly_from_their_start() -> None:
    """24 seeds: together >= 0.95 of the cap (today 0.967 at worst), <= 4 % throttled (1.9 %),
    the smallest share >= 0.8 of the mean in every seed (0.82 at worst) and >= 0.9 in the
    median (0.91). Before the common ticks' give-back: median 0.87, 3 seeds below 0.8 (0.77),
    as the live benchmark's 0.68 - 0.97 spread showed."""
    figures = [run_processes(seed) for seed in range(24)]
    for combined, throttled, shares in figures:
        assert combined >= 0.95 and throttled <= 0.04
        assert min(shares) >= 0.8, shares
    assert statistics.median(min(shares) for _, _, shares in figures) >= 0.9


def test_processes_whose_event_loops_lag_still_get_near_their_share() -> None:
    """The same with each process's answers and refusals reaching it up to 0, 5, 10 or 20 ms
    late (a busy machine's CPU shared unevenly): the climbs after a give-back run at one pace
    for all, so a process whose refusals come back later does not lose the race at every
    cycle. 24 seeds: the median smallest share >= 0.75 of the mean (today 0.86; when each
    climbed at its own quiet window, 0.52), none below 0.6 (0.73; then 0.37)."""
    figures = [run_processes(seed, lag_s=[0.0, 0.005, 0.01, 0.02]) for seed in range(24)]
    smallest = [min(shares) for _, _, shares in figures]
    assert min(smallest) >= 0.6 and statistics.median(smallest) >= 0.75, smallest
    assert all(throttled <= 0.04 for _, throttled, _ in figures)


def run_late_joiner(cap: int, join_s: float, seed: int) -> tuple[float, float]:
    """A client holding ``cap`` alone, and a second one starting ``join_s`` later (200 +- 30
    ms): (the newcomer's answers over the 15 s from 5 s after it joined, relative to the
    mean of the two; seconds until the server first held a quarter of the cap of its
    requests)."""
    traces = run(
        [AdaptiveLimit(), AdaptiveLimit()],
        step_cap([(0, cap)]),
        join_s + 20.0,
        latency_s=0.2,
        jitter_s=0.03,
        starts_s=[0.0, join_s],
        seed=seed,
        clock_offset_s=1000.0 + 0.37 * seed,
    )
    late = [sum(1 for t in trace.ok_times if t >= join_s + 5.0) for trace in traces]
    quarter = next((t for t, k in traces[1].admitted if k >= cap / 4), float("inf"))
    return late[1] / statistics.mean(late), quarter - join_s


@pytest.mark.parametrize("cap", [16, 32, 64])
def test_a_client_joining_late_gets_in_and_near_its_share(cap: int) -> None:
    """The give-back of a client alone is what lets a later one in: joining 5 or 10.3 s after
    another took the whole cap, in 4 seeds each, the newcomer has a quarter of the cap in
    flight within 12 s and at least 0.5 of the mean share over its next 15 s (today 0.57 at
    worst, on a cap of 64; 0.78 on 16 and 32; a quarter within 8.4 s at worst; before the
    common ticks' give-back 0.46 and 14 s; giving back 5 or 7 % instead of 10 %, or draining
    an eighth of a round trip instead of a quarter, dropped a seed to 0.34 - 0.37 and another
    past 15 s)."""
    for join_s in (5.0, 10.3):
        for seed in range(4):
            share, quarter_s = run_late_joiner(cap, join_s, seed)
            assert share >= 0.5 and quarter_s <= 12.0, (join_s, seed, share, quarter_s)


def test_a_client_that_cannot_fill_its_limit_does_not_raise_it() -> None:
    """A client whose own CPU keeps it at 20 requests out, on a cap of 64: it gets what it
    sends (20 per round trip) and its limit stays near 20 (slow start's paced raises may
    run a round trip's growth ahead) rather than climbing to ``max_limit`` unused, from where,
    once it could send faster, it would send 256 at once into a cap of 64."""
    ctl = AdaptiveLimit()
    traces = run(
        [ctl], step_cap([(0, 64)]), 30.0, latency_s=0.2, clock_offset_s=OFFSETS_S[1], demand=20
    )
    assert ctl.limit <= 30
    assert traces[0].throttled == 0
    assert traces[0].ok >= 0.95 * 20 / 0.2 * 30
