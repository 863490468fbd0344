"""concurrency: auto against the simulator's hidden in-flight limit: no URL lost, limit found."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from runner.app.orchestrate import RunOptions, run
from runner.config import load_config
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
