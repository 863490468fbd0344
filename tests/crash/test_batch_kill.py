"""kill -9 around the money steps of the batch path: no batch is ever created twice."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from runner.simulator import expected_content
from tests.support.records import read_records

from .procs import run, simulator, start_run, write_batch_job

CHUNK = 100


def _batch_job(tmp_path: Path, base_url: str, urls: list[str]) -> Path:
    return write_batch_job(tmp_path, base_url, urls, max_requests_per_file=CHUNK)


def _kill_at(proc: subprocess.Popen[str], state: str) -> list[dict]:
    """Read JSON log events until a chunk reaches ``state``, then kill -9 at once."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        seen.append(event)
        if event.get("event") == "batch chunk" and event.get("state") == state:
            proc.kill()
            break
    proc.communicate(timeout=10)
    return seen


def test_sigkill_after_upload_and_after_create_never_creates_a_batch_twice(tmp_path: Path) -> None:
    """Kill right after a file upload is recorded, then right after a batch create is
    recorded; the reruns reuse both, and every URL ends with exactly one ok record."""
    urls = [f"https://img.example.com/batchkill/{i}.jpg" for i in range(3 * CHUNK)]
    with simulator(
        "latency_mean_s=0.005",
        "batch_validating_s=0.05",
        "batch_in_progress_s=0.3",
        "batch_finalizing_s=0.05",
    ) as sim:
        config = _batch_job(tmp_path, sim.base_url, urls)
        events = _kill_at(start_run(config, "--log-format", "json"), "Uploaded")
        assert any(e.get("state") == "Uploaded" for e in events)
        after_upload = sim.stats()
        events = _kill_at(start_run(config, "--log-format", "json"), "Running")
        assert any(e.get("state") == "Running" for e in events)
        after_create = sim.stats()
        done = run(config)
        assert done.returncode == 0, done.stderr
        stats = sim.stats()
    assert after_upload["files_uploaded"] >= 1 and after_create["batches_created"] >= 1
    assert stats["files_uploaded"] == 3 and stats["batches_created"] == 3, stats
    assert stats["chat_requests"] == 0  # nothing went the realtime way
    records = read_records(tmp_path / "out" / "j.jsonl")
    oks = Counter(r["url"] for r in records if r["status"] == "ok")
    assert set(oks) == set(urls) and max(oks.values()) == 1
    assert all(r["content"] == expected_content(r["url"]) and r["via"] == "batch" for r in records)


def test_sigint_while_batches_run_exits_130_and_the_rerun_collects(tmp_path: Path) -> None:
    """SIGINT while waiting for running batches: exit 130 at once, the batches stay tracked,
    and the next run collects them without creating any again."""
    import signal
    import time

    urls = [f"https://img.example.com/batchint/{i}.jpg" for i in range(2 * CHUNK)]
    with simulator(
        "batch_validating_s=0.05", "batch_in_progress_s=1.0", "batch_finalizing_s=0.05"
    ) as sim:
        config = _batch_job(tmp_path, sim.base_url, urls)
        proc = start_run(config, "--log-format", "json")
        assert proc.stderr is not None
        submitted = 0
        for line in proc.stderr:
            submitted += '"batch submitted"' in line
            if submitted == 2:
                break
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
        assert proc.returncode == 130
        assert time.monotonic() - t0 < 2.0
        done = run(config)
        assert done.returncode == 0, done.stderr
        assert sim.stats()["batches_created"] == 2
    records = read_records(tmp_path / "out" / "j.jsonl")
    assert sorted(r["url"] for r in records) == sorted(urls)
