"""Shared plumbing for the benchmarks: a simulator in its own process, timed child processes.

Every figure is measured with the simulator in a separate process (``python -m runner
simulate --port 0``), so the runner's own CPU is visible, and every measured program runs as a
child whose CPU time and peak RSS come from ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


class SimProcess:
    """``python -m runner simulate --port 0 --set k=v ...`` with its control endpoints."""

    def __init__(self, **knobs: Any):
        args = [PY, "-m", "runner", "simulate", "--port", "0"]
        for key, value in knobs.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        self.proc = subprocess.Popen(
            args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if not match:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r} {err}")
        self.base_url = match.group(1)
        self.root = self.base_url.split("/api/")[0]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.root + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def set(self, **knobs: Any) -> Any:
        return self._call("POST", "/_sim/settings", knobs)

    def reset(self) -> Any:
        return self._call("POST", "/_sim/reset", {})

    def stats(self) -> dict[str, Any]:
        stats = self._call("GET", "/_sim/stats")
        stats.pop("per_url", None)
        return stats

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ChildRun:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_child(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
    poll: Callable[[float], None] | None = None,
    poll_s: float = 0.05,
) -> ChildRun:
    """Run a command; wall time, user+sys CPU and peak RSS of that child alone (os.wait4).
    ``poll(elapsed_s)`` is called about every ``poll_s`` while it runs."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{time.monotonic_ns()}"
    with open(f"{out_path}.out", "w+") as out, open(f"{out_path}.err", "w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=cwd or REPO, stdout=out, stderr=err, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
            if poll is not None:
                poll(time.perf_counter() - t0)
                time.sleep(poll_s)
            else:
                time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = ChildRun(
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            proc.returncode,
            out.read(),
            err.read(),
        )
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    return result


def write_urls(path: Path, n: int, *, prefix: str = "u", start: int = 0) -> Path:
    with open(path, "w") as f:
        f.write(
            "".join(
                f"https://img.example.com/{prefix}/{i:08d}.jpg\n" for i in range(start, start + n)
            )
        )
    return path


def write_config(
    path: Path,
    base_url: str,
    *,
    input: str,
    output: str,
    limits: dict[str, Any],
    retry: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
) -> Path:
    import yaml

    config = {
        "api": {"base_url": base_url, "timeout_s": 30},
        "limits": limits,
        "retry": retry or {"max_attempts": 20, "base_delay_s": 0.2, "max_delay_s": 2.0},
        "run": {"progress_interval_s": 10, **(run or {})},
        "jobs": [
            {
                "name": "bench",
                "input": input,
                "output": output,
                "model": "glm-4v-flash",
                "prompt": "Describe this image.",
                "params": {"max_tokens": 256},
                "mode": "realtime",
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def glmrun(
    config: Path, *extra: str, env: dict[str, str] | None = None, timeout_s: float = 600
) -> ChildRun:
    return run_child(
        [PY, "-m", "runner", "run", str(config), "-q", *extra],
        env={"ZHIPUAI_API_KEY": "bench", **(env or {})},
        timeout_s=timeout_s,
    )


def count_output(path: Path) -> dict[str, int]:
    """Lines, ok records and distinct URLs in an output file (read back, not trusted)."""
    lines = ok = 0
    urls: set[str] = set()
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                lines += 1
                rec = json.loads(line)
                urls.add(rec.get("url"))
                ok += rec.get("status") == "ok"
    return {"lines": lines, "ok": ok, "distinct": len(urls)}


def machine_info() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_mb"] = int(line.split()[1]) // 1024
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        info["dirty"] = bool(dirty.strip())
    except OSError:
        pass
    return info
