"""Two real processes on one output: the lock turns the second away or makes it wait."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.support.records import latest, read_records

from .procs import run, simulator, start_run, wait_for_lines, write_job

# How long the first run holds the lock at least: long enough for a second interpreter to start
# and reach the lock on a loaded 2-core machine (2 s was not, under a parallel test suite).
HOLD_S = 6


def _holds_for(url: str, seconds: float) -> tuple[str, str]:
    """Simulator knobs: ``url`` hangs ``seconds`` once (then is retried), so the run holding
    the lock lasts at least that long whatever the machine's speed."""
    return "url_faults=" + json.dumps({url: ["hang"]}), f"hang_s={seconds}"


def test_second_run_exits_75_naming_the_holder_pid(tmp_path: Path) -> None:
    """While one run writes the output, a second exits 75 at once and names the first's pid."""
    urls = [f"https://img.example.com/lock/{i}.jpg" for i in range(200)]
    with simulator("latency_mean_s=0.02", *_holds_for(urls[0], HOLD_S)) as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        out = tmp_path / "out" / "j.jsonl"
        first = start_run(config)
        wait_for_lines(out, 5, first)
        second = run(config)
        first.communicate(timeout=30)
        assert second.returncode == 75
        assert re.search(rf"pid {first.pid}\b", second.stderr), second.stderr
        assert "Traceback" not in second.stderr
        assert first.returncode == 0
        assert sim.stats()["chat_requests"] == len(urls) + 1  # the second sent nothing


def test_wait_lock_waits_for_the_holder_then_finds_nothing_to_do(tmp_path: Path) -> None:
    """With --wait-lock the second run starts when the first ends and sends nothing new."""
    urls = [f"https://img.example.com/wait/{i}.jpg" for i in range(150)]
    with simulator("latency_mean_s=0.02", *_holds_for(urls[0], HOLD_S)) as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        out = tmp_path / "out" / "j.jsonl"
        first = start_run(config)
        wait_for_lines(out, 5, first)
        second = start_run(config, "--wait-lock", "-v")  # the wait is an INFO event
        _, err2 = second.communicate(timeout=30)
        first.communicate(timeout=30)
        assert second.returncode == 0, err2
        assert "waiting for the output lock" in err2
        assert sim.stats()["chat_requests"] == len(urls) + 1
        assert len(read_records(out)) == len(urls)


def test_lock_of_a_killed_run_never_blocks(tmp_path: Path) -> None:
    """kill -9 leaves the lock file behind with a dead pid; the next run takes it at once."""
    urls = [f"https://img.example.com/stale/{i}.jpg" for i in range(150)]
    with simulator("latency_mean_s=0.05") as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        out = tmp_path / "out" / "j.jsonl"
        first = start_run(config)
        wait_for_lines(out, 5, first)
        first.kill()
        first.communicate(timeout=10)
        lock = out.with_name("j.jsonl.lock")
        assert lock.read_text().strip() == str(first.pid)
        t0 = time.monotonic()
        second = run(config)
        assert second.returncode == 0, second.stderr
        assert time.monotonic() - t0 < 10
        assert set(latest(read_records(out))) == set(urls)
