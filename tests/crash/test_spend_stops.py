"""Spending stops at the first failed write: with a full disk, a run sends at most the records
that fit plus what was in flight (issue 11's pin; the run's exit and the repair are in
test_kill.py)."""

from __future__ import annotations

from pathlib import Path

from .procs import run, simulator, write_job

CONCURRENCY = 8


def test_a_full_disk_stops_spending_at_the_first_failed_write(tmp_path: Path) -> None:
    """A 40 kB file-size limit (room for ~100 records) on a 300-URL run: the requests sent are
    the records on disk plus at most a few rounds of in-flight requests (a run that kept
    appending after the failed write would send all 300)."""
    urls = [f"https://img.example.com/spend/{i}.jpg" for i in range(300)]
    limit = 40_000

    with simulator("latency_mean_s=0.005") as sim:
        config = write_job(tmp_path, sim.base_url, urls, limits={"concurrency": CONCURRENCY})
        full = run(config, file_limit=limit)
        sent = sim.stats()["chat_requests"]
    out = tmp_path / "out" / "j.jsonl"
    on_disk = out.read_bytes().count(b"\n")
    print(f"\nfull disk: {sent} requests sent, {on_disk} records on disk")
    assert full.returncode == 1, full.stderr
    assert on_disk < len(urls)
    assert sent <= on_disk + 3 * CONCURRENCY, (sent, on_disk)
