"""Runs of ``concurrency: auto`` against the simulator's hidden in-flight cap, and what they show.

A run samples the simulator's counters every 50 ms (requests in flight, throttles), so besides
the time-weighted share of capacity it can say how many round trips glmrun took to fill 90 % of
a cap that rose, and to stop being throttled after one that dropped. Time 0 is the simulator's
reset, just before glmrun starts, so start-up counts against glmrun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import PY, REPO, SimProcess, count_output, run_child, write_config, write_urls

Schedule = list[tuple[float, int]]  # (from second, hidden in-flight cap)
KEY_ENV = {"ZHIPUAI_API_KEY": "bench"}
SAMPLE_S = 0.05


@dataclass
class Sample:
    t_s: float
    in_flight: int
    throttled: int
    requests: int


@dataclass
class AutoRun:
    """One glmrun process against a cap schedule."""

    n: int
    ok: int
    wall_s: float  # from the simulator's reset to glmrun's exit
    requests: int
    throttled: int
    capacity: float  # results a client at the cap would have had in wall_s
    samples: list[Sample] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.ok / self.capacity if self.capacity else 0.0

    @property
    def share_429(self) -> float:
        return self.throttled / max(1, self.requests)

    def first_request_s(self) -> float:
        """When the simulator saw glmrun's first request (process start-up before it)."""
        return next((s.t_s for s in self.samples if s.requests), 0.0)


@dataclass
class SharedRun:
    """Several glmrun processes, each with ``auto``, sharing one cap until the first finishes."""

    window_s: float
    ok: list[int]
    requests: int
    throttled: int
    capacity: float

    @property
    def ratio(self) -> float:
        return sum(self.ok) / self.capacity if self.capacity else 0.0

    @property
    def shares(self) -> list[float]:
        mean = sum(self.ok) / len(self.ok)
        return [k / mean if mean else 0.0 for k in self.ok]

    @property
    def share_429(self) -> float:
        return self.throttled / max(1, self.requests)


def capacity(schedule: Schedule, latency_s: float, wall_s: float) -> float:
    """Results a client holding exactly the cap would get in ``wall_s``: sum of cap/latency."""
    total = 0.0
    for i, (start, cap) in enumerate(schedule):
        end = schedule[i + 1][0] if i + 1 < len(schedule) else float("inf")
        total += cap / latency_s * max(0.0, min(end, wall_s) - start)
    return total


def knobs(schedule: Schedule, latency_s: float, spread_s: float) -> dict[str, Any]:
    cap = {"max_in_flight": schedule[0][1]} if len(schedule) == 1 else {"limit_schedule": schedule}
    return {"latency_mean_s": latency_s, "latency_spread_s": spread_s, **cap}


def run_auto(
    d: Path,
    n: int,
    schedule: Schedule,
    latency_s: float,
    spread_s: float,
    concurrency: int | str = "auto",
) -> AutoRun:
    """One ``glmrun run`` with ``concurrency: auto`` (or a fixed one, for the reference run);
    every URL must end ok (else ok < n)."""
    samples: list[Sample] = []
    with SimProcess(**knobs(schedule, latency_s, spread_s)) as sim:
        urls = write_urls(d / "urls.txt", n)
        cfg = write_config(
            d / "c.yaml",
            sim.base_url,
            input=str(urls),
            output=str(d / "out.jsonl"),
            limits={"concurrency": concurrency}
            | ({"max_concurrency": 256} if concurrency == "auto" else {}),
        )
        sim.reset()  # t=0 of limit_schedule
        t0 = time.monotonic()

        def poll(_elapsed: float) -> None:
            s = sim.stats()
            samples.append(
                Sample(time.monotonic() - t0, s["in_flight"], s["throttled"], s["chat_requests"])
            )

        child = run_child(
            [PY, "-m", "runner", "run", str(cfg), "-q"], env=KEY_ENV, poll=poll, poll_s=SAMPLE_S
        )
        wall = time.monotonic() - t0
        stats = sim.stats()
    if child.returncode != 0:
        raise RuntimeError(f"glmrun exited {child.returncode}: {child.stderr[-500:]}")
    ok = count_output(d / "out.jsonl")["ok"]
    return AutoRun(
        n,
        ok,
        wall,
        stats["chat_requests"],
        stats["throttled"],
        capacity(schedule, latency_s, wall),
        samples,
    )


def run_auto_phases(
    d: Path,
    n: int,
    schedule: Schedule,
    latency_s: float,
    spread_s: float,
    phases: int,
    stagger_s: float,
    *,
    together: bool = True,
) -> list[AutoRun]:
    """``phases`` runs of ``run_auto`` side by side, each with its own simulator and the same
    schedule from its own reset, launched ``stagger_s`` apart. glmrun's probing cycles sit on
    a grid of the machine's monotonic clock (about three round trips: 6 s at 2 s answers), so
    where a cap change falls against that grid decides how soon it is found: one run samples
    one such phase. Launched a third of the grid apart, three runs sample the phases evenly.
    ``together=False``: one after the other (runs at hundreds of answers a second would share
    the machine's two cores), each at whatever phase its launch falls on."""
    if not together:
        runs = []
        for k in range(phases):
            (d / f"phase{k}").mkdir(parents=True, exist_ok=True)
            runs.append(run_auto(d / f"phase{k}", n, schedule, latency_s, spread_s))
        return runs

    def later(k: int) -> AutoRun:
        time.sleep(k * stagger_s)
        (d / f"phase{k}").mkdir(parents=True, exist_ok=True)
        return run_auto(d / f"phase{k}", n, schedule, latency_s, spread_s)

    with ThreadPoolExecutor(phases) as pool:
        return list(pool.map(later, range(phases)))


def rise_rtts(run: AutoRun, schedule: Schedule, latency_s: float) -> list[float]:
    """For each rise of the cap: round trips until 90 % of the new cap was in flight."""
    out = []
    for i in range(1, len(schedule)):
        (at, cap), prev = schedule[i], schedule[i - 1][1]
        end = schedule[i + 1][0] if i + 1 < len(schedule) else float("inf")
        if cap <= prev:
            continue
        hit = next(
            (s.t_s for s in run.samples if at <= s.t_s < end and s.in_flight >= 0.9 * cap), None
        )
        if hit is not None or end < run.wall_s:
            out.append(float("inf") if hit is None else (hit - at) / latency_s)
    return out


def drop_rtts(run: AutoRun, schedule: Schedule, latency_s: float) -> list[float]:
    """For each drop of the cap: round trips until the first whole round trip with no throttle
    (a later one is the controller's periodic probe, not the drop)."""
    out = []
    for i in range(1, len(schedule)):
        (at, cap), prev = schedule[i], schedule[i - 1][1]
        end = min(schedule[i + 1][0] if i + 1 < len(schedule) else float("inf"), run.wall_s)
        if cap >= prev or end - at < 2 * latency_s:
            continue
        window = [s for s in run.samples if at - SAMPLE_S <= s.t_s < end]
        last_rise = at  # when the throttle count last went up
        for before, after in zip(window, window[1:], strict=False):
            if after.t_s - last_rise >= latency_s:
                break
            if after.throttled > before.throttled:
                last_rise = after.t_s
        out.append(max(0.0, last_rise - at) / latency_s)
    return out


def run_shared(
    d: Path, processes: int, n_each: int, cap: int, latency_s: float, spread_s: float
) -> SharedRun:
    """``processes`` glmrun runs with ``auto`` on one simulator, started together; counted when
    the first finishes (the rest are then stopped with SIGTERM)."""
    with SimProcess(**knobs([(0, cap)], latency_s, spread_s)) as sim:
        configs, outputs = [], []
        for p in range(processes):
            urls = write_urls(d / f"urls-{p}.txt", n_each, prefix=f"p{p}")
            outputs.append(d / f"out-{p}.jsonl")
            configs.append(
                write_config(
                    d / f"c-{p}.yaml",
                    sim.base_url,
                    input=str(urls),
                    output=str(outputs[-1]),
                    limits={"concurrency": "auto", "max_concurrency": 256},
                    run={"flush_interval_s": 0.1, "grace_s": 2},
                )
            )
        sim.reset()
        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                [PY, "-m", "runner", "run", str(c), "-q"],
                cwd=REPO,
                env={**os.environ, **KEY_ENV},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for c in configs
        ]
        try:
            while all(p.poll() is None for p in procs) and time.monotonic() - t0 < 600:
                time.sleep(SAMPLE_S)
            window = time.monotonic() - t0
            stats = sim.stats()
            ok = [count_output(out)["ok"] for out in outputs]  # the others' last 0.1 s unflushed
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return SharedRun(
        window,
        ok,
        stats["chat_requests"],
        stats["throttled"],
        capacity([(0, cap)], latency_s, window),
    )
