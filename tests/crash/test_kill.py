"""kill -9 at several points, then rerun: nothing written is lost, nothing is paid twice."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from runner.simulator import expected_content
from tests.support.records import latest, read_records

from .procs import run, simulator, start_run, wait_for_lines, write_job

CONCURRENCY = 8
LATENCY_S = 0.03
FLUSH_S = 0.2


def _persisted(out: Path) -> set[str]:
    """URLs with an ok record in the file as a new run would see it (torn tail ignored)."""
    return {r["url"] for r in read_records(out, torn_tail_ok=True) if r["status"] == "ok"}


def _wait_for_requests(sim, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sim.stats()["chat_requests"] < n:
        assert time.monotonic() < deadline, "the run never sent requests"
        time.sleep(0.01)


def test_sigkill_early_mid_late_then_rerun_gives_one_ok_record_per_url(tmp_path: Path) -> None:
    """Four kill -9s (before the first write, mid-run, late, with a torn tail) and a rerun
    leave exactly one ok record per URL, and each kill re-requests at most in-flight + one flush."""
    urls = [f"https://img.example.com/kill/{i}.jpg" for i in range(400)]
    with simulator(f"latency_mean_s={LATENCY_S}") as sim:
        config = write_job(tmp_path, sim.base_url, urls, run={"flush_interval_s": FLUSH_S})
        out = tmp_path / "out" / "j.jsonl"
        # Per kill: requests in flight, plus what finished since the last flush (rate * flush).
        bound = CONCURRENCY + int(CONCURRENCY / LATENCY_S * FLUSH_S * 1.5) + CONCURRENCY
        lost_per_kill = []
        for point in ("early", 60, 200, 320):
            before = Counter(sim.stats()["per_url"])
            proc = start_run(config)
            if point == "early":
                _wait_for_requests(sim, 1)
            else:
                wait_for_lines(out, int(point), proc)
            proc.kill()
            proc.communicate(timeout=10)
            requested = set(Counter(sim.stats()["per_url"]) - before)
            lost_per_kill.append(len(requested - _persisted(out)))
            if point == 320:
                with open(out, "ab") as f:  # a torn last line as a kill mid-write leaves it
                    f.write(b'{"url":"' + urls[-1].encode() + b'","status":"ok","content":"sim:')
        done = run(config)
        assert done.returncode == 0, done.stderr
        assert "repaired a torn last line" in done.stderr
        records = read_records(out)
        oks = Counter(r["url"] for r in records if r["status"] == "ok")
        assert set(oks) == set(urls)
        assert max(oks.values()) == 1
        assert all(
            r["content"] == expected_content(r["url"]) for r in records if r["status"] == "ok"
        )
        stats = sim.stats()
        rerequests = stats["chat_requests"] - len(urls)
        assert all(lost <= bound for lost in lost_per_kill), (lost_per_kill, bound)
        assert rerequests == sum(lost_per_kill) <= 4 * bound, (rerequests, lost_per_kill)
        assert max(stats["per_url"].values()) <= 1 + 4


def test_sigkill_with_constant_flushing_keeps_every_line_parseable(tmp_path: Path) -> None:
    """A run flushing every millisecond, killed at random moments, never leaves more than one
    torn line, and the rerun repairs it and finishes every URL once."""
    urls = [f"https://img.example.com/flush/{i}.jpg" for i in range(300)]
    with simulator("latency_mean_s=0.01") as sim:
        config = write_job(tmp_path, sim.base_url, urls, run={"flush_interval_s": 0.001})
        out = tmp_path / "out" / "j.jsonl"
        for n in (40, 130, 210):
            proc = start_run(config)
            wait_for_lines(out, n, proc)
            time.sleep(0.003 * n % 0.02)
            proc.kill()
            proc.communicate(timeout=10)
            read_records(out, torn_tail_ok=True)  # all but at most a last partial line parses
        done = run(config)
        assert done.returncode == 0, done.stderr
        final = latest(read_records(out))
        assert set(final) == set(urls) and all(r["status"] == "ok" for r in final.values())
        assert sim.stats()["chat_requests"] - len(urls) <= 3 * (CONCURRENCY + 10)


def test_a_full_disk_stops_the_run_with_one_line_and_the_rerun_repairs(tmp_path: Path) -> None:
    """A file-size limit (like a full disk) makes writes fail: exit 1 with one clear line and
    no traceback; after space is back the rerun repairs the torn tail and finishes every URL."""
    urls = [f"https://img.example.com/full/{i}.jpg" for i in range(300)]
    limit = 40_000  # bytes: room for about 100 records

    with simulator("latency_mean_s=0.005") as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        out = tmp_path / "out" / "j.jsonl"
        full = run(config, file_limit=limit)
        assert full.returncode == 1, full.stderr
        assert "cannot write the output: File too large" in full.stderr
        assert "Traceback" not in full.stderr
        assert out.stat().st_size <= limit
        done = run(config)
        assert done.returncode == 0, done.stderr
        final = latest(read_records(out))
        assert set(final) == set(urls) and all(r["status"] == "ok" for r in final.values())
