"""kill -9 at random (seeded) moments of a mixed realtime + batch run with control-plane faults.

Fault mix (simulator ``control_faults``, first matching rule wins): 8% of uploads and of
creates performed but their answers lost, 5% of polls answered 404 (the batch exists: only a
listing may end it), 15% of every files/batches call answered 500; 5% of realtime requests
answered 500; two batch lines fail (500) and go to the realtime fallback. Then up to
``KILLS`` runs are killed with SIGKILL after a random delay, and runs go on until one exits 0.

Invariants: every URL ends with exactly one ok record; each custom_id was in at most one
created batch; no URL was answered by a batch and also sent in realtime. The counts (runs,
kills, faults injected, answers lost, duplicates) are printed (``pytest -s``) and asserted.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.support.records import read_records

from .procs import run, simulator, start_run, write_job

SEED = 11
KILLS = 6
MAX_RUNS = 20
FAULTS = [
    {"call": "upload", "lose": True, "rate": 0.08},
    {"call": "create", "lose": True, "rate": 0.08},
    {"call": "retrieve", "status": 404, "code": "1214", "rate": 0.05},
    {"call": "*", "status": 500, "code": "500", "rate": 0.15},
]


def test_random_kills_with_control_plane_faults_never_pay_twice(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    rt_urls = [f"https://img.example.com/mix-rt/{i}.jpg" for i in range(800)]
    b_urls = [f"https://img.example.com/mix-b/{i}.jpg" for i in range(600)]
    (tmp_path / "rt.txt").write_text("".join(u + "\n" for u in rt_urls))
    (tmp_path / "b.txt").write_text("".join(u + "\n" for u in b_urls))
    line_faults = {b_urls[7]: "500", b_urls[450]: "500"}
    with simulator(
        "latency_mean_s=0.05",
        "error_500_rate=0.05",
        "batch_validating_s=0.1",
        "batch_in_progress_s=1.0",
        "batch_finalizing_s=0.05",
        f"seed={SEED}",
    ) as sim:
        sim.set(control_faults=FAULTS, batch_line_faults=line_faults)
        config = write_job(
            tmp_path,
            sim.base_url,
            [],
            batch={"max_requests_per_file": 40, "poll_interval_s": 0.05},
            retry={"base_delay_s": 0.01, "max_delay_s": 0.05, "max_attempts": 8},
            jobs=[
                {
                    "name": "b",
                    "input": "b.txt",
                    "output": "out/b.jsonl",
                    "model": "glm-4v-flash",
                    "prompt": "describe",
                    "mode": "batch",
                },
                {
                    "name": "rt",
                    "input": "rt.txt",
                    "output": "out/rt.jsonl",
                    "model": "glm-4v-flash",
                    "prompt": "describe",
                    "mode": "realtime",
                },
            ],
        )
        runs = kills = 0
        codes: list[int] = []
        written: list[int] = []  # records on disk at each kill
        while kills < KILLS and runs < MAX_RUNS:
            proc = start_run(config)
            runs += 1
            try:
                proc.communicate(timeout=rng.uniform(0.4, 2.0))
                codes.append(proc.returncode)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                kills += 1
                written.append(sum(_lines(tmp_path / "out" / f) for f in ("b.jsonl", "rt.jsonl")))
        while runs < MAX_RUNS:
            done = run(config, timeout=60)
            runs += 1
            codes.append(done.returncode)
            if done.returncode == 0:
                break
            time.sleep(0.1)
        stats = sim.stats()
    assert codes[-1] == 0, codes
    oks: Counter[str] = Counter()
    for name in ("b", "rt"):
        for r in read_records(tmp_path / "out" / f"{name}.jsonl"):
            if r["status"] == "ok":
                oks[r["url"]] += 1
    duplicates = sum(n - 1 for n in oks.values() if n > 1)
    in_two_batches = sum(1 for n in stats["batch_custom_ids"].values() if n > 1)
    paid_twice = set(stats["batch_paid"]) & set(stats["per_url"])
    resent_rt = sum(stats["per_url"].get(u, 0) for u in rt_urls) - len(rt_urls)
    print(
        f"\nrandom kills (seed {SEED}): runs {runs}, kills {kills} (records on disk at each: "
        f"{written} of {len(rt_urls) + len(b_urls)}), exit codes {codes}, "
        f"faults injected {stats['faults_injected']}, answers lost {stats['answers_lost']}, "
        f"batches created {stats['batches_created']}, duplicates {duplicates}, "
        f"lines in two batches {in_two_batches}, paid in batch and realtime {len(paid_twice)}, "
        f"realtime requests beyond one per URL {resent_rt}, calls {stats['calls']}"
    )
    assert kills == KILLS
    assert stats["faults_injected"] > 0 and stats["answers_lost"] >= 0
    assert set(oks) == set(rt_urls) | set(b_urls), "every URL ends ok"
    assert duplicates == 0, "every URL ends ok exactly once"
    assert in_two_batches == 0, "a batch line was submitted twice"
    assert not paid_twice, sorted(paid_twice)[:5]
    assert set(stats["per_url"]) - set(rt_urls) <= set(line_faults), "only failed lines resent"


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0
