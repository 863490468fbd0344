"""Real processes with ``--shard I/N`` against one simulator: each URL sent by one shard, the
merged export has each URL once, re-sharding sends only new work, a killed shard resumes alone."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from runner.core.keys import key_hash
from tests.support.records import read_records

from .procs import command, run, simulator, start_run, wait_for_lines, write_job

CONCURRENCY = 8


def _shard_file(tmp: Path, i: int, n: int) -> Path:
    return tmp / "out" / f"j.shard-{i}-of-{n}.jsonl"


def _export(config: Path) -> list[dict]:
    proc = command("export", config=config)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _finish(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err


def test_four_shards_split_the_work_and_resharding_sends_only_new_urls(tmp_path: Path) -> None:
    """4 processes (--shard i/4) on one input: every URL requested once, by the shard that owns
    it; export merges to each URL once; after 100 URLs are appended, --shard 0/2 and 1/2 (one
    via GLMRUN_SHARD) request exactly those 100."""
    urls = [f"https://img.example.com/shard/{i}.jpg" for i in range(400)]
    with simulator("latency_mean_s=0.01") as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        _finish([start_run(config, "--shard", f"{i}/4", "-q") for i in range(4)])
        per_url = Counter(sim.stats()["per_url"])
        assert set(per_url) == set(urls) and set(per_url.values()) == {1}
        for i in range(4):
            written = [r["url"] for r in read_records(_shard_file(tmp_path, i, 4))]
            assert written and all(key_hash(u) % 4 == i for u in written)
            assert len(written) == len(set(written))
        assert not (tmp_path / "out" / "j.jsonl").exists()
        merged = _export(config)
        assert Counter(r["url"] for r in merged) == Counter(urls)

        new = [f"https://img.example.com/shard/new-{i}.jpg" for i in range(100)]
        with open(tmp_path / "urls.txt", "a") as f:
            f.write("".join(u + "\n" for u in new))
        before = Counter(sim.stats()["per_url"])
        _finish(
            [
                start_run(config, "--shard", "0/2", "-q"),
                start_run(config, "-q", GLMRUN_SHARD="1/2"),
            ]
        )
        sent = Counter(sim.stats()["per_url"]) - before
        assert sent == Counter(new)
        for i in range(2):
            written = [r["url"] for r in read_records(_shard_file(tmp_path, i, 2))]
            assert set(written) == {u for u in new if key_hash(u) % 2 == i}
        assert Counter(r["url"] for r in _export(config)) == Counter(urls + new)
        status = run(config, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "shard 3/4" in status.stdout and "total        ok 500" in status.stdout
        assert run(config).returncode == 0  # back to one process: nothing left to send
        assert sum(sim.stats()["per_url"].values()) == 500


def test_a_killed_shard_rerun_alone_resends_at_most_its_requests_in_flight(
    tmp_path: Path,
) -> None:
    """kill -9 shard 2 of 4 mid-run while the others finish; rerunning only shard 2 sends each
    of its remaining URLs once and re-sends at most the requests it had in flight."""
    urls = [f"https://img.example.com/kill-shard/{i}.jpg" for i in range(800)]
    owned = {u for u in urls if key_hash(u) % 4 == 2}
    with simulator("latency_mean_s=0.05") as sim:
        config = write_job(tmp_path, sim.base_url, urls, limits={"concurrency": CONCURRENCY})
        out = _shard_file(tmp_path, 2, 4)
        others = [start_run(config, "--shard", f"{i}/4", "-q") for i in (0, 1, 3)]
        victim = start_run(config, "--shard", "2/4", "-q")
        wait_for_lines(out, 40, victim)
        victim.kill()
        victim.communicate(timeout=10)
        _finish(others)
        requested = {u for u in sim.stats()["per_url"] if u in owned}
        data = out.read_bytes()
        persisted = {json.loads(line)["url"] for line in data[: data.rfind(b"\n") + 1].splitlines()}
        assert persisted < owned, "the shard was killed after it finished; kill it earlier"
        lost = requested - persisted
        assert len(lost) <= CONCURRENCY, (len(lost), CONCURRENCY)
        before = Counter(sim.stats()["per_url"])
        again = run(config, "--shard", "2/4", "-q")
        assert again.returncode == 0, again.stderr
        sent = Counter(sim.stats()["per_url"]) - before
        assert sent == Counter(owned - persisted)  # the rest of shard 2, each once, nobody else's
        assert len(set(sent) & requested) == len(lost)  # re-sent: only what was in flight
        assert Counter(r["url"] for r in _export(config)) == Counter(urls)
