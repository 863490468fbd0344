"""Kill -9 half-way through a real run, run again: the rest finishes, re-requests bounded by
in-flight."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.simulator import expected_content
from tests.support.configs import ENV, make_urls, output_of, write_config
from tests.support.records import read_records

from .procs import SimProcess, simulator

CONCURRENCY = 16


def env() -> dict[str, str]:
    out = {**os.environ, **ENV}
    out.pop("ZHIPUAI_API_KEY", None)
    return out


@pytest.fixture
def standalone_sim() -> Iterator[SimProcess]:
    """`python -m runner simulate --port 0` in its own process, on the port the OS chose."""
    with simulator("latency_mean_s=0.005") as sim:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/api/paas/v4", sim.base_url)
        assert match, sim.base_url
        assert int(match.group(1)) != 0
        yield sim


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_half_way_then_resume(tmp_path: Path, standalone_sim: SimProcess) -> None:
    """SIGKILL at ~half of 2,000 URLs; the rerun finishes with one ok record per URL and few
    re-requests."""
    urls = make_urls(2000)
    cfg = write_config(
        tmp_path,
        urls,
        api={"base_url": standalone_sim.base_url},
        limits={"concurrency": CONCURRENCY},
    )
    out = output_of(tmp_path)
    cmd = [sys.executable, "-m", "runner", str(cfg), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    try:
        deadline = time.monotonic() + 30
        while count_lines(out) < 1000 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.03)  # strike at an arbitrary moment, not right after a flush
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    kept = count_lines(out)
    assert 900 <= kept < 2000, kept
    first = standalone_sim.stats()["chat_requests"]

    again = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env(), timeout=60)
    assert again.returncode == 0, again.stderr
    stats = standalone_sim.stats()
    records = read_records(out)
    ok = [r["url"] for r in records if r["status"] == "ok"]
    assert sorted(ok) == urls  # every URL exactly one ok record
    assert all(r["content"] == expected_content(r["url"]) for r in records)
    assert set(stats["per_url"]) == set(urls)
    # Re-requested = answered in run 1 but not on disk: requests in flight at the kill, plus
    # records appended in the loop turn the kill struck (one per worker at most).
    assert stats["chat_requests"] <= 2000 + 2 * CONCURRENCY, (first, kept, stats["chat_requests"])
    assert again.stdout == ""  # -q: nothing on success
    assert "skipped" not in again.stderr
