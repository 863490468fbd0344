"""Kill -9 half-way through a real run, run again: the rest finishes, re-requests bounded by in-
flight."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from runner.simulator import expected_content
from tests.conftest import ENV, make_urls, output_of, read_jsonl, write_config

CONCURRENCY = 16


def env() -> dict[str, str]:
    out = {**os.environ, **ENV}
    out.pop("ZHIPUAI_API_KEY", None)
    return out


@pytest.fixture
def standalone_sim() -> Iterator[str]:
    """`python -m runner simulate --port 0` in its own process; yields the base URL it prints."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "simulate",
            "--port",
            "0",
            "--set",
            "latency_mean_s=0.005",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"simulator listening on (http://127\.0\.0\.1:(\d+)/api/paas/v4)\n", line
        )
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert int(match.group(2)) != 0
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def sim_stats(base_url: str) -> dict[str, Any]:
    root = base_url.split("/api/", 1)[0]
    with urllib.request.urlopen(f"{root}/_sim/stats", timeout=5) as resp:
        return orjson.loads(resp.read())  # type: ignore[no-any-return]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_half_way_then_resume(tmp_path: Path, standalone_sim: str) -> None:
    """SIGKILL at ~half of 2,000 URLs; the rerun finishes with one ok record per URL and few re-
    requests."""
    urls = make_urls(2000)
    cfg = write_config(
        tmp_path, urls, api={"base_url": standalone_sim}, limits={"concurrency": CONCURRENCY}
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
    first = sim_stats(standalone_sim)["chat_requests"]

    again = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env(), timeout=60)
    assert again.returncode == 0, again.stderr
    stats = sim_stats(standalone_sim)
    records = read_jsonl(out)
    ok = [r["url"] for r in records if r["status"] == "ok"]
    assert sorted(ok) == urls  # every URL exactly one ok record
    assert all(r["content"] == expected_content(r["url"]) for r in records)
    assert set(stats["per_url"]) == set(urls)
    # Re-requested = answered in run 1 but not on disk: requests in flight at the kill, plus
    # records appended in the loop turn the kill struck (one per worker at most).
    assert stats["chat_requests"] <= 2000 + 2 * CONCURRENCY, (first, kept, stats["chat_requests"])
    assert again.stdout == ""  # -q: nothing on success
    assert "skipped" not in again.stderr
