"""Pure: the adaptive concurrency controller behind ``limits.concurrency: auto``.

The API's real limit is per-account concurrency that the user does not know and that moves at
peak hours. The controller finds it from the answers alone. A refused request (429, 1302, 1305
...) comes back at once while an admitted one takes a round trip, so a raise that draws no
throttle within a *quiet window* (twice the slowest of the last few refusals) was admitted,
provided answers kept arriving meanwhile (quiet while the server or this process stalled
proves nothing). Above the highest limit held so far each new slot opens a new connection,
which is refused later: there the window follows the refusals seen up there.

- Start (TCP slow start): +1 per successful answer, so the limit doubles per round trip, until
  the first throttle, or until answers take 1.5 times as long as the fastest (HyStart: the
  path fills up before the cap does). The gate gets those raises a tenth at a time per
  ``min_window_s``: answers that arrive together would send a round trip's raises at once,
  all past the cap before its first refusal is back. (Tripling per round trip from 5 fills
  a cap of 64 a round trip sooner, but processes started a few hundred ms apart then share
  worse for the first tens of seconds: the first one has the cap before the others begin.)
- Refused: each request refused after a raise was one too many and takes one off, but the
  limit never goes below the requests still out (the rest of that raise, refused a moment
  later, are no news, and their retries are not sent meanwhile).
- Hold and probe (BBR's periodic probing): every ``probe_rtts`` round trips the controller gives
  back ``give_back`` of its limit, lets those slots drain for ``give_back_rtts``, then climbs
  1, 1, 2, 2, 4, 4 ... slots per quiet window, stopping one past the level it held (TCP
  CUBIC's fast return to its last maximum). Where the cap has not moved, that one request is
  refused: one throttle per cycle. Where it has risen, the climb goes on from one slot again
  (1, 1, 2, 2 ... : on a busy event loop answers lag and the probe may pass by mistake; the
  refill's doubling would then overshoot by dozens), steps doubling (at most half the limit
  each, and no faster than a doubling per ``climb_doubling_rtts``, so with slow answers it
  steps by one and overshoots by one), and fills the new cap within a round trip or two.
  Above the highest limit held, where each new slot opens a connection whose refusal may
  come back much later than the ones measured (60 ms against 2 on a loaded machine), the
  pace is a doubling per ``cold_doubling_rtts``: half a round trip, not a quarter.
- Several processes on one account: the cycles sit on a clock grid (multiples of
  ``probe_rtts`` round trips rounded to 3 * 2^k seconds of ``now``), so processes on
  one machine give back and climb at the same moments. A proportional give-back and a climb
  that starts later the larger the limit (a quiet window per doubling), so the smaller clients
  win the race for what all gave back, draw the shares together (AIMD's convergence, with the
  ordering as the pull). Each client's climb ends in one refusal, so N clients on one cap would
  draw N throttles per cycle: a client that sees two signs of others within a few cycles (a
  climb refused below where it was refused last, or held well above it) takes the shared pace
  for ``shared_cycles`` cycles: a cycle every ``shared_cycle`` grid ticks (still on the grid)
  and a larger give-back, ``shared_give_back``. One client alone sees a sign only when the
  cap moves, and needs two. Those ticks are common to all: there every client gives back
  ``shared_give_back``, one not at the shared pace at every ``lone_every``-th of them. A
  client can hold a larger share with no sign at all (its climbs refused one past its level,
  as when alone, since it takes back what it gave before the others climb); without this
  give-back the shares stayed apart for tens of seconds (the median smallest of 4 processes
  0.87 of the mean in the model, 0.52 - 0.97 live; now 0.91, none below 0.8). It costs a
  client alone about 1 % of a fixed cap of 64 in the model. The race for given-back slots
  runs at one pace for all: head starts and climb steps (up to the level held, and all the
  way at the shared pace) are counted in ``min_window_s``, not in each client's quiet
  window, which its event loop's lag stretches (see ``_step_window``).
- Drop: two throttles within a round trip while holding mean the cap fell (the multiplicative
  decrease of the Netflix and AWS SDK limiters): cut to ``drop_beta`` of the limit; for the
  round trip after, while requests sent before the drop drain, each throttle takes one off;
  then climb from there at once (the cut went deep on purpose: waiting for the next tick of
  the cycle grid left a third of the cap unused for up to 3 round trips). A cap that fell at
  peak hours comes back: for ``recover_cycles`` cycles, while below half the level it held
  before the drop (and alone), the controller cycles at every half grid tick, so it finds
  the cap back twice as soon, for one more refused probe per tick.
- In use: a raise counts only once requests fill it (the engine reports the requests out with
  each answer and tick). A client that cannot send as fast as its limit allows (its own event
  loop is the bottleneck, or its input runs dry) stops growing it, in slow start and in a
  climb, instead of raising it unused to ``max_limit`` and later sending that many at once
  (TCP's congestion window validation, RFC 7661).
- Starved: refused at the minimum (the cap is full of other clients), the limit is 0 until the
  others' next give-back, instead of hammering the server at the rate of its refusals.

The API refuses at its limit rather than queueing, so latency is not the congestion signal it
is for Gradient2 or Vegas; it times the controller (round trip, quiet window) and ends slow
start. No clock of its own and no I/O: the caller passes ``now``, the latency it measured and
the requests in flight, and calls ``tick(now)`` at ``wake_at`` when no answer comes first. The
engine applies ``limit`` with ``Throttle.set_limit``; tests drive the arithmetic directly.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Literal

Phase = Literal["start", "hold", "give", "climb"]


@dataclass
class AdaptiveLimit:
    """The controller behind ``concurrency: auto`` (see the module's text): ``limit`` is what the
    gate admits now."""

    max_limit: int = 256
    initial: int = 4
    min_limit: int = 1
    probe_rtts: float = 3.2  # one give-back-and-climb cycle every this many round trips
    give_back: float = 0.1  # share of the limit given back at each cycle
    give_back_rtts: float = 0.25  # how long the given-back slots drain before the climb
    shared_cycle: int = 4  # grid ticks per cycle while other clients share the cap
    shared_give_back: float = 0.4  # the give-back at a common tick (every shared_cycle-th)
    shared_cycles: int = 12  # cycles the shared pace lasts after the last sign of another client
    lone_every: int = 2  # ... at every this many common ticks for a client not at that pace
    climb_doubling_rtts: float = 0.25  # a climb doubles the limit in at most this many RTTs
    cold_doubling_rtts: float = 0.5  # ... above the highest limit held (new connections)
    recover_cycles: int = 24  # after a drop, cycles at twice the pace while far below
    recover_below: float = 0.5  # ... the level held before the drop, times this
    drop_beta: float = 0.35  # the cut when the cap drops
    start_growth: float = 0.1  # in slow start the admitted limit grows this share per min window
    inflated: float = 1.5  # slow start ends when answers take this much longer than the fastest
    min_window_s: float = 0.01  # floor of the quiet window that confirms a raise
    guess_rtt_s: float = 1.0  # the round trip assumed before the first answer

    def __post_init__(self) -> None:
        self.value: float = float(max(self.min_limit, min(self.initial, self.max_limit)))
        self.phase: Phase = "start"
        self.before = self.value  # the level held before the give-back
        self.steps = 0  # climb steps taken
        self.passed = False  # the climb went past the level held before it
        self.raised_at = -math.inf
        self.answered_at = -math.inf
        self.awaiting_answer = False  # a climb step waits for an answer, not for time
        self.climb_at = math.inf
        self.next_cycle_at = math.inf
        self.burst_until = -math.inf  # throttles of a raise just refused, still arriving
        self.cool_until = -math.inf  # requests sent before a drop, still draining
        self.after_drop = False
        self.paused_until: float | None = None
        self.starved = 0
        self.rtt_s: float | None = None
        self.rtt_var_s = 0.0
        self.min_rtt_s = math.inf
        self.recent_rtt_s = 0.0  # a quick average of the last few answers' latency
        self.samples = 0
        self.refusals_s: collections.deque[float] = collections.deque(maxlen=8)  # latencies
        self.cold_refusals_s: collections.deque[float] = collections.deque(maxlen=8)
        self.high = self.value  # the highest limit held: above, requests open new connections
        self.unprompted: list[float] = []  # times of recent throttles while holding
        self.grid_s: float | None = None
        self.owed = 0.0  # the fraction of a slot not yet given back
        self.given_from = self.value
        self.cuts = 0
        self.paced = self.value  # what slow start admits: answers in a burst raise it in steps
        self.paced_at = -math.inf
        self.settled = math.inf  # the level a refused climb left, lowered by later refusals
        self.signed = False  # a sign was counted in this cycle
        self.signs = 0  # cycles left in which a second sign of another client counts
        self.shared = 0  # cycles left at the shared pace (another client took given-back slots)
        self.dropped_from = 0.0  # the limit when the cap last dropped
        self.recovering = 0  # cycles left in which a limit far below that probes twice as often
        self.used = 0.0  # the most requests in flight an answer found since the limit last rose

    # -- what the gate reads ---------------------------------------------------------------

    @property
    def limit(self) -> int:
        """What the gate should admit now: 0 while paused, else at least ``min_limit``."""
        if self.paused_until is not None:
            return 0
        value = min(self.value, self.paced) if self.phase == "start" else self.value
        return max(self.min_limit, int(value))

    @property
    def wake_at(self) -> float | None:
        """When to call ``tick`` if no answer comes first (None: no deadline)."""
        if self.paused_until is not None:
            return self.paused_until
        if self.phase == "give":
            return self.climb_at
        if self.phase == "start":
            return self.paced_at + self.min_window_s if self.value > self.paced else None
        if self.phase == "climb":
            return None if self.awaiting_answer else self.raised_at + self._step_window()
        if self.phase == "hold" and self._held_until() < math.inf:
            return self._held_until()
        return None

    @property
    def window_s(self) -> float:
        """Quiet time that confirms a raise: twice the slowest of the last 8 refusals, at
        least ``min_window_s``, at most half a round trip. Above the highest limit held so
        far requests open new connections and are refused later: there the refusals that
        came from such requests count."""
        rtt = self.rtt_s or self.guess_rtt_s
        warm = self.value <= self.high and self.refusals_s
        refusals = self.refusals_s if warm else self.cold_refusals_s or self.refusals_s
        quiet = 2 * max(refusals) if refusals else rtt / 4
        return min(rtt / 2, max(self.min_window_s, quiet))

    # -- inputs ----------------------------------------------------------------------------

    def on_result(
        self, verdict: str, latency_s: float, now: float, in_flight: int | None = None
    ) -> int:
        """Feed one attempt's outcome (``retry.Verdict`` value or ``ok``); return the new limit.
        ``in_flight`` counts the requests outstanding, this one included."""
        if verdict == "ok":
            return self.on_success(latency_s, now, in_flight)
        if verdict == "throttle":
            return self.on_throttled(now, latency_s, in_flight)
        return self.limit  # other failures say nothing about the account's concurrency

    def on_success(self, latency_s: float, now: float, in_flight: int | None = None) -> int:
        """An answer; ``in_flight`` (this one included) says whether the limit was in use:
        a raise that the requests never filled proves nothing (None: assume it was)."""
        self._measure_rtt(latency_s)
        self.answered_at = now
        self.starved = 0
        self.used = max(self.used, math.inf if in_flight is None else float(in_flight))
        if self.paused_until is not None:  # admitted after all: no need to wait
            self.paused_until = None
            self._climb(now)
        elif self.phase == "start":
            if self.recent_rtt_s > self.inflated * self.min_rtt_s and self.samples >= 8:
                self._hold(now)  # answers slow down: the path is full before the cap (HyStart)
            elif in_flight is None or in_flight >= self.limit:  # grow only a limit in use
                self.value = min(float(self.max_limit), self.value + 1.0)
                if self.value >= self.max_limit:
                    self._hold(now)
        self._advance(now)
        return self.limit

    def on_throttled(self, now: float, latency_s: float = 0.0, in_flight: int | None = None) -> int:
        cold = self.phase == "start" or self.value > self.high
        (self.cold_refusals_s if cold else self.refusals_s).append(latency_s)
        self.answered_at = now
        # The refused request was one too many, but no fewer are admitted than are still out
        # (the others of a refused raise come back refused soon; their retries are not sent)
        one_off = self.value - 1.0 if in_flight is None else min(self.value, in_flight) - 1.0
        if self.phase in ("start", "climb"):
            self._refused(now, one_off, latency_s)
        elif self.value <= self.min_limit:
            self._starve(now)
        elif now < self.burst_until or now < self.cool_until:
            self.value = one_off  # the rest of a refused raise, or requests sent before a drop
        elif self._drop_seen(now):
            self.dropped_from, self.recovering = self.value, self.recover_cycles
            self.value *= self.drop_beta
            self.cool_until = now + (self.rtt_s or 0.0) + 2 * self.rtt_var_s
            self.after_drop = True
            self.settled = self.value
            self.phase = "hold"
            self.cuts += 1
        else:
            self.value = one_off  # one stray throttle: a slot taken by another client, or a drop
        self.value = max(float(self.min_limit), self.value)
        self.settled = min(self.settled, self.value)
        return self.limit

    def tick(self, now: float, in_flight: int | None = None) -> int:
        """Time passed without an answer (the caller honours ``wake_at``); ``in_flight`` as
        for ``on_success``."""
        self.used = max(self.used, math.inf if in_flight is None else float(in_flight))
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
            if self.rtt_s is not None:
                self._climb(now)
        self._advance(now)
        return self.limit

    # -- phases ----------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Moves that time makes: a cycle starts, the given-back slots have drained, a raise
        has been quiet for a window."""
        if self.paused_until is not None:
            return
        if self.phase == "start":
            self._pace(now)
        elif self.phase == "give" and now >= self.climb_at:
            self._climb(now, self.given_from)
        elif (
            self.phase == "climb"
            and now >= self.raised_at + self._step_window()
            and self._live(now)
            and self._filled()
        ):
            self._step(now)
        elif self.phase == "hold" and now >= self._held_until():
            if self.after_drop:
                self.after_drop = False
                self.signed = True  # where this climb is refused says where the cap fell to
                self._climb(now)  # find the new level from the cut
            else:
                self._give_back(now)

    def _pace(self, now: float) -> None:
        """Slow start admits its raises a step per ``min_window_s`` (a share ``start_growth``
        of the limit, at least one): answers that arrive together would otherwise send a whole
        round trip's raises at once, all past the cap before its first refusal is back."""
        if self.value > self.paced and now >= self.paced_at + self.min_window_s:
            self.paced = min(self.value, self.paced + max(1.0, self.start_growth * self.paced))
            self.paced_at = now

    def _held_until(self) -> float:
        """When a hold ends: after a drop, once the requests sent before it have drained (the
        climb from the cut need not wait for the cycle grid: the cut went deep on purpose);
        else at the next cycle."""
        if self.after_drop:
            return self.cool_until
        return max(self.next_cycle_at, self.cool_until)

    def _give_back(self, now: float) -> None:
        self.given_from = self.value
        self.shared = max(0, self.shared - 1)
        self.recovering = max(0, self.recovering - 1)
        self.signs = max(0, self.signs - 1)
        self.signed = False
        share = self.shared_give_back if self.shared or self._common_tick() else self.give_back
        self.owed += share * self.value
        given = math.floor(self.owed)  # whole slots; the fraction carries to the next cycle
        self.owed -= given
        self.value = max(float(self.min_limit), self.value - given)
        self.phase = "give"
        # smaller clients start their climb sooner, so they win the race for the slots given
        # back: a pull towards equal shares (at most as long again as the drain). The head
        # start is counted in ``min_window_s``, the same for all, not in each one's window
        drain = self.give_back_rtts * (self.rtt_s or self.guess_rtt_s)
        head = min(drain, self.min_window_s * math.log2(max(1.0, self.value)))
        self.climb_at = now + drain + head

    def _climb(self, now: float, before: float | None = None) -> None:
        self.phase = "climb"
        self.before = self.value if before is None else before
        self.steps = 0
        self.passed = False
        self._step(now)

    def _step(self, now: float) -> None:
        """One climb step: 1, 1, 2, 2, 4, 4 ... slots, every client at that pace from the same
        moment, so each takes an equal part of the room. The step that reaches the level held
        before the give-back stops one past it: where the cap has not moved, that one is the
        only request refused; where that one was admitted, the steps start again from one.
        No step is more than half the limit, nor, above the highest limit held so far (where
        each slot opens a new connection), half of that."""
        self.high = max(self.high, self.value)  # confirmed: held without a refusal
        if self.value > self.settled + 1:
            self._sign_of_sharing()  # held above where it was refused last
        if self.value > self.before and not self.passed:
            self.passed, self.steps = True, 0  # one past the old level held: new ground
        step = 2.0 ** (self.steps // 2)
        self.steps += 1
        if self.value <= self.before:
            step = min(step, self.before + 1.0 - self.value)
        step = min(step, max(1.0, (self.high if self.value >= self.high else self.value) / 2))
        step = min(step, max(1.0, self.value * self._growth_per_window(self.value >= self.high)))
        self.value = min(float(self.max_limit), self.value + step)
        self.raised_at = now
        self.used = 0.0
        if self.value >= self.max_limit:
            self._hold(now)

    def _step_window(self) -> float:
        """How long a climb step waits for a refusal before the next. In the race for the
        slots given back (up to the level held before the give-back, and all the way at the
        shared pace) every client steps at one pace, ``min_window_s``: the quiet window comes
        from a client's own refusals, which a busy event loop delays, and a client that steps
        slower loses the race at every cycle (in the model, clients whose answers reach them
        up to 5, 10 or 20 ms late got 0.5 of the mean share where one had no lag; now 0.86).
        Taking new ground alone, the quiet window keeps the raise safe."""
        if self.value <= self.before or self.shared:
            return self.min_window_s
        return self.window_s

    def _growth_per_window(self, cold: bool = False) -> float:
        """The share a climb may add per quiet window to double in ``climb_doubling_rtts``
        round trips (``cold``, above the highest limit held: ``cold_doubling_rtts``): where
        refusals come back fast against the round trip, smaller steps are as quick and the
        last one past the cap draws fewer refusals."""
        rtt = self.rtt_s or self.guess_rtt_s
        doubling = self.cold_doubling_rtts if cold else self.climb_doubling_rtts
        return math.pow(2.0, self._step_window() / (doubling * rtt)) - 1.0

    def _refused(self, now: float, one_off: float, latency_s: float) -> None:
        """A raise drew a throttle: hold at one off."""
        # The raise's other requests come back refused a little later, as slow as the slowest
        # refusal seen: they are no news. After slow start, where requests beyond the cap went
        # out for a while, that lasts a round trip.
        slowest = max([latency_s, *self.refusals_s, *self.cold_refusals_s])
        later = (self.rtt_s or 0.0) if self.phase == "start" else 0.0
        self.burst_until = now + max(2 * slowest, self.min_window_s, later)
        self.high = max(self.high, self.value)  # the refused one opened a connection too
        if self.phase == "climb":
            if not self.settled < self.value <= self.settled + 1:
                self._sign_of_sharing()  # refused below, or well above, where it was last
            self.settled = one_off
        self.value = one_off
        self._hold(now)

    def _sign_of_sharing(self) -> None:
        """A climb refused elsewhere than one past the level it was refused at last: another
        client took the slots it gave back, or left some (or the cap moved). Two such within a
        few cycles: take the shared pace."""
        if self.signed:
            return
        self.signed = True
        if self.signs:
            self.shared = self.shared_cycles
        self.signs = self.shared_cycles // 2

    def _hold(self, now: float) -> None:
        """Hold; the next cycle waits a round trip, until stragglers of the last raise are in."""
        if self.phase == "start":
            self.value = min(self.value, self.paced)  # what was admitted, not what was counted
        self.phase = "hold"
        self.next_cycle_at = self._next_cycle(now + (self.rtt_s or 0.0))

    def _starve(self, now: float) -> None:
        """Refused at the minimum: pause until the others' next give-back."""
        self.starved += 1
        self._hold(now)
        if self.rtt_s is not None:
            self.paused_until = self.next_cycle_at + self.give_back_rtts * self.rtt_s
        else:  # never admitted, so no round trip and no grid: try every half second, a bit
            # later after it each time, to land in the others' give-back
            offset = 2 * self.min_window_s * 2.0 ** ((self.starved - 1) % 5)
            self.paused_until = (math.floor(now / 0.5) + 1) * 0.5 + offset

    # -- estimates -------------------------------------------------------------------------

    def _next_cycle(self, now: float) -> float:
        """The first multiple of the cycle period after ``now``: ``probe_rtts`` round trips
        rounded to the nearest 3 * 2^k seconds (0.375, 0.75, 1.5, 3, 6 ...), kept while within
        a factor 1.6 of that. Any two such periods divide one another, so processes whose
        round trips round differently still meet at every tick of the longer one. (With 2^k
        seconds as well, processes at 200 ms round trips sat on both sides of the line between
        0.5 and 0.75 s, in 17 of 24 seeds of the model, and met only every 1.5 s, their
        common ticks every 6 s.) At the shared pace a cycle is ``shared_cycle`` grid ticks, so
        its cycles still fall on the ticks of clients at the single pace; recovering from a
        drop, half a tick."""
        period = self.probe_rtts * (self.rtt_s or self.guess_rtt_s)
        grid = self.grid_s
        if grid is None or not grid / 1.6 <= period <= grid * 1.6:
            grid = self.grid_s = 3.0 * 2.0 ** round(math.log2(period / 3.0))
        if self.shared:
            grid *= self.shared_cycle
        elif self._recovering():
            grid /= 2
        return (math.floor(now / grid) + 1) * grid

    def _common_tick(self) -> bool:
        """This cycle falls on a common tick, where every client gives ``shared_give_back``:
        every ``shared_cycle``-th grid tick for a client at the shared pace (it cycles on no
        other), every ``lone_every``-th of those for one that is not. Without it, a client that
        never saw a sign of the others (its climbs are refused one past its level, as when
        alone) gives back a tenth at each tick and takes it back itself before the clients at
        the shared pace climb: they then split only the little given back at their ticks, and
        the shares stay apart (10, 9, 7 and 6 of 32 for 20 s in the model)."""
        if self.grid_s is None:
            return False
        ticks = self.next_cycle_at / self.grid_s
        every = self.shared_cycle * (1 if self.shared else self.lone_every)
        return abs(ticks - round(ticks)) < 0.25 and round(ticks) % every == 0  # not a half tick

    def _recovering(self) -> bool:
        """For ``recover_cycles`` cycles after a drop, while far below the level held before
        it and with no sign of another client, cycles come at each half grid tick: a cap that
        fell at peak hours comes back, and each cycle is a chance to find it back (TCP CUBIC
        returns fast to its last maximum too). The price: one more refused probe per tick."""
        return (
            self.recovering > 0
            and not self.signs
            and self.value <= self.recover_below * self.dropped_from
        )

    def _live(self, now: float) -> bool:
        """Answers are still arriving: the last one came within a round trip (an answer for
        each request in flight is due within one). If not, the next answer decides."""
        live = now - self.answered_at <= self.window_s + (self.rtt_s or 0.0)
        self.awaiting_answer = not live
        return live

    def _filled(self) -> bool:
        """The last raise was used: an answer found as many requests out as the limit. A
        client that sends fewer than its limit allows (its event loop is the bottleneck, or
        its input runs dry) holds where it is instead of climbing to ``max_limit`` unused and
        sending that many at once when it can (TCP's congestion window validation)."""
        return self.used >= int(self.value)

    def _drop_seen(self, now: float) -> bool:
        rtt = self.rtt_s or 0.0
        self.unprompted = [t for t in self.unprompted if now - t < rtt] + [now]
        if len(self.unprompted) >= 2:
            self.unprompted = []
            return True
        return False

    def _measure_rtt(self, latency_s: float) -> None:
        self.samples += 1
        self.min_rtt_s = min(self.min_rtt_s, latency_s)
        self.recent_rtt_s += 0.25 * (latency_s - self.recent_rtt_s)
        if self.rtt_s is None:
            self.recent_rtt_s = latency_s
            self.rtt_s, self.rtt_var_s = latency_s, latency_s / 2
        else:  # RFC 6298 smoothing
            self.rtt_var_s += 0.25 * (abs(latency_s - self.rtt_s) - self.rtt_var_s)
            self.rtt_s += 0.125 * (latency_s - self.rtt_s)

    def __repr__(self) -> str:
        return (
            f"<AdaptiveLimit {self.value:.1f} {self.phase} window={self.window_s:.3f}s"
            f" cuts={self.cuts} shared={self.shared} paused={self.paused_until is not None}>"
        )
