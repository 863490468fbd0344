"""Issue 11 as real processes: control-plane faults on the batch path never make glmrun pay
twice (the simulator's counters: each custom_id in at most one created batch, no URL answered
by a batch and also sent in realtime), and an account stop on a batch call exits 3."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from runner.simulator import expected_content
from tests.support.records import read_records

from .procs import SimProcess, command, run, simulator, write_batch_job

KNOBS = ("latency_mean_s=0.005", "batch_validating_s=0.1", "batch_in_progress_s=0.4")


def _job(tmp_path: Path, sim: SimProcess, urls: list[str], **batch: Any) -> Path:
    return write_batch_job(tmp_path, sim.base_url, urls, **{"max_requests_per_file": 50, **batch})


def assert_paid_once(stats: dict[str, Any]) -> None:
    assert max(stats["batch_custom_ids"].values(), default=0) <= 1, "a line in two batches"
    assert not set(stats["batch_paid"]) & set(stats["per_url"]), "paid in a batch and realtime"


def assert_ok_once(tmp_path: Path, urls: list[str]) -> None:
    records = read_records(tmp_path / "out" / "j.jsonl")
    oks = Counter(r["url"] for r in records if r["status"] == "ok")
    assert set(oks) == set(urls) and max(oks.values()) == 1
    assert all(r["content"] == expected_content(r["url"]) for r in records)


def test_a_404_poll_and_a_lost_create_with_a_failing_lookup_pay_once(tmp_path: Path) -> None:
    """Paths 1 and 2 in one run of 100 lines in 2 chunks: the first create's answer is lost and
    the lookup that follows is answered 400; the second poll is answered 404. Exit 0, 2
    batches, no realtime request."""
    urls = [f"https://img.example.com/confirm/{i}.jpg" for i in range(100)]
    with simulator(*KNOBS) as sim:
        sim.set(
            control_faults=[
                {"call": "create", "lose": True, "nth": 1},
                # the 2nd list call: the 1st looks for lost batches (the run has no state yet)
                {"call": "list", "status": 400, "code": "1214", "nth": 2},
                {"call": "retrieve", "status": 404, "code": "1214", "nth": 2},
            ]
        )
        config = _job(tmp_path, sim, urls)
        done = run(config)
        stats = sim.stats()
    assert done.returncode == 0, done.stderr
    assert (stats["batches_created"], stats["chat_requests"]) == (2, 0), stats
    assert (stats["answers_lost"], stats["faults_injected"]) == (1, 2)
    assert_paid_once(stats)
    assert_ok_once(tmp_path, urls)


def test_cancel_of_a_chunk_stuck_mid_create_cancels_the_batch_it_finds(tmp_path: Path) -> None:
    """Path 3: a create's answer is lost and every lookup fails, so the run gives up with exit
    75 and the chunk still Creating; `batches cancel` finds the batch by metadata and cancels
    it; the next runs collect its partial results and send the rest in a new batch, each line
    answered once."""
    urls = [f"https://img.example.com/cancel/{i}.jpg" for i in range(40)]
    with simulator(*KNOBS, "batch_in_progress_s=30") as sim:
        sim.set(
            control_faults=[
                {"call": "create", "lose": True, "nth": 1},
                {"call": "list", "status": 500, "nth": 2, "count": 0},  # after the look
            ]
        )
        config = _job(tmp_path, sim, urls)
        first = run(config)
        assert first.returncode == 75, first.stderr
        assert "stays tracked" in first.stderr
        sim.set(control_faults=[], batch_in_progress_s=0.2)
        cancel = command("batches", "cancel", config=config)
        assert cancel.returncode == 0, cancel.stderr
        assert "cancel requested for 1 running batch;" in cancel.stdout
        collect = run(config)  # collects the cancelled batch: half the lines, the rest pending
        rest = run(config)
        stats = sim.stats()
    assert collect.returncode in (0, 75), collect.stderr
    assert rest.returncode == 0, rest.stderr
    assert (stats["batches_created"], stats["batches_cancelled"]) == (2, 1), stats
    assert stats["chat_requests"] == 0
    assert max(stats["batch_paid"].values()) == 1 and sum(stats["batch_paid"].values()) == 40
    assert_ok_once(tmp_path, urls)


def test_an_account_stop_on_a_batch_call_exits_3_and_sends_nothing(tmp_path: Path) -> None:
    """1113 (arrears) answered to the create: exit 3, no realtime request, no batch."""
    urls = [f"https://img.example.com/arrears/{i}.jpg" for i in range(20)]
    with simulator(*KNOBS) as sim:
        sim.set(control_faults=[{"call": "create", "status": 429, "code": "1113", "nth": 1}])
        config = _job(tmp_path, sim, urls)
        done = run(config)
        stats = sim.stats()
    assert done.returncode == 3, done.stderr
    assert (stats["batches_created"], stats["chat_requests"]) == (0, 0)
