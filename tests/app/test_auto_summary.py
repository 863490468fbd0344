"""``concurrency: auto`` says in the summary what the account admitted: the limit held longest
and the range held for the middle 90 % of the run (``JobStats.auto_levels``), counted from the
gate's changes on the run's clock, the last limit up to the engine's end included."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, cast

import pytest

from runner.app.orchestrate import RunOptions, run
from runner.app.summary import summary_lines
from runner.app.wiring import JobParts, make_realtime_engine
from runner.clock import FakeClock
from runner.config import load_config
from runner.core.stats import JobStats
from tests.support.configs import make_urls, write_minimal_config
from tests.support.sim import MakeSim


def held(changes: list[tuple[float, int]], end: float) -> JobStats:
    stats = JobStats("describe")
    for at, limit in changes:
        stats.note_limit(limit, at)
    stats.note_limit(stats.concurrency, end)
    return stats


def test_the_limit_held_longest_and_the_middle_range() -> None:
    """A 1 s ramp 4 -> 8 -> 16, then 40 held with give-backs to 36: the ramp is under 5 % of
    the time and is left out of the range; the give-backs are inside it."""
    changes = [(0.0, 4), (0.2, 8), (0.4, 16), (0.6, 40)]
    t = 0.6
    for _ in range(20):  # a cycle: 40 for 2.4 s, 36 for 0.6 s
        changes += [(t + 2.4, 36), (t + 3.0, 40)]
        t += 3.0
    stats = held(changes, t)
    assert stats.auto_levels() == (36, 40, 40)
    assert sum(stats.held_s.values()) == pytest.approx(t)


def test_a_moving_limit_shows_its_whole_range() -> None:
    stats = held([(0.0, 16), (6.0, 4), (12.0, 32)], 18.0)
    assert stats.auto_levels() == (4, 32, 32)  # 6 s each: the tie goes to the higher


def test_a_fixed_concurrency_has_no_auto_levels() -> None:
    stats = JobStats("describe", concurrency=16)
    assert stats.auto_levels() is None
    assert "auto_concurrency" not in stats.summary()
    assert not any("concurrency auto" in line for line in summary_lines(stats))


async def test_the_engine_counts_the_last_limit_up_to_its_end(tmp_path: Path) -> None:
    """The realtime engine's wiring starts the count at the controller's first limit and, when
    the engine finishes, counts the limit it ended on up to then on the same clock."""
    urls = make_urls(3)
    cfg = write_minimal_config(tmp_path, urls, limits={"concurrency": "auto"})
    config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})
    clock, stats = FakeClock(), JobStats("describe")
    parts = JobParts(
        config.jobs[0], config, cast(Any, None), cast(Any, None), stats, asyncio.Event()
    )
    engine = make_realtime_engine(parts, clock=clock)
    assert stats.concurrency == 4 and stats.limit_since == clock.now
    clock.now += 7.5
    finish = engine.deps.on_finish
    assert finish is not None
    finish()
    assert stats.held_s == {4: 7.5}
    assert stats.auto_levels() == (4, 4, 4)


async def test_an_auto_run_summary_says_what_the_account_admitted(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """Hidden limit 6: the summary's traffic line and the JSON summary name a limit near 6."""
    sim = await start_sim(latency_mean_s=0.02, max_in_flight=6)
    urls = make_urls(400, prefix="https://img.example.com", digits=0)
    cfg = write_minimal_config(
        tmp_path,
        urls,
        api={"base_url": sim.base_url},
        limits={"concurrency": "auto", "max_concurrency": 64},
        retry={"max_attempts": 30, "base_delay_s": 0.01, "max_delay_s": 0.05},
    )
    config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})
    out = io.StringIO()
    result = await run(config, RunOptions(tty=False), out=out)
    stats = result.stats[0]
    levels = stats.auto_levels()
    assert levels is not None
    low, mostly, high = levels
    assert 5 <= mostly <= 7 and low <= mostly <= high <= 8, levels
    assert sum(stats.held_s.values()) >= 0.9 * stats.elapsed_s
    assert stats.summary()["auto_concurrency"] == {"mostly": mostly, "low": low, "high": high}
    assert f"mostly {mostly}" in out.getvalue() or f"concurrency auto {mostly}" in out.getvalue()
