"""The exit code of a rerun when only older permanent errors remain (the cron exit policy:
**a run that wrote no new error records exits 0**; ``--strict`` restores the old rule)."""

from __future__ import annotations

from pathlib import Path

from tests.support.records import read_records

from .procs import run, simulator, write_job


def test_a_rerun_with_only_older_permanent_errors_exits_0(tmp_path: Path) -> None:
    """Run 1 writes a permanent error (1301) and exits 1; run 2 has nothing to send and writes
    no new error record: it exits 0, and the old error stays in the output."""
    urls = [f"https://img.example.com/rerun/{i}.jpg" for i in range(10)]
    with simulator("latency_mean_s=0.005", f"url_faults={{'{urls[3]}': ['1301']}}") as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        first = run(config)
        assert first.returncode == 1, first.stderr  # a new permanent error in this run
        before = sim.stats()["chat_requests"]
        again = run(config)
        sent = sim.stats()["chat_requests"] - before
    records = read_records(tmp_path / "out" / "j.jsonl")
    assert sent == 0 and len(records) == 10
    assert again.returncode == 0, again.stderr  # no new error record in this run
