"""Cron support: `glmrun status` exit codes and counts, and --log-format json events."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from runner.core.batch_states import Chunk, Running
from runner.io.batch_state import JobState, save_state
from tests.support.records import read_records

from .procs import run, simulator, write_job


def _status(config: Path) -> tuple[int, dict]:
    result = run(config, "status", "--json")
    assert result.stderr == "" or "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout.splitlines()[0])


def test_status_counts_and_exit_codes_follow_the_work(tmp_path: Path) -> None:
    """Before a run: 75 and all pending; after a partial run: 75 with retryable errors counted
    as pending; after the rest: 0 with ok and permanent errors; no network needed."""
    urls = [f"https://img.example.com/status/{i}.jpg" for i in range(30)]
    lines = [*urls, "ftp://x.example/a.jpg", urls[0] + "  "]
    with simulator(
        "latency_mean_s=0.005", f"url_faults={{'{urls[1]}': ['500', '500', '500']}}"
    ) as sim:
        config = write_job(tmp_path, sim.base_url, [], retry={"max_attempts": 2})
        (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
        code, s = _status(config)
        assert code == 75 and s["pending"] == 30 and s["ok"] == 0 and s["invalid_unrecorded"] == 1
        first = run(config, "--limit", "10")
        assert first.returncode == 1  # the 500s left a (retryable) error record
        code, s = _status(config)
        assert code == 75
        assert (s["ok"], s["errors"], s["pending"], s["retryable_errors"], s["duplicates"]) == (
            9,
            0,
            21,
            1,
            1,
        )
        second = run(config)
        assert second.returncode == 1  # this run recorded the ftp line as invalid_input
    code, s = _status(config)  # the simulator is gone: status needs no network
    assert code == 0 and s["finished"] is True
    assert (s["ok"], s["errors"], s["pending"]) == (30, 1, 0)
    text = run(config, "status")
    assert (
        text.returncode == 0
        and "31/31 done (ok 30, errors 1), pending 0" in text.stdout
        and "-> done" in text.stdout
    )


def test_status_lists_tracked_batches_and_exits_75_while_one_is_open(tmp_path: Path) -> None:
    """A batch state file in the job's work folder makes the job pending until it is finished."""
    config = write_job(
        tmp_path, "http://127.0.0.1:9/api/paas/v4", ["https://img.example.com/b.jpg"]
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "j.jsonl").write_bytes(
        orjson.dumps({"url": "https://img.example.com/b.jpg", "status": "ok"}) + b"\n"
    )
    assert _status(config)[0] == 0
    chunk = Chunk(0, "chunk-00000.jsonl", "chunk-00000.ids", 1, 100)
    save_state(
        out / ".glmrun" / "j" / "state.json",
        JobState("j", "t", "h", [Running(chunk, "f1", "batch_1", "in_progress")]),
    )
    code, s = _status(config)
    assert code == 75 and s["batches"][0]["batch_id"] == "batch_1"
    assert "batch batch_1: in_progress" in run(config, "status").stdout


def test_json_logs_are_one_object_per_line_with_the_run_story(tmp_path: Path) -> None:
    """--log-format json: every stderr line is a JSON object; start, plan, progress, job
    finished (with the retry counts) and run finished events are there, and stdout keeps the
    summary."""
    urls = [f"https://img.example.com/json/{i}.jpg" for i in range(60)]
    with simulator("latency_mean_s=0.02", "error_500_rate=0.2") as sim:
        config = write_job(
            tmp_path,
            sim.base_url,
            urls,
            run={"progress_interval_s": 0.05},
            limits={"concurrency": 4},
        )
        result = run(config, "--log-format", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"ts", "level", "event"} <= set(e) for e in events)
    names = [e["event"] for e in events]
    for name in (
        "run started",
        "plan",
        "progress",
        "job finished",
        "run finished",
    ):
        assert name in names, names
    assert names[0] == "run started" and names[-1] == "run finished"
    finished = next(e for e in events if e["event"] == "job finished")
    assert finished["retries"] > 0 and finished["requests"] == 60 + finished["retries"]
    assert finished["ok"] == 60 and finished["job"] == "j"
    assert events[-1]["exit_code"] == 0
    assert "j: ok 60" in result.stdout
    assert len(read_records(tmp_path / "out" / "j.jsonl")) == 60


def test_json_logs_stay_json_when_the_run_fails(tmp_path: Path) -> None:
    """With --log-format json even the final error line is a JSON object (exit code inside)."""
    config = tmp_path / "bad.yaml"
    config.write_text("jobs: []\n")
    result = run(config, "--log-format", "json")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "error" and event["exit_code"] == 2 and "jobs" in event["message"]
    assert set(event) == {"ts", "level", "event", "message", "exit_code"}  # ts like the others
