"""Running glmrun from a test: in-process through app.run, or as a child process."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.app.orchestrate import RunOptions, RunResult, run
from runner.config import load_config


async def run_config(
    path: Path, environ: dict[str, str] | None = None, **options: Any
) -> tuple[RunResult, str]:
    """One whole run of the config at ``path`` (no TTY); returns the result and what it printed."""
    out = io.StringIO()
    result = await run(
        load_config(path, environ=environ or {}), RunOptions(tty=False, **options), out=out
    )
    return result, out.getvalue()


def glmrun(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` in a child process, output captured as text, any exit code."""
    return python_module("runner", *args, cwd=cwd, env=env, timeout=timeout, **kwargs)


def python_module(
    module: str,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in a child process, output captured as text, any exit code."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
