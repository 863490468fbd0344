"""glmrun bench against the simulator: levels, table, recommendation, records kept."""

from __future__ import annotations

import builtins
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.app.bench import LevelResult, bench, format_table, parse_levels, recommend
from runner.config import Config, load_config
from runner.errors import ConfigError
from tests.support.configs import make_urls, write_minimal_config
from tests.support.records import read_records
from tests.support.sim import MakeSim


def make_config(tmp_path: Path, base_url: str, n: int = 100) -> Config:
    urls = make_urls(n, prefix="https://img.example.com", digits=0)
    retry = {"max_attempts": 30, "base_delay_s": 0.01, "max_delay_s": 0.05}
    cfg = write_minimal_config(tmp_path, urls, api={"base_url": base_url}, retry=retry)
    return load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})


async def test_bench_runs_each_level_and_writes_every_answer(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """Three levels of 10 URLs: 30 distinct records in the output, a row per level, a
    recommendation."""
    sim = await start_sim(latency_mean_s=0.005, max_in_flight=3)
    out = io.StringIO()
    config = make_config(tmp_path, sim.base_url)
    levels = await bench(config, sample=10, levels=[1, 2, 6], out=out)
    records = read_records(tmp_path / "out.jsonl")
    assert len(records) == 30
    assert len({r["url"] for r in records}) == 30
    assert all(r["status"] == "ok" for r in records)
    assert [lv.concurrency for lv in levels] == [1, 2, 6]
    assert all(lv.results == 10 for lv in levels)
    assert levels[2].throttled > 0  # 6 in flight against a limit of 3
    assert levels[0].throttled == 0
    text = out.getvalue()
    assert "recommended: limits.concurrency:" in text
    assert text.count("\n") >= 5


async def test_bench_continues_with_the_next_pending_urls(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """A second bench skips what the first one finished, so nothing is sent twice."""
    sim = await start_sim(latency_mean_s=0.0)
    config = make_config(tmp_path, sim.base_url, n=25)
    await bench(config, sample=10, levels=[2], out=io.StringIO())
    second = await bench(config, sample=10, levels=[2, 4], out=io.StringIO())
    assert [lv.results for lv in second] == [10, 5]
    assert sim.stats.chat_requests == 25


def test_recommendation_prefers_lower_levels_within_five_percent_and_rejects_429_heavy_ones() -> (
    None
):
    """Best throughput at an acceptable 429 share, the lower level when within 5%."""

    def level(c: int, rate: float, share: float) -> LevelResult:
        lv = LevelResult(
            c, results=100, attempts=100, throttled=int(share * 100), wall_s=100 / rate
        )
        return lv

    levels = [level(4, 40, 0), level(8, 78, 0), level(16, 80, 0.01), level(32, 120, 0.3)]
    best = recommend(levels)
    assert best is not None and best.concurrency == 8
    assert recommend([level(4, 40, 0.5)]) is None
    assert "concurrency" in format_table(levels)


def test_levels_are_parsed_and_checked() -> None:
    """--concurrency takes positive integers separated by commas."""
    assert parse_levels("4, 8,16") == [4, 8, 16]
    with pytest.raises(ConfigError):
        parse_levels("4,x")
    with pytest.raises(ConfigError):
        parse_levels("0")


async def test_plot_without_matplotlib_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--plot with matplotlib missing fails before sending anything, naming the extra."""
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    config = make_config(tmp_path, "http://127.0.0.1:9/api/paas/v4")
    with pytest.raises(ConfigError, match=r"glmrun\[plot\]"):
        await bench(config, sample=1, levels=[1], plot_path=tmp_path / "p.png", out=io.StringIO())
    assert not (tmp_path / "out.jsonl").exists()


def test_bench_command_is_registered() -> None:
    """`glmrun bench --help` lists its options."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "bench", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    for option in ("--job", "--sample", "--concurrency", "--plot"):
        assert option in proc.stdout


async def test_quiet_bench_prints_only_its_result_and_an_empty_job_says_why(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """-q: the table and the recommendation only (it printed the progress lines too); a job
    with nothing pending says so and what to do (it said "no pending URLs left for
    concurrency 2", as if a level had run out)."""
    sim = await start_sim(latency_mean_s=0.0)
    config = make_config(tmp_path, sim.base_url, n=10)
    out = io.StringIO()
    await bench(config, sample=5, levels=[2, 4], out=out, quiet=True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("concurrency ") and lines[-1].startswith("recommended: ")
    assert len(lines) == 4
    out = io.StringIO()
    assert await bench(config, sample=5, levels=[2], out=out, quiet=True) == []
    assert out.getvalue() == (
        "j: no pending URLs to measure with (bench sends the job's pending URLs, and every one "
        "is done): append new URLs to its input, or bench another job\n"
    )
