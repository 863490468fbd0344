"""Cron with the batch path: --no-wait exits 75, status tracks the batches until collected."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.records import read_records

from .procs import run, simulator, write_batch_job
from .test_batch_kill import CHUNK, _batch_job


def test_no_wait_then_status_then_collect(tmp_path: Path) -> None:
    """A --no-wait run submits and exits 75; status lists the open batches (75); a later run
    collects them (0) and status says done (0); JSON logs tell the batch story."""
    urls = [f"https://img.example.com/batchcron/{i}.jpg" for i in range(2 * CHUNK)]
    with simulator(
        "batch_validating_s=0.05", "batch_in_progress_s=0.5", "batch_finalizing_s=0.05"
    ) as sim:
        config = _batch_job(tmp_path, sim.base_url, urls)
        submitted = run(config, "--no-wait", "--log-format", "json")
        assert submitted.returncode == 75, submitted.stderr
        status = run(config, "status", "--json")
        assert status.returncode == 75, status.stderr
        job = json.loads(status.stdout.splitlines()[0])
        assert len(job["batches"]) == 2 and all(b["batch_id"] for b in job["batches"])
        assert job["pending"] == 2 * CHUNK
        collected = run(config, "--log-format", "json")
        assert collected.returncode == 0, collected.stderr
        assert sim.stats()["batches_created"] == 2
    status = run(config, "status")
    assert status.returncode == 0 and "-> done" in status.stdout, status.stdout
    assert len(read_records(tmp_path / "out" / "j.jsonl")) == len(urls)
    first = [json.loads(line) for line in submitted.stderr.splitlines()]
    later = [json.loads(line) for line in collected.stderr.splitlines()]
    assert [e["batch_id"] for e in first if e["event"] == "batch submitted"] == [
        b["batch_id"] for b in job["batches"]
    ]
    assert (first[-1]["event"], first[-1]["level"]) == ("come back later", "info")
    assert first[-1]["exit_code"] == 75
    completed = [e for e in later if e["event"] == "batch completed"]
    assert len(completed) == 2 and all(
        e["status"] == "completed" and e["completed"] == CHUNK for e in completed
    )
    names = [e["event"] for e in later]
    assert names[0] == "run started" and names[-1] == "run finished" and "job finished" in names


def test_a_prompt_changed_between_runs_rebuilds_the_chunks_not_submitted(tmp_path: Path) -> None:
    """Three chunks, one in the queue at a time: a --no-wait run submits one and leaves two
    built. The prompt is then fixed; the next run lets the submitted batch finish as built but
    builds the two others again with the new prompt: their 200 lines were not paid for yet,
    and a user who fixed a wrong prompt must not pay for them with the old one."""
    urls = [f"https://img.example.com/reprompt/{i}.jpg" for i in range(3 * CHUNK)]
    store = tmp_path / "sim"
    with simulator("batch_in_progress_s=0.5", state_dir=store) as sim:
        config = write_batch_job(
            tmp_path, sim.base_url, urls, max_requests_per_file=CHUNK, max_queued=CHUNK
        )
        assert run(config, "--no-wait").returncode == 75
        config.write_text(config.read_text().replace("prompt: describe", "prompt: NEWPROMPT"))
        rerun = run(config, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        stats = sim.stats()
    assert stats["batch_lines_received"] == len(urls) and stats["batches_created"] == 3
    sent = [
        line
        for f in (store / "files").glob("*.bin")
        for line in f.read_text().splitlines()
        if '"method"' in line  # an uploaded input file, not a result file
    ]
    assert len(sent) == len(urls)
    assert sum('"text":"NEWPROMPT"' in line for line in sent) == 2 * CHUNK, sent[:1]
    assert {r["url"] for r in read_records(tmp_path / "out" / "j.jsonl")} == set(urls)
    assert "rebuilt_chunks=2 rebuilt_lines=200" in rerun.stderr
