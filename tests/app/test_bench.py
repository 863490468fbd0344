"""glmrun bench against the simulator: levels, table, recommendation, records kept."""

from __future__ import annotations

import builtins
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.app.bench import (
    LevelResult,
    bench,
    format_recommendation,
    format_table,
    next_probe,
    parse_levels,
    recommend,
    sample_for,
    steady,
)
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
    levels = await bench(config, sample=10, levels=[1, 2, 6], out=out, refine=False)
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


async def test_invalid_lines_are_recorded_but_not_counted_as_a_levels_answers(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """Six invalid lines among 20 URLs: each level's results and errors are its 10 answers
    (the invalid lines, recorded as a run records them, were never sent at any level)."""
    sim = await start_sim(latency_mean_s=0.0)
    urls = make_urls(20, prefix="https://img.example.com", digits=0)
    lines = [f"ftp://e.example/{i}.jpg" for i in range(6)] + urls
    cfg = write_minimal_config(tmp_path, lines, api={"base_url": sim.base_url})
    config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})
    levels = await bench(config, sample=10, levels=[2, 4], out=io.StringIO(), refine=False)
    assert [(lv.results, lv.ok, lv.errors) for lv in levels] == [(10, 10, 0), (10, 10, 0)]
    codes = [r.get("error", {}).get("code") for r in read_records(tmp_path / "out.jsonl")]
    assert codes.count("invalid_input") == 6 and sim.stats.chat_requests == 20


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
    # each level's sample is paid for: one listed twice would be measured, and paid, twice
    with pytest.raises(ConfigError, match=r"4 listed more than once in '4,8,4'"):
        parse_levels("4,8,4")


async def test_plot_without_matplotlib_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--plot with matplotlib missing fails before sending anything, with an install command
    that works where glmrun came from: a clone (``pip install 'glmrun[plot]'`` asked PyPI for
    a package glmrun is not published as)."""
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    config = make_config(tmp_path, "http://127.0.0.1:9/api/paas/v4")
    with pytest.raises(ConfigError, match=r"pip install matplotlib .*pip install -e '\.\[plot\]'"):
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


def level(concurrency: int, rate: float, share_429: float = 0.0) -> LevelResult:
    attempts = 1000
    return LevelResult(
        concurrency,
        results=100,
        attempts=attempts,
        throttled=round(share_429 * attempts),
        wall_s=100 / rate,
    )


def test_a_level_gets_four_round_trips_of_requests_unless_told() -> None:
    assert [sample_for(c) for c in (4, 8, 16, 32, 64)] == [50, 50, 64, 128, 256]
    assert sample_for(64, 20) == 20


def test_the_next_probe_halves_the_gap_below_a_throttled_level() -> None:
    """16 fine, 32 throttled: the limit lies between, try 24; then 24 fine, 32 throttled: 28;
    24 fine and 28 throttled: 26; 24 and 26: close enough."""
    tried = [level(8, 40), level(16, 80), level(32, 60, 0.2)]
    assert next_probe(tried) == 24
    tried.append(level(24, 120))
    assert next_probe(tried) == 28
    tried.append(level(28, 90, 0.1))
    assert next_probe(tried) == 26
    tried.append(level(26, 100, 0.08))
    assert next_probe(tried) is None


def test_no_probe_when_the_level_above_was_not_throttled_or_nothing_is_above() -> None:
    # slower above without throttles: the account is not what limits it
    assert next_probe([level(16, 80), level(32, 70, 0.01)]) is None
    assert next_probe([level(16, 80), level(32, 160)]) is None  # the best is the top level
    assert next_probe([level(4, 20, 0.5)]) is None  # nothing usable
    assert next_probe([level(64, 300), level(72, 250, 0.3)]) is None  # within an eighth


async def test_bench_finds_a_limit_between_its_levels(tmp_path: Path, start_sim: MakeSim) -> None:
    """Hidden limit 6, levels 4 and 8: 8 is throttled, so bench tries 6 (between them), which
    gets the most, and recommends it; every answer is in the output once, the probe's too."""
    sim = await start_sim(latency_mean_s=0.02, max_in_flight=6)
    config = make_config(tmp_path, sim.base_url, n=400)
    out = io.StringIO()
    levels = await bench(config, levels=[4, 8], out=out)
    assert [lv.concurrency for lv in levels] == [4, 6, 8]
    assert [lv.results for lv in levels] == [50, 50, 50]
    assert levels[2].throttled > 0 and levels[1].throttled_share <= 0.05
    text = out.getvalue()
    assert "  concurrency 6: " in text and "(between 4 and 8)" in text
    assert "recommended: limits.concurrency: 6 " in text
    records = read_records(tmp_path / "out.jsonl")
    assert len(records) == len({r["url"] for r in records}) == 150


def test_a_level_is_timed_while_every_slot_had_a_url() -> None:
    """Results of level 4 at 1 s, 2 s ... 10 s, then one at 30 s (a retry the last URL waited
    on): the rate is taken up to the 6th result, after which fewer than 4 were left; a level
    with fewer than two rounds of URLs has no such stretch and is timed whole."""
    finished = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 30.0]
    assert steady(finished, 0.0, 4) == (6, 6.0)
    assert steady(finished[:7], 0.0, 4) is None  # 3 results before the tail: under a round
    lv = LevelResult(4, results=10, attempts=11, wall_s=30.0, sample=10, full=(6, 6.0))
    assert lv.rate == 1.0  # not 10 / 30
    assert LevelResult(4, results=10, wall_s=5.0).rate == 2.0


async def test_a_retry_at_the_end_of_a_level_does_not_halve_its_rate(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """The level's last URL is refused once and told to wait 0.5 s (Retry-After): the level
    takes twice as long or more, but its rate is what its 4 slots carried until then."""
    urls = make_urls(60, prefix="https://img.example.com", digits=0)
    sim = await start_sim(latency_mean_s=0.02, url_faults={urls[-1]: ["429"]}, retry_after_s=0.5)
    retry = {"max_attempts": 3, "base_delay_s": 0.1, "max_delay_s": 1.0}
    cfg = write_minimal_config(tmp_path, urls, api={"base_url": sim.base_url}, retry=retry)
    config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "k"})
    (lv,) = await bench(config, sample=60, levels=[4], out=io.StringIO(), refine=False)
    assert lv.results == 60 and lv.attempts == 61
    assert lv.wall_s >= 0.5
    assert lv.full is not None and lv.full[0] == 56
    assert lv.rate > 1.5 * lv.results / lv.wall_s, (lv.rate, lv.results / lv.wall_s)


def test_the_plot_labels_levels_that_stand_apart_the_recommended_one_first() -> None:
    """Levels bench tried between two others sit close on the log axis: only those at least
    1.25 x apart get a number (the recommended one always), and each bar spans a part of
    the way to its nearest neighbour, so close bars do not overlap."""
    from runner.app.bench import _labelled, _span

    xs = [4, 8, 16, 24, 26, 28, 32, 64]
    assert _labelled(xs, 24) == {4, 8, 16, 24, 32, 64}
    assert _labelled(xs, 26) == {4, 8, 16, 26, 64}  # 32 / 26 < 1.25
    assert _labelled(xs, None) == {4, 8, 16, 24, 32, 64}
    for left, right in zip(xs, xs[1:], strict=False):
        assert left * _span(left, xs) <= right / _span(right, xs)  # no overlap
    assert _span(64, [64]) == 1.35  # a lone level


def test_a_level_whose_urls_ran_out_is_not_compared_and_the_table_says_so() -> None:
    """The pending URLs ran out during level 16 (5 of its 64): its rate, from a burst of 5,
    says nothing of what 16 sustains, so the recommendation is among the whole levels, no
    "try higher levels too" is suggested, and the table and the line say what ran out."""
    full4, full8 = level(4, 20), level(8, 40)
    full4.sample = full8.sample = 100
    short16 = LevelResult(16, results=5, attempts=5, wall_s=5 / 60, sample=64)
    levels = [full4, full8, short16]
    assert recommend(levels) is full8
    line = format_recommendation(levels)
    assert line.startswith("recommended: limits.concurrency: 8 ")
    assert "try higher levels too" not in line
    assert "the pending URLs ran out at concurrency 16 (5 of 64)" in line
    assert format_table(levels).splitlines()[-1].endswith("    5/64")
    assert recommend([short16]) is short16  # nothing whole to compare: the best there is
    top = level(8, 40)
    top.sample = 100
    assert "try higher levels too" in format_recommendation([full4, top])


class Terminal(io.StringIO):
    """What bench writes to when a person runs it at a terminal."""

    def isatty(self) -> bool:
        return True


async def test_bench_wraps_its_long_lines_at_spaces_on_a_terminal(
    tmp_path: Path, start_sim: MakeSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns the recommendation that the URLs ran out was cut by the terminal
    mid-word ("the pending URLs r|an out", "measure highe|r levels"): on a terminal the
    lines wrap at spaces, indented; in a pipe each stays one line, for grep."""
    monkeypatch.setenv("COLUMNS", "60")
    sim = await start_sim(latency_mean_s=0.0)
    config = make_config(tmp_path, sim.base_url, n=70)
    out = Terminal()
    await bench(config, sample=None, levels=[2, 16], out=out, refine=False)
    lines = out.getvalue().splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("concurrency ")]
    prose = [line for line in lines if line not in lines[table[0] : table[0] + 3]]
    assert all(len(line) <= 60 for line in prose), lines
    start = next(i for i, line in enumerate(lines) if line.startswith("recommended: "))
    said = " ".join(line.strip() for line in lines[start:])
    assert "the pending URLs ran out at concurrency 16" in said
    assert all(line.startswith("    ") for line in lines[start + 1 :])
    (tmp_path / "pipe").mkdir()
    config = make_config(tmp_path / "pipe", sim.base_url, n=70)
    piped = io.StringIO()
    await bench(config, sample=None, levels=[2, 16], out=piped, refine=False)
    assert piped.getvalue().splitlines()[-1].startswith("recommended: ")
    assert "ran out at concurrency 16" in piped.getvalue().splitlines()[-1]
