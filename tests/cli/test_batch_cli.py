"""The batch path from the command line: auto routing, --no-wait (75), batches list|show|cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from runner.simulator import expected_content
from tests.support.configs import DELETE, make_urls, write_batch_config
from tests.support.records import latest, read_records
from tests.support.runs import glmrun

# The batch config with default limits and retry, writing out/r.jsonl, polled every 50 ms.
write_config = write_batch_config.derive(
    limits=DELETE,
    retry=DELETE,
    batch={"poll_interval_s": 0.05},
    job={"output": "out/r.jsonl"},
)
URLS = make_urls(400, prefix="https://img.example", digits=0)


def records(tmp: Path) -> dict[str, dict[str, Any]]:
    return latest(read_records(tmp / "out" / "r.jsonl"))


def sim_batches(tmp: Path) -> int:
    return len(list((tmp / "out" / ".glmrun" / "simulator" / "batches").glob("*.json")))


def test_auto_routing_both_sides_of_threshold(tmp_path: Path) -> None:
    """mode auto with threshold 100: 50 URLs go realtime, 400 go batch; --dry-run says which and
    why."""
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    cfg = write_config(small, URLS[:50], job={"mode": "auto"}, batch={"threshold": 100})
    dry = glmrun(str(cfg), "--dry-run", cwd=small)
    assert (
        dry.returncode == 0
        and "-> realtime (mode: auto, 50 pending <= batch.threshold 100)" in dry.stdout
    )
    assert glmrun(str(cfg), cwd=small).returncode == 0
    assert {r["via"] for r in records(small).values()} == {"realtime"} and len(records(small)) == 50
    cfg = write_config(big, URLS[:400], job={"mode": "auto"}, batch={"threshold": 100})
    assert (
        "-> batch (mode: auto, 400 pending > batch.threshold 100)"
        in glmrun(str(cfg), "--dry-run", cwd=big).stdout
    )
    done = glmrun(str(cfg), cwd=big)
    assert done.returncode == 0, done.stderr
    recs = records(big)
    assert len(recs) == 400 and {r["via"] for r in recs.values()} == {"batch"}
    assert all(r["content"] == expected_content(u) for u, r in recs.items())
    assert sim_batches(big) == 1


def test_no_wait_exits_75_then_second_run_collects(tmp_path: Path) -> None:
    """--no-wait submits and exits 75; the same command again collects and submits nothing twice."""
    cfg = write_config(
        tmp_path,
        URLS[:30],
        simulator={"batch_in_progress_s": 0.3},
        batch={"max_requests_per_file": 20},
    )
    first = glmrun(str(cfg), "--no-wait", cwd=tmp_path)
    assert first.returncode == 75, first.stderr
    assert "run the same command again" in first.stderr
    assert sim_batches(tmp_path) == 2 and records(tmp_path) == {}
    second = glmrun(str(cfg), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    recs = records(tmp_path)
    assert len(recs) == 30 and {r["via"] for r in recs.values()} == {"batch"}
    assert sim_batches(tmp_path) == 2
    third = glmrun(str(cfg), cwd=tmp_path)
    assert third.returncode == 0 and sim_batches(tmp_path) == 2


def test_batches_list_show_cancel(tmp_path: Path) -> None:
    """list shows the tracked batch, show prints it, cancel stops it; later runs collect and resend
    the rest."""
    cfg = write_config(
        tmp_path, URLS[:10], simulator={"batch_in_progress_s": 600, "batch_finalizing_s": 0.1}
    )
    assert glmrun(str(cfg), "--no-wait", cwd=tmp_path).returncode == 75
    listed = glmrun("batches", "list", str(cfg), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert row["state"] == "Running" and row["lines"] == 10 and row["batch_id"].startswith("batch_")
    table = glmrun("batches", "list", cwd=tmp_path)  # CONFIG defaults to ./config.yaml
    assert table.returncode == 0 and row["batch_id"] in table.stdout
    head, line, polled = table.stdout.splitlines()  # fits an 80-column terminal
    assert head.split() == ["job", "chunk", "status", "batch_id", "done"]
    assert line.split()[-1] == "0/10" and len(head) <= 80 and len(line) <= 80
    assert polled.startswith("j: running batches last polled ")
    assert glmrun("batches", "list", cwd=tmp_path / "out").returncode == 2  # no ./config.yaml there
    remote = glmrun("batches", "list", str(cfg), "--remote", "--limit", "5", cwd=tmp_path)
    assert remote.returncode == 0 and row["batch_id"] in remote.stdout and "j" in remote.stdout
    assert max(map(len, remote.stdout.splitlines())) <= 80
    shown = glmrun("batches", "show", row["batch_id"], "-c", str(cfg), cwd=tmp_path)
    assert shown.returncode == 0 and f'"id": "{row["batch_id"]}"' in shown.stdout
    assert "tracked by job j, chunk 0" in shown.stdout
    assert glmrun("batches", "show", "batch_404", "-c", str(cfg), cwd=tmp_path).returncode == 1
    cancelled = glmrun("batches", "cancel", str(cfg), cwd=tmp_path)
    assert cancelled.returncode == 0 and "cancel requested for 1 running batch" in cancelled.stdout
    after = glmrun(str(cfg), cwd=tmp_path)
    assert after.returncode == 75, (
        after.stderr
    )  # collected, but the lines that never ran are still pending
    assert (
        len(records(tmp_path)) == 5
    )  # the half that ran (partial fraction 0.5); the rest stays pending
    write_config(tmp_path, URLS[:10])
    again = glmrun(str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    recs = records(tmp_path)
    assert len(recs) == 10 and all(r["status"] == "ok" for r in recs.values())
    assert sim_batches(tmp_path) == 2


def test_kill_9_after_first_batch_created_then_rerun(tmp_path: Path) -> None:
    """SIGKILL once a batch is tracked as created; the rerun creates no extra batch and delivers
    all."""
    cfg = write_config(
        tmp_path,
        URLS[:30],
        simulator={"batch_in_progress_s": 1.0},
        batch={"max_requests_per_file": 10},
    )
    state = tmp_path / "out" / ".glmrun" / "j" / "state.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if state.exists() and b'"Running"' in state.read_bytes():
                break
            time.sleep(0.005)
        else:
            raise AssertionError("no batch was created in time")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    created_before = sim_batches(tmp_path)
    assert 1 <= created_before <= 3
    again = glmrun(str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    recs = records(tmp_path)
    assert len(recs) == 30 and {r["via"] for r in recs.values()} == {"batch"}
    assert sim_batches(tmp_path) == 3


def test_batches_list_needs_no_key_or_network(tmp_path: Path) -> None:
    """Listing tracked batches reads the state file only: no API key, no network."""
    from runner.core.batch_states import Chunk, Running
    from runner.io.batch_state import JobState, save_state

    cfg = write_config(
        tmp_path,
        URLS[:1],
        api={
            "base_url": "https://open.bigmodel.cn/api/paas/v4",
            "api_key_env": "GLMRUN_TEST_UNSET_KEY",
        },
    )
    chunk = Chunk(0, "chunk-00000.jsonl", "chunk-00000.ids", 1, 100)
    save_state(
        tmp_path / "out" / ".glmrun" / "j" / "state.json",
        JobState("j", "t", "h", [Running(chunk, "f1", "batch_7", "in_progress")]),
    )
    listed = glmrun("batches", "list", str(cfg), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "batch_7" in listed.stdout and "in_progress" in listed.stdout
