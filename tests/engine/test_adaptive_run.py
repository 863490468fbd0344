"""concurrency: auto against the simulator's hidden in-flight limit (no URL lost, limit found),
and the gate that applies the controller's limit, wake-ups included."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from runner.app.orchestrate import RunOptions, run
from runner.config import load_config
from runner.engine.throttle import AdaptiveGate, Throttle
from tests.support.configs import make_urls, write_minimal_config
from tests.support.records import read_records
from tests.support.sim import MakeSim

PATIENT = {"max_attempts": 30, "base_delay_s": 0.01, "max_delay_s": 0.05}


def write_config(tmp_path: Path, base_url: str, n: int, limits: dict[str, Any]) -> Path:
    urls = make_urls(n, prefix="https://img.example.com", digits=0)
    return write_minimal_config(
        tmp_path, urls, api={"base_url": base_url}, limits=limits, retry=PATIENT
    )


async def test_auto_concurrency_finds_a_hidden_limit_and_loses_nothing(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """Hidden limit 4: every URL ends with one ok record and the final limit sits near 4."""
    sim = await start_sim(latency_mean_s=0.01, max_in_flight=4)
    limits = {"concurrency": "auto", "max_concurrency": 32}
    cfg = write_config(tmp_path, sim.base_url, 300, limits)
    config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})
    result = await run(config, RunOptions(tty=False), out=io.StringIO())
    records = read_records(tmp_path / "out.jsonl")
    assert sorted(r["url"] for r in records) == sorted(
        f"https://img.example.com/{i}.jpg" for i in range(300)
    )
    assert all(r["status"] == "ok" for r in records)
    stats = result.stats[0]
    assert sim.stats.throttled > 0  # it did probe past the limit
    assert 1 <= stats.concurrency <= 8
    assert stats.throttled == sim.stats.throttled


async def test_tpm_run_writes_every_record(tmp_path: Path, start_sim: MakeSim) -> None:
    """limits.tpm charges and settles per request without losing or duplicating a URL."""
    sim = await start_sim(latency_mean_s=0.0)
    cfg = write_config(tmp_path, sim.base_url, 20, {"concurrency": 4, "tpm": 100000000})
    config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})
    await run(config, RunOptions(tty=False), out=io.StringIO())
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert len(lines) == 20
    assert sim.stats.chat_requests == 20


class PausingController:
    """A stand-in controller: paused (limit 0) until ``resume_at``, then 3."""

    def __init__(self, resume_at: float):
        self.resume_at = resume_at
        self.ticks = 0

    @property
    def limit(self) -> int:
        return 0 if self.resume_at > 0 else 3

    @property
    def wake_at(self) -> float | None:
        return self.resume_at if self.resume_at > 0 else None

    def on_result(
        self, verdict: str, latency_s: float, now: float, in_flight: int | None = None
    ) -> int:
        return self.limit

    def tick(self, now: float, in_flight: int | None = None) -> int:
        self.ticks += 1
        if now >= self.resume_at:
            self.resume_at = 0.0
        return self.limit


async def test_gate_wakes_a_paused_throttle_with_no_answer_in_flight() -> None:
    """A controller that pauses (limit 0) is woken by the gate's timer, not by an answer:
    requests waiting for a slot then go out."""
    loop = asyncio.get_running_loop()
    throttle = Throttle(1)
    controller = PausingController(resume_at=loop.time() + 0.02)
    gate = AdaptiveGate(controller, throttle, monotonic=loop.time)
    gate.on_result("throttle", 0.001)
    assert throttle.limit == 0
    await asyncio.wait_for(throttle.acquire(), timeout=2.0)  # only the timer can let it in
    assert throttle.limit == 3
    assert controller.ticks == 1
    gate.close()


async def test_gate_close_cancels_its_timer() -> None:
    """After close, a pending wake-up does not fire: nothing outlives the run."""
    loop = asyncio.get_running_loop()
    throttle = Throttle(1)
    controller = PausingController(resume_at=loop.time() + 0.01)
    gate = AdaptiveGate(controller, throttle, monotonic=loop.time)
    gate.on_result("throttle", 0.001)
    gate.close()
    await asyncio.sleep(0.03)
    assert controller.ticks == 0
    assert throttle.limit == 0


class RecordingController(PausingController):
    """Notes the requests out that the gate reports with each answer."""

    def __init__(self) -> None:
        super().__init__(resume_at=0.0)
        self.reported: list[int | None] = []

    def on_result(
        self, verdict: str, latency_s: float, now: float, in_flight: int | None = None
    ) -> int:
        self.reported.append(in_flight)
        return self.limit


async def test_gate_reports_requests_out_not_slots_waiting_for_their_start() -> None:
    """With limits.rpm a request holds its slot while it waits for its start: the controller
    hears the requests actually out, so a pace of starts that holds a run below its limit does
    not read as a limit in use (the controller would raise it, unused, to max_concurrency)."""
    throttle = Throttle(4, rpm=60)  # one start per second: the 2nd and 3rd wait with a slot
    release = asyncio.Event()

    async def request() -> None:
        async with throttle:
            await release.wait()

    tasks = [asyncio.ensure_future(request()) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert (throttle.in_flight, throttle.out) == (3, 1)
    controller = RecordingController()
    gate = AdaptiveGate(controller, throttle, monotonic=asyncio.get_running_loop().time)
    gate.on_result("ok", 0.1)
    assert controller.reported == [1]
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    assert (throttle.in_flight, throttle.out) == (1, 1)  # a cancelled wait took no start
    release.set()
    await tasks[0]
    assert (throttle.in_flight, throttle.out) == (0, 0)
    gate.close()
