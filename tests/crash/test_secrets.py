"""The API key never lands in any byte glmrun writes, and a run writes only where it should."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from .procs import FAKE_KEY, env, simulator, write_job


def _glmrun(config: Path, *args: str, umask: int = 0o027) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args[:1], str(config), *args[1:]],
        capture_output=True, env=env(), cwd=config.parent, timeout=60, check=False,
        preexec_fn=lambda: os.umask(umask),
    )


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fake_key_appears_in_no_output_log_state_or_error(tmp_path: Path) -> None:
    """Runs (ok, -v, JSON logs, --dry-run, status, a 401 stop, a config error, a refused
    connection) with a canary key: not one byte of stdout, stderr or any file contains it."""
    urls = [f"https://img.example.com/secret/{i}.jpg" for i in range(40)]
    before: set[str] = set()
    written: list[bytes] = []
    with simulator("latency_mean_s=0.01", f"require_key={FAKE_KEY}", "error_500_rate=0.2") as sim:
        config = write_job(tmp_path, sim.base_url, urls, run={"progress_interval_s": 0.05})
        before = set(_all_files(tmp_path))
        for args in (("run", "-v"), ("run", "--log-format", "json", "-v"), ("run", "--dry-run"), ("status",), ("status", "--json")):
            result = _glmrun(config, *args)
            assert result.returncode in (0, 1), result.stderr
            written += [result.stdout, result.stderr]
        assert sim.stats()["chat_ok"] == len(urls)  # the key did reach the API
        sim.set(require_key="sk-some-other-key")
        (tmp_path / "urls.txt").write_text("https://img.example.com/secret/new.jpg\n")
        stopped = _glmrun(config, "run", "-v")
        assert stopped.returncode == 3 and b"1000" in stopped.stderr  # the 401 stop says why...
        written += [stopped.stdout, stopped.stderr]
    refused = _glmrun(config, "run", "-v", "--log-format", "json")  # the simulator is gone now
    assert refused.returncode == 75
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"api": {"base_url": sim.base_url, "timeout_s": "soon"}, "jobs": []}))
    bad = _glmrun(broken, "run", "-v")
    assert bad.returncode == 2
    written += [refused.stdout, refused.stderr, bad.stdout, bad.stderr]
    files = _all_files(tmp_path)
    written += list(files.values())
    canary = FAKE_KEY.encode()
    assert not [i for i, blob in enumerate(written) if canary in blob]
    assert not [name for name in files if FAKE_KEY in name]
    # ...and the run created only the output and its lock, beside each other.
    assert set(files) - before - {"broken.yaml"} == {"out/j.jsonl", "out/j.jsonl.lock"}
    for name in ("out/j.jsonl", "out/j.jsonl.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640  # 0o666 under umask 027
