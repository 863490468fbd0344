"""A run where nobody watches a live display: a terminal that cannot redraw (TERM=dumb), and
standard streams a service manager or a script closed (``>&-``, ``2>&-``)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

from runner.io.store import RunLock
from tests.support.configs import make_urls, output_of, write_config
from tests.support.records import read_records

from .procs import env


def _slow_config(tmp_path: Path, n: int = 40) -> Path:
    """A run of ``n`` URLs over about 2 s, a progress line every 0.3 s without a live display."""
    return write_config(
        tmp_path,
        make_urls(n),
        limits={"concurrency": 2},
        simulator={"latency_mean_s": 0.1},
        run={"progress_interval_s": 0.3},
    )


def _on_a_terminal(
    config: Path, term: str, *args: str, until: bytes | None = None, then: Any = None
) -> tuple[int, bytes]:
    """``glmrun run CONFIG ARGS`` with its three streams on an 80-column pty: exit code, all it
    wrote; once it has written ``until``, ``then()`` is called."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(config), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env(TERM=term, COLUMNS="80", LINES="30", GLMRUN_TEST_KEY="k"),
        cwd=config.parent,
        start_new_session=True,
    )
    os.close(slave)
    data = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not chunk:
                    break
                data += chunk
                if until is not None and until in data:
                    then()
                    until = None
        code = proc.wait(timeout=10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, data


def test_a_dumb_terminal_gets_progress_lines_instead_of_a_live_display(tmp_path: Path) -> None:
    """With TERM=dumb (an editor's shell, a CI log on a pty) rich's live display draws nothing,
    so a run showed nothing at all until its summary: now it prints the plain progress line
    a pipe gets, and no cursor control codes."""
    code, data = _on_a_terminal(_slow_config(tmp_path), "dumb")
    text = data.decode()
    assert code == 0, text
    assert "\x1b[" not in text, text
    progress = [line for line in text.splitlines() if line.startswith("t: ") and "% " in line]
    assert progress, text  # e.g. "t: 12/40 30% 9.6/s eta 2.9s in flight 2/2"
    assert "t: ok 40, errors 0" in text


def test_a_dumb_terminal_is_told_what_a_run_waits_for(tmp_path: Path) -> None:
    """``--wait-lock`` at a terminal says what it waits for, as it did before a dumb terminal
    got progress lines instead of the live display."""
    config = write_config(tmp_path, make_urls(3))
    lock = RunLock(output_of(tmp_path))
    lock.acquire()
    try:
        code, data = _on_a_terminal(
            config, "dumb", "--wait-lock", until=b"(Ctrl-C stops the wait)", then=lock.release
        )
    finally:
        lock.release()
    text = " ".join(data.decode().split())  # wrapped at 80 columns
    assert code == 0, text
    assert "is in use by another glmrun run" in text and "t: ok 3, errors 0" in text, text


def test_a_terminal_that_can_redraw_still_gets_the_live_display(tmp_path: Path) -> None:
    code, data = _on_a_terminal(_slow_config(tmp_path), "xterm")
    assert code == 0, data
    assert b"\x1b[?25l" in data, data  # rich hides the cursor while it redraws


def _with_closed(fd: int, config: Path) -> subprocess.CompletedProcess[str]:
    """``glmrun run CONFIG`` with standard stream ``fd`` closed (``>&-`` or ``2>&-``), the
    other two captured."""
    return subprocess.run(
        [sys.executable, "-m", "runner", "run", str(config)],
        capture_output=True,
        text=True,
        env=env(GLMRUN_TEST_KEY="k"),
        cwd=config.parent,
        preexec_fn=lambda: os.close(fd),
        timeout=60,
        check=False,
    )


def test_a_run_with_its_stdout_closed_ends_as_usual(tmp_path: Path) -> None:
    """``glmrun run CONFIG >&-`` did all its work, then ended in a traceback (Python had left
    sys.stdout None) and exit 1."""
    config = write_config(tmp_path, make_urls(5))
    proc = _with_closed(1, config)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert len(read_records(output_of(tmp_path))) == 5


def test_a_run_with_its_stderr_closed_ends_as_usual(tmp_path: Path) -> None:
    """``glmrun run CONFIG 2>&-`` exited 1 having sent and written nothing, and said nothing."""
    config = write_config(tmp_path, make_urls(5))
    proc = _with_closed(2, config)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("t: ok 5, errors 0 — 5/5 done\n"), proc.stdout
    assert len(read_records(output_of(tmp_path))) == 5
