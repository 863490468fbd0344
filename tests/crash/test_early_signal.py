"""A SIGTERM in the first moments of ``glmrun`` (before the run's handler) exits 143, not -15."""

from __future__ import annotations

import signal
import subprocess
import sys

from .procs import REPO, env

# The program's bare handler is installed when runner.cli is imported as glmrun: the moment
# right after it is the earliest a signal can get a chosen exit code (the interpreter's own
# start-up, ~0.1 s, comes before any glmrun code runs).
EARLY = """
import os, signal, sys, time
sys.argv[0] = "/usr/local/bin/glmrun"
import runner.cli
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
"""


def test_sigterm_right_after_start_exits_143() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", EARLY],
        env=env(),
        cwd=REPO,
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 143, (proc.returncode, proc.stderr)


def test_importing_the_cli_elsewhere_installs_nothing() -> None:
    """In another program (pytest here) the default handlers stay."""
    import runner.cli  # noqa: F401

    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
