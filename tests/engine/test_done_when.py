"""Issue 2's "Done when", run through app.run against the loopback simulator (5 ms latency)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from runner.app import orchestrate as app
from runner.config import load_config
from runner.simulator import Simulator, expected_content
from tests.support.configs import ENV, make_urls, write_config
from tests.support.records import latest, read_records


async def run_app(
    tmp_path: Path, sim: Simulator, urls: list[str] | None, **over: Any
) -> tuple[app.RunResult, str]:
    """One whole glmrun run (lock, plan, engine, summary) in-process; returns the result and
    stdout."""
    path = tmp_path / "config.yaml"
    if urls is not None:
        over = {
            "api": {"base_url": sim.base_url},
            "limits": {"concurrency": 16},
            **over,
        }
        path = write_config(tmp_path, urls, **over)
    out = io.StringIO()
    result = await app.run(load_config(path, environ=ENV), app.RunOptions(tty=False), out=out)
    return result, out.getvalue()


def assert_all_ok(output: Path, urls: list[str]) -> None:
    final = latest(read_records(output))
    assert len(final) == len(urls) and set(final) == set(urls)
    for url, record in final.items():
        assert record["status"] == "ok", record
        assert record["content"] == expected_content(url)


async def test_2000_urls_faults_off(tmp_path: Path, sim: Simulator) -> None:
    """2,000 URLs at concurrency 16 end with 2,000 matching ok records and exactly 2,000 chat
    requests."""
    urls = make_urls(2000)
    result, stdout = await run_app(tmp_path, sim, urls)
    records = read_records(tmp_path / "out" / "t.jsonl")
    assert len(records) == 2000
    assert_all_ok(tmp_path / "out" / "t.jsonl", urls)
    assert sim.stats.chat_requests == 2000
    assert sim.stats.max_in_flight_seen <= 16
    assert result.exit_code == 0
    (stats,) = result.stats
    assert (stats.ok, stats.errors, stats.requests, stats.retries) == (2000, 0, 2000, 0)
    assert "t: ok 2,000, errors 0 — 2,000/2,000 done" in stdout and "requests 2,000 ·" in stdout
    assert "tokens" in stdout and "items/s" in stdout


async def test_2000_urls_with_500s_and_429s(tmp_path: Path, start_sim: Any) -> None:
    """With 10% injected 500s and 5% 429s (seeded) the same run still ends with 2,000 ok records."""
    sim = await start_sim(error_500_rate=0.10, error_429_rate=0.05, seed=2)
    urls = make_urls(2000)
    retry = {"max_attempts": 12, "base_delay_s": 0.001, "max_delay_s": 0.004}
    result, _ = await run_app(tmp_path, sim, urls, retry=retry)
    assert_all_ok(tmp_path / "out" / "t.jsonl", urls)
    assert len(read_records(tmp_path / "out" / "t.jsonl")) == 2000
    (stats,) = result.stats
    assert stats.ok == 2000 and stats.errors == 0 and result.exit_code == 0
    assert stats.retries == sim.stats.chat_requests - 2000 > 200
    assert stats.throttled == sim.stats.throttled > 0
    assert sim.stats.max_in_flight_seen <= 16


async def test_appended_urls_are_exactly_what_the_next_run_requests(
    tmp_path: Path, sim: Simulator
) -> None:
    """Appending 10 URLs to a finished input makes the next run request exactly those 10."""
    urls = make_urls(200)
    await run_app(tmp_path, sim, urls)
    assert sim.stats.chat_requests == 200
    new = make_urls(10, start=200)
    inp = tmp_path / "urls.txt"
    inp.write_bytes(inp.read_bytes() + "".join(f"{u}\n" for u in new).encode())
    sim.reset_stats()
    result, stdout = await run_app(tmp_path, sim, None)
    assert sim.stats.chat_requests == 10
    assert sorted(sim.stats.per_url) == new and set(sim.stats.per_url.values()) == {1}
    assert_all_ok(tmp_path / "out" / "t.jsonl", urls + new)
    assert result.stats[0].skipped == 200 and "skipped 200 done before" in stdout


async def test_finished_run_again_sends_nothing(tmp_path: Path, sim: Simulator) -> None:
    """Running a finished job again sends no request and appends no record."""
    urls = make_urls(50)
    await run_app(tmp_path, sim, urls)
    before = (tmp_path / "out" / "t.jsonl").read_bytes()
    sim.reset_stats()
    result, _ = await run_app(tmp_path, sim, None)
    assert sim.stats.chat_requests == 0 and result.exit_code == 0
    assert (tmp_path / "out" / "t.jsonl").read_bytes() == before


async def test_output_is_fsynced_at_exit(tmp_path: Path, sim: Simulator, monkeypatch: Any) -> None:
    """A finished run fsyncs its output file before it returns."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    await run_app(tmp_path, sim, make_urls(5))
    assert str((tmp_path / "out" / "t.jsonl").resolve()) in synced
