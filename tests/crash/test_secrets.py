"""The API key never lands in any byte glmrun writes, and a run writes only where it should."""

from __future__ import annotations

import functools
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .procs import FAKE_KEY, env, simulator, write_job

KEY = {"bearer": FAKE_KEY, "jwt": "glmrun-canary-id.FAKE-jwt-secret-canary-456"}


def _glmrun(
    config: Path, *args: str, umask: int = 0o027, key: str = FAKE_KEY
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args[:1], str(config), *args[1:]],
        capture_output=True,
        env=env(ZHIPUAI_API_KEY=key),
        cwd=config.parent,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.umask(umask),
    )


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("auth", ["bearer", "jwt"])
def test_fake_key_appears_in_no_output_log_state_or_error(tmp_path: Path, auth: str) -> None:
    """Runs (ok, -v, JSON logs, --dry-run, status, a 401 stop, a config error, a refused
    connection) with a canary key: not one byte of stdout, stderr or any file contains it."""
    key = KEY[auth]
    secret = key.split(".")[-1] if auth == "jwt" else key
    glmrun = functools.partial(_glmrun, key=key)
    require = f"require_jwt={key}" if auth == "jwt" else f"require_key={key}"
    urls = [f"https://img.example.com/secret/{i}.jpg" for i in range(40)]
    before: set[str] = set()
    written: list[bytes] = []
    with simulator("latency_mean_s=0.01", require, "error_500_rate=0.2") as sim:
        config = write_job(
            tmp_path, sim.base_url, urls, run={"progress_interval_s": 0.05}, api={"auth": auth}
        )
        before = set(_all_files(tmp_path))
        for args in (
            ("run", "-v"),
            ("run", "--log-format", "json", "-v"),
            ("run", "--dry-run"),
            ("status",),
            ("status", "--json"),
        ):
            result = glmrun(config, *args)
            assert result.returncode in (0, 1), result.stderr
            written += [result.stdout, result.stderr]
        assert sim.stats()["chat_ok"] == len(urls)  # the key did reach the API
        sim.set(
            **(
                {"require_jwt": "other-id.other-secret"}
                if auth == "jwt"
                else {"require_key": "sk-some-other-key"}
            )
        )
        (tmp_path / "urls.txt").write_text("https://img.example.com/secret/new.jpg\n")
        stopped = glmrun(config, "run", "-v")
        assert (
            stopped.returncode == 3 and b"the API refused the run" in stopped.stderr
        )  # says why...
        written += [stopped.stdout, stopped.stderr]
    refused = glmrun(config, "run", "-v", "--log-format", "json")  # the simulator is gone now
    assert refused.returncode == 75
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump({"api": {"base_url": sim.base_url, "timeout_s": "soon"}, "jobs": []})
    )
    bad = glmrun(broken, "run", "-v")
    assert bad.returncode == 2
    written += [refused.stdout, refused.stderr, bad.stdout, bad.stderr]
    files = _all_files(tmp_path)
    written += list(files.values())
    canary = secret.encode()
    assert not [i for i, blob in enumerate(written) if canary in blob or key.encode() in blob]
    assert not [name for name in files if secret in name]
    # ...and the run created only the output, its lock and its resume files, beside each other.
    created = set(files) - before - {"broken.yaml"}
    resume = {"out/j.jsonl.resume-index", "out/j.jsonl.resume-plan"}
    assert (
        {"out/j.jsonl", "out/j.jsonl.lock"}
        <= created
        <= {"out/j.jsonl", "out/j.jsonl.lock"} | resume
    )
    for name in sorted(created):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640  # 0o666 under umask 027
