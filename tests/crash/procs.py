"""Real processes for crash tests: a standalone simulator and glmrun runs against it."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.configs import write_minimal_config
from tests.support.runs import glmrun

REPO = Path(__file__).resolve().parents[2]
FAKE_KEY = "sk-FAKE-glmrun-canary-123"


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("ZHIPUAI")}
    out["PYTHONPATH"] = str(REPO)
    out["ZHIPUAI_API_KEY"] = FAKE_KEY
    out.update(extra)
    return out


class SimProcess:
    """``python -m runner simulate --port 0`` in its own process, with stats over HTTP."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str):
        self.proc = proc
        self.base_url = base_url
        self.root = base_url.split("/api/")[0]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root + "/_sim/stats", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def set(self, **settings: Any) -> None:
        req = urllib.request.Request(
            self.root + "/_sim/settings", data=json.dumps(settings).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()


@contextmanager
def simulator(*knobs: str, state_dir: Path | None = None) -> Iterator[SimProcess]:
    cmd = [sys.executable, "-m", "runner", "simulate", "--port", "0"]
    for knob in knobs:
        cmd += ["--set", knob]
    if state_dir is not None:
        cmd += ["--state-dir", str(state_dir)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on " in line, (
            line,
            proc.stderr.read() if proc.poll() is not None else "",
        )  # type: ignore[union-attr]
        yield SimProcess(proc, line.split("listening on ", 1)[1].strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# Job j reads urls.txt into out/j.jsonl; quick retries, a short grace period, frequent progress.
write_config = write_minimal_config.derive(
    api={"timeout_s": 5},
    limits={"concurrency": 8},
    retry={"base_delay_s": 0.01, "max_delay_s": 0.05},
    run={"grace_s": 2, "flush_interval_s": 0.1, "progress_interval_s": 0.5},
    job={"output": "out/j.jsonl", "prompt": "describe"},
)


def write_job(tmp: Path, base_url: str, urls: list[str], **sections: Any) -> Path:
    """A config with one job ``j`` over ``urls`` on ``base_url``; ``sections`` override."""
    api = {"base_url": base_url, **sections.pop("api", {})}
    return write_config(tmp, urls, api=api, **sections)


def write_batch_job(tmp: Path, base_url: str, urls: list[str], **batch: Any) -> Path:
    """A config whose job ``j`` takes the batch route (``mode: batch``), polling every 50 ms;
    ``batch`` sets more of the ``batch:`` section (``max_requests_per_file``...)."""
    return write_job(
        tmp,
        base_url,
        urls,
        batch={"poll_interval_s": 0.05, **batch},
        jobs=[
            {
                "name": "j",
                "input": "urls.txt",
                "output": "out/j.jsonl",
                "model": "glm-4v-flash",
                "prompt": "describe",
                "mode": "batch",
            }
        ],
    )


def start_run(config: Path, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra_env),
        cwd=config.parent,
    )


def command(*words: str, config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``glmrun WORDS... CONFIG`` (``export``, ``batches cancel``...) to the end."""
    return glmrun(*words, str(config), cwd=config.parent, env=env(), timeout=timeout)


def run(
    config: Path,
    *args: str,
    timeout: float = 30,
    file_limit: int | None = None,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """``glmrun run CONFIG ARGS`` (or ``glmrun status CONFIG ...``) to the end; ``file_limit``
    caps the size of every file it writes, in bytes (a full disk)."""

    def small_disk() -> None:
        assert file_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    words = (
        [*args[:1], str(config), *args[1:]]
        if args[:1] == ("status",)
        else ["run", str(config), *args]
    )
    return glmrun(
        *words,
        cwd=config.parent,
        env=env(**extra_env),
        timeout=timeout,
        preexec_fn=None if file_limit is None else small_disk,
    )


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 20) -> int:
    """Poll until ``path`` has at least ``n`` newline-terminated lines (or the run ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = path.read_bytes().count(b"\n") if path.exists() else 0
        if count >= n or proc.poll() is not None:
            return count
        time.sleep(0.005)
    raise AssertionError(f"{path} never reached {n} lines")
