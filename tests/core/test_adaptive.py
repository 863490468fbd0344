"""The adaptive concurrency controller's arithmetic, driven directly and against a modelled
server (``capped_server``): no sockets, no event loop, time is a number."""

from __future__ import annotations

import math
import statistics

import pytest

from runner.core.adaptive import AdaptiveLimit
from tests.core.capped_server import ClientTrace, run, step_cap

THROTTLE_S = 0.002  # how long a refusal takes to come back in these tests


def in_flight_reached(trace: ClientTrace, since: float, level: float) -> float:
    """When the server first held ``level`` of this client's requests at once after ``since``."""
    return next((t for t, k in trace.admitted if t >= since and k >= level), float("inf"))


def quiet_after(trace: ClientTrace, since: float, gap_s: float) -> float:
    """Start of the first ``gap_s`` without a throttle after ``since`` (the drop is digested)."""
    last = since
    for t in trace.throttle_times:
        if t < since:
            continue
        if t - last >= gap_s:
            break
        last = t
    return last


# --- arithmetic ------------------------------------------------------------------------------


def holding_at(level: int, now: float = 10.0, latency_s: float = 0.2) -> AdaptiveLimit:
    """A controller that slow-started to ``level + 1``, was refused there and holds ``level``."""
    ctl = AdaptiveLimit(initial=level)
    ctl.on_success(latency_s, now)
    ctl.on_throttled(now + THROTTLE_S, THROTTLE_S)
    assert ctl.limit == level and ctl.phase == "hold"
    return ctl


def test_slow_start_adds_one_per_answer_until_the_first_throttle() -> None:
    """Each success adds one (the limit doubles per round trip); a throttle ends it, one off."""
    ctl = AdaptiveLimit(initial=4)
    assert ctl.limit == 4
    for i in range(4):
        ctl.on_success(0.2, 1.0 + i / 100)
    assert ctl.limit == 8
    assert ctl.on_throttled(1.1, THROTTLE_S) == 7
    assert ctl.phase == "hold"


def test_slow_start_admits_raises_a_tenth_per_window() -> None:
    """Answers arriving together raise the count at once, but the gate gets the raise a tenth
    (at least one slot) per ``min_window_s``: a refusal is back before much more is sent."""
    ctl = AdaptiveLimit(initial=20)
    for _ in range(20):
        ctl.on_success(0.2, 1.0)
    assert ctl.value == 40 and ctl.limit == 21  # the first answer's raise only
    ctl.tick(1.0 + ctl.min_window_s)
    assert ctl.limit == 23  # 21 + 2.1


def test_slow_start_ends_when_answers_slow_down() -> None:
    """Answers taking 1.5 times the fastest mean the path is full before the cap (HyStart)."""
    ctl = AdaptiveLimit(initial=4)
    for i in range(8):
        ctl.on_success(0.2, 1.0 + i / 100)
    assert ctl.limit == 12
    for i in range(6):
        ctl.on_success(0.5, 1.2 + i / 100)
    assert ctl.phase == "hold"
    assert ctl.limit < 12 + 6


def test_a_refusal_never_takes_the_limit_below_the_requests_still_out() -> None:
    """Refusals of a raise that overshot arrive together; the limit falls to what is still out
    (then one per refusal), so retries of the refused ones are not sent into a full server."""
    ctl = AdaptiveLimit(initial=50)
    assert ctl.on_throttled(1.0, THROTTLE_S, in_flight=30) == 29
    assert ctl.on_throttled(1.0, THROTTLE_S, in_flight=29) == 28


def test_each_request_refused_after_a_raise_takes_one_off() -> None:
    """Requests beyond the cap come back refused together; each was one too many."""
    ctl = AdaptiveLimit(initial=20)
    for _ in range(4):
        ctl.on_throttled(1.0, THROTTLE_S)
    assert ctl.limit == 16
    assert ctl.cuts == 0  # the rest of a refused raise, not a drop


def test_never_exceeds_max_limit() -> None:
    """limits.max_concurrency caps the limit in slow start and in every climb after it."""
    ctl = AdaptiveLimit(max_limit=10, initial=4, give_back=0.5)  # climbs take steps of 2+
    now, seen = 0.0, []
    for _ in range(2000):  # a server that never refuses: slow start, then cycles that give
        now += 0.005  # back and climb again
        ctl.tick(now)
        seen.append(ctl.on_success(0.2, now))
    assert max(seen) == 10


def test_other_failures_leave_the_limit_alone() -> None:
    """Timeouts, 500s and per-item refusals say nothing about the account's concurrency."""
    ctl = AdaptiveLimit(initial=8)
    for verdict in ("retry", "record", "stop"):
        assert ctl.on_result(verdict, 0.1, now=1.0) == 8
    assert ctl.on_result("ok", 0.1, now=1.0) == 9


def test_cycle_gives_back_then_climbs_a_step_per_quiet_window() -> None:
    """At its cycle the controller gives back a share, waits for it to drain (and a quiet
    window per doubling of its limit, at most the drain again), then climbs one step per quiet
    window, never before the window ends."""
    ctl = holding_at(40)
    cycle = ctl.wake_at
    assert cycle is not None and cycle > 10.2  # at least a round trip after the refusal
    ctl.tick(cycle)
    assert ctl.phase == "give" and ctl.limit == 36  # 10 % of 40
    climb = ctl.wake_at
    drain = 0.25 * 0.2
    assert climb == pytest.approx(cycle + drain + min(drain, ctl.window_s * math.log2(36)))
    assert ctl.tick(climb) == 37
    window = ctl.window_s
    ctl.on_success(0.2, climb + window / 2)
    assert ctl.limit == 37  # not confirmed yet
    assert ctl.tick(climb + window) == 38
    ctl.on_success(0.2, climb + 1.5 * window)  # the raise to 38 in use (no count: assumed)
    assert ctl.tick(climb + 2.001 * window) == 40  # steps 1, 1, 2, 2 ... up to the old level


def test_past_the_old_level_a_climb_starts_again_from_one_slot() -> None:
    """Once the probe one past the level held before is admitted, the steps start again at 1,
    1, 2, 2 ...: on a busy event loop answers lag, a probe can be admitted by mistake, and the
    climb then overshoots by a few slots, not by the doubling the refill had reached."""
    ctl = holding_at(40)
    cycle = ctl.wake_at
    assert cycle is not None
    ctl.tick(cycle)  # gives back 4
    levels = []
    for _ in range(8):
        now = ctl.wake_at
        assert now is not None
        levels.append(ctl.tick(now))
        ctl.on_success(0.2, now + ctl.window_s / 2)  # answers keep arriving
    assert levels == [37, 38, 40, 41, 42, 43, 45, 47]


def test_above_the_highest_limit_held_a_climb_doubles_per_half_round_trip() -> None:
    """Above the highest limit held, each new slot opens a new connection, and on a loaded
    machine its refusal can take 60 ms where the refusals seen so far took 2 (the quiet window
    is then 10 ms). A climb from 16 into a cap that rose to 32 must not run far past it in
    the 60 ms before the first refusal is back: doubling per half a round trip there, it has
    reached 53 by then (every slot past 32 a throttle); at a quarter round trip, as below the
    highest limit, it reached 92 (a live run drew 70 throttles so)."""
    ctl = holding_at(16)
    cycle = ctl.wake_at
    assert cycle is not None
    ctl.tick(cycle)
    over_at = None
    while True:
        now = ctl.wake_at
        assert now is not None
        limit = ctl.tick(now, in_flight=ctl.limit)
        ctl.on_success(0.2, now + ctl.window_s / 2, in_flight=ctl.limit)  # answers arrive
        if limit > 32 and over_at is None:
            over_at = now
        if over_at is not None and now >= over_at + 0.06:
            break
    assert ctl.limit <= 1.7 * 32


def test_a_quiet_window_with_no_answers_proves_nothing() -> None:
    """If no answer has come for a round trip (a stall), a climb waits for the next answer."""
    ctl = holding_at(40)
    cycle = ctl.wake_at
    assert cycle is not None
    ctl.tick(cycle)
    climb = ctl.wake_at
    assert climb is not None
    ctl.tick(climb)
    stalled = climb + 5.0
    assert ctl.tick(stalled) == 37
    assert ctl.wake_at is None  # no timer: the next answer decides
    assert ctl.on_success(0.2, stalled + 0.01) == 38


def test_slow_start_grows_only_a_limit_in_use() -> None:
    """Answers that find fewer requests out than the limit (the client cannot send faster)
    do not raise it: a limit nobody uses proves nothing about the server."""
    ctl = AdaptiveLimit(initial=8)
    for i in range(20):
        ctl.on_success(0.2, 1.0 + i / 100, in_flight=3)
    assert ctl.limit == 8
    for i in range(4):
        ctl.on_success(0.2, 1.3 + i / 100, in_flight=ctl.limit)
    assert ctl.limit == 12


def test_a_climb_waits_until_its_last_raise_is_in_use() -> None:
    """After a give-back the climb raises one step; while no more than 20 requests are out
    (answers and ticks say so) it takes no further step, however long it waits. Once the
    requests fill the raised limit, the climb goes on."""
    ctl = holding_at(40)
    cycle = ctl.wake_at
    assert cycle is not None
    ctl.tick(cycle, in_flight=20)
    climb = ctl.wake_at
    assert climb is not None
    assert ctl.tick(climb, in_flight=20) == 37
    now = climb
    for _ in range(200):
        now += ctl.window_s
        ctl.on_success(0.2, now, in_flight=20)
        ctl.tick(now + ctl.window_s / 2, in_flight=20)
    assert ctl.limit == 37 and ctl.phase == "climb"
    now += ctl.window_s
    assert ctl.on_success(0.2, now, in_flight=37) == 38  # filled: the next step
    assert ctl.tick(now + ctl.window_s, in_flight=38) == 40  # 1, 1, 2 ...


def test_two_unprompted_throttles_within_a_round_trip_cut_deeply() -> None:
    """Holding, one stray throttle takes one off; a second within a round trip is a drop."""
    ctl = holding_at(20)
    now = 12.0
    assert ctl.on_throttled(now, THROTTLE_S) == 19
    ctl.on_throttled(now + 0.05, THROTTLE_S)
    assert ctl.value == pytest.approx(19 * ctl.drop_beta)
    assert ctl.cuts == 1


def test_the_climb_after_a_drop_is_no_sign_of_another_client() -> None:
    """After a drop the limit falls further as requests sent before it come back refused; the
    climb that then finds the new level is refused above that low point, which says where
    the cap fell to, not that another client left slots (nor blocks the faster probing)."""
    ctl = holding_at(16)
    ctl.on_throttled(12.0, THROTTLE_S, in_flight=16)
    ctl.on_throttled(12.05, THROTTLE_S, in_flight=16)
    assert ctl.cuts == 1
    ctl.on_throttled(12.06, THROTTLE_S, in_flight=4)  # sent before the drop
    assert ctl.limit == 3
    now = ctl.wake_at
    assert now is not None
    assert ctl.tick(now) == 4  # the climb from the cut
    ctl.on_success(0.2, now + ctl.window_s / 2)
    assert ctl.tick(now + ctl.window_s) == 5
    ctl.on_throttled(now + ctl.window_s + THROTTLE_S, THROTTLE_S, in_flight=5)
    assert ctl.limit == 4
    assert ctl.signs == 0 and ctl._recovering()


def test_the_climb_after_a_drop_starts_when_the_drain_ends_not_at_the_next_cycle() -> None:
    """The cut after a drop goes deep on purpose (to ``drop_beta`` of the limit); the climb
    that finds the new level starts once the requests sent before the drop have come back
    (a round trip), not at the next tick of the cycle grid, which at 2 s answers is up to
    6 s away: that long at a third of the cap was a tenth of a minute-long run's results."""
    ctl = holding_at(32, now=10.0, latency_s=2.0)
    grid_tick = ctl.next_cycle_at
    drop_at = grid_tick - 5.8  # just after the grid's previous tick
    ctl.on_success(2.0, drop_at - 0.5)
    ctl.on_throttled(drop_at, THROTTLE_S, in_flight=32)
    ctl.on_throttled(drop_at + 0.05, THROTTLE_S, in_flight=31)
    assert ctl.cuts == 1 and ctl.limit == 10
    assert ctl.next_cycle_at == grid_tick
    woke = ctl.wake_at
    assert woke is not None and woke == pytest.approx(ctl.cool_until)
    assert woke < grid_tick - 1.0  # the drain ends well before the next cycle
    ctl.on_success(2.0, woke - 0.1)  # answers keep coming
    assert ctl.tick(woke, in_flight=10) == 11  # the climb begins at once
    assert ctl.phase == "climb"


def test_starved_controller_pauses_with_a_wake_up() -> None:
    """Refused at the minimum, the limit is 0 (no hammering) and a wake-up is always set."""
    ctl = AdaptiveLimit(initial=2)
    ctl.on_throttled(0.1, THROTTLE_S)
    assert ctl.limit == 1
    ctl.on_throttled(0.1, THROTTLE_S)
    assert ctl.limit == 0
    wake = ctl.wake_at
    assert wake is not None and wake > 0.1
    assert ctl.tick(wake) == 1


def test_smaller_clients_climb_sooner_after_a_give_back() -> None:
    """Of two clients giving back at the same instant, the smaller one starts its climb first, so
    it wins the race for the slots the larger one gave back: the pull towards equal shares."""
    small, large = holding_at(4), holding_at(24)
    cycle = large.wake_at
    assert cycle is not None and small.wake_at == cycle
    small.tick(cycle)
    large.tick(cycle)
    small_climb, large_climb = small.wake_at, large.wake_at
    assert small_climb is not None and large_climb is not None
    assert large_climb - small_climb >= 2 * small.window_s


def refused_below_its_level(ctl: AdaptiveLimit) -> float:
    """One cycle in which another client takes the slots given back: the climb's first step is
    refused. Returns when that cycle began."""
    cycle = ctl.wake_at
    assert cycle is not None and ctl.phase == "hold"
    ctl.tick(cycle)
    climb = ctl.wake_at
    assert climb is not None and ctl.phase == "give"
    level = ctl.tick(climb)
    ctl.on_throttled(climb + THROTTLE_S, THROTTLE_S, in_flight=level)
    return cycle


def test_two_signs_of_another_client_switch_to_the_shared_pace() -> None:
    """A climb refused below where it was refused last is a sign of another client (or of a cap
    that fell): one is not enough, two within a few cycles switch to the shared pace, whose
    cycles are ``shared_cycle`` grid ticks apart and give back more."""
    ctl = holding_at(16)
    refused_below_its_level(ctl)
    assert ctl.shared == 0
    refused_below_its_level(ctl)
    assert ctl.shared == ctl.shared_cycles
    grid = ctl.grid_s
    assert grid is not None
    cycle = refused_below_its_level(ctl)
    ticks = cycle / (grid * ctl.shared_cycle)
    assert ticks == pytest.approx(round(ticks))
    level, owed = ctl.limit, ctl.owed
    ctl.tick(ctl.next_cycle_at)
    assert ctl.limit == level - math.floor(ctl.shared_give_back * level + owed)


def test_one_client_on_a_steady_cap_never_takes_the_shared_pace() -> None:
    """Refused one past the same level every cycle: no sign, the single pace throughout."""
    traces = run(
        [ctl := AdaptiveLimit()],
        step_cap([(0, 16)]),
        30.0,
        latency_s=0.2,
        jitter_s=0.02,
        throttle_latency_s=THROTTLE_S,
        clock_offset_s=1000.0,
    )
    assert traces[0].throttled > 20 and ctl.shared == 0 and ctl.signs == 0


def test_processes_with_close_round_trips_share_the_cycle_grid() -> None:
    """Cycles start at multiples of ~3 round trips rounded to 3 * 2^k seconds, so two
    processes on one machine whose round trips differ a little give back at the same instants."""
    a, b = holding_at(16, latency_s=0.195), holding_at(16, latency_s=0.21)
    assert a.grid_s == b.grid_s == 0.75
    assert a._next_cycle(123.4) == b._next_cycle(123.4) == 123.75


def test_any_two_cycle_grids_divide_one_another() -> None:
    """Round trips of 180 and 200 ms (one process's first answers a little faster) used to
    round to grids of 0.5 and 0.75 s, which meet only every 1.5 s; every grid is now 3 * 2^k
    seconds, so whatever two processes measure, the longer grid's ticks are ticks of both."""
    a, b = holding_at(16, latency_s=0.18), holding_at(16, latency_s=0.2)
    assert a.grid_s == b.grid_s == 0.75
    grids = {holding_at(16, latency_s=0.03 + 0.01 * i).grid_s for i in range(500)}
    assert len(grids) >= 6
    for one in grids:
        for other in grids:
            assert one is not None and other is not None
            ratio = max(one, other) / min(one, other)
            assert ratio == 2.0 ** round(math.log2(ratio)), (one, other)


def test_give_back_is_proportional_over_cycles() -> None:
    """Whole slots only, but the fraction carries over: 10 % of 15 is 3 slots in 2 cycles."""
    ctl = holding_at(15)
    given = 0
    for _ in range(2):
        cycle = ctl.wake_at
        assert cycle is not None
        ctl.tick(cycle)
        given += 15 - ctl.limit
        ctl.value, ctl.phase = 15.0, "hold"
        ctl.next_cycle_at = cycle + 1.0
    assert given == 3


def test_a_client_not_at_the_shared_pace_gives_back_more_at_every_other_common_tick() -> None:
    """Every ``shared_cycle``-th grid tick is common to all clients; at every other one of them
    a client that never saw a sign of another gives back ``shared_give_back`` (40 %), not 10 %:
    the moments when the clients at the shared pace climb, so a client that cannot tell it is
    sharing still yields room to them."""
    ctl = holding_at(20)
    grid = ctl.grid_s
    assert grid is not None and ctl.shared == 0
    given = {}
    for _ in range(24):
        cycle = ctl.wake_at
        assert cycle is not None
        ctl.tick(cycle)
        given[round(cycle / grid)] = 20 - ctl.limit
        ctl.value, ctl.phase = 20.0, "hold"
        ctl.next_cycle_at = cycle + grid
    every = ctl.shared_cycle * ctl.lone_every
    assert {tick: n for tick, n in given.items() if n != 2} == {
        tick: 8 for tick in given if tick % every == 0
    }
    assert len([n for n in given.values() if n == 8]) == 3


# --- against a modelled server ---------------------------------------------------------------

RISES = [
    pytest.param([(0, 4), (6, 32)], 0.2, 0.0, THROTTLE_S, id="4->32 @ 200 ms"),
    pytest.param([(0, 4), (6, 32)], 0.2, 0.0, 0.02, id="4->32 @ 200 ms, refused in 20 ms"),
    pytest.param([(0, 16), (6, 4), (12, 32)], 0.2, 0.0, THROTTLE_S, id="16->4->32 @ 200 ms"),
    pytest.param([(0, 16), (6, 64)], 0.2, 0.05, THROTTLE_S, id="16->64 @ 200+-50 ms"),
    pytest.param([(0, 8), (20, 32)], 2.0, 0.5, THROTTLE_S, id="8->32 @ 2+-0.5 s"),
]


@pytest.mark.parametrize("schedule,latency_s,jitter_s,refused_s", RISES)
@pytest.mark.parametrize("offset_s", [1000.0, 1000.13, 1000.31], ids=["t0", "t1", "t2"])
def test_after_a_rise_90_percent_of_the_new_cap_within_5_round_trips(
    schedule: list[tuple[float, int]],
    latency_s: float,
    jitter_s: float,
    refused_s: float,
    offset_s: float,
) -> None:
    """The periodic probe finds a raised cap and the climb past the old level fills it fast."""
    rise_at, cap = schedule[-1]
    traces = run(
        [AdaptiveLimit()],
        step_cap(schedule),
        rise_at + 8 * latency_s,
        latency_s=latency_s,
        jitter_s=jitter_s,
        throttle_latency_s=refused_s,
        clock_offset_s=offset_s,
    )
    reached = in_flight_reached(traces[0], rise_at, 0.9 * cap)
    assert (reached - rise_at) / latency_s <= 5


DROPS = [
    pytest.param([(0, 16), (6, 4)], 0.2, 0.0, id="16->4 @ 200 ms"),
    pytest.param([(0, 64), (6, 16)], 0.2, 0.05, id="64->16 @ 200+-50 ms"),
    pytest.param([(0, 32), (20, 12)], 2.0, 0.5, id="32->12 @ 2+-0.5 s"),
]


@pytest.mark.parametrize("schedule,latency_s,jitter_s", DROPS)
def test_after_a_drop_no_throttles_within_2_round_trips(
    schedule: list[tuple[float, int]], latency_s: float, jitter_s: float
) -> None:
    """Throttles after a drop stop within two round trips (later ones are single probes), and
    the limit then sits at the new cap: neither hammering it nor starving below it."""
    drop_at, cap = schedule[-1]
    ctl = AdaptiveLimit()
    traces = run(
        [ctl],
        step_cap(schedule),
        drop_at + 6 * latency_s,
        latency_s=latency_s,
        jitter_s=jitter_s,
        throttle_latency_s=THROTTLE_S,
        clock_offset_s=1000.0,
    )
    settled = quiet_after(traces[0], drop_at, latency_s)
    assert (settled - drop_at) / latency_s <= 2
    assert 0.75 * cap <= ctl.limit <= cap + 1


FIXED = [
    pytest.param(16, 0.2, 0.0, id="16 @ 200 ms"),
    pytest.param(64, 0.2, 0.0, id="64 @ 200 ms"),
    pytest.param(12, 2.0, 0.5, id="12 @ 2+-0.5 s"),
]


@pytest.mark.parametrize("cap,latency_s,jitter_s", FIXED)
def test_fixed_cap_steady_state_near_the_cap_with_few_throttles(
    cap: int, latency_s: float, jitter_s: float
) -> None:
    """Against a cap that never moves: >= 0.93 of capacity over the whole run and, once
    settled, <= 3 % of requests throttled (one probe per cycle)."""
    duration = 150 * latency_s
    traces = run(
        [AdaptiveLimit()],
        step_cap([(0, cap)]),
        duration,
        latency_s=latency_s,
        jitter_s=jitter_s,
        throttle_latency_s=THROTTLE_S,
        clock_offset_s=1000.0,
    )
    trace = traces[0]
    assert trace.ok / (cap / latency_s * duration) >= 0.93
    settled = duration / 3
    ok = sum(1 for t in trace.ok_times if t >= settled)
    throttled = sum(1 for t in trace.throttle_times if t >= settled)
    assert throttled / (ok + throttled) <= 0.03


SHARED = [
    pytest.param(2, 0.0, 0.0, 0.25, id="2 together"),
    pytest.param(2, 0.05, 0.3, 0.25, id="2, second 0.3 s late, jitter"),
    pytest.param(4, 0.05, 0.3, 0.4, id="4, 0.3 s apart, jitter"),
]


@pytest.mark.parametrize("clients,jitter_s,gap_s,spread", SHARED)
def test_controllers_sharing_a_cap_converge_to_fair_shares(
    clients: int, jitter_s: float, gap_s: float, spread: float
) -> None:
    """Controllers on one cap of 32: whoever started first takes most at first, but over the
    last 20 s of 40 each one's share is within ``spread`` of the mean, and together they keep
    >= 0.9 of the cap."""
    duration, cap = 40.0, 32
    traces = run(
        [AdaptiveLimit() for _ in range(clients)],
        step_cap([(0, cap)]),
        duration,
        latency_s=0.2,
        jitter_s=jitter_s,
        throttle_latency_s=THROTTLE_S,
        starts_s=[i * gap_s for i in range(clients)],
        clock_offset_s=1000.0,
    )
    late = [sum(1 for t in trace.ok_times if t >= duration / 2) for trace in traces]
    mean = statistics.mean(late)
    assert all(abs(k / mean - 1) <= spread for k in late), late
    assert sum(trace.ok for trace in traces) / (cap / 0.2 * duration) >= 0.9


def test_after_a_drop_cycles_come_twice_as_often_for_a_while() -> None:
    """Far below the level held before a drop, a cycle (and its one refused probe) starts at
    every half grid tick for ``recover_cycles`` cycles, then at the grid's own pace again: a
    cap that dropped for good does not pay the double pace forever. The climb right after
    the drop, refused where the cap fell to, is no sign of another client."""
    ctl = AdaptiveLimit()
    traces = run(
        [ctl],
        step_cap([(0, 16), (6, 4)]),
        36.0,
        latency_s=0.2,
        throttle_latency_s=THROTTLE_S,
        clock_offset_s=1000.0,
    )
    probes = traces[0].throttle_times
    grid = ctl.grid_s
    assert grid == 0.75
    early = sum(1 for t in probes if 7.0 <= t < 13.0)  # within recover_cycles of the drop
    late = sum(1 for t in probes if 24.0 <= t < 36.0)  # long after
    assert early >= 6.0 / (grid / 2) - 1  # every half tick
    assert late <= 12.0 / grid + 1  # every tick
    assert ctl.cuts == 1 and ctl.signs == 0 and ctl.shared == 0
