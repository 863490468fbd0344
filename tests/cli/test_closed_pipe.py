"""A reader that closes glmrun's output early (``glmrun export ... | head``) ends the command
as it ends ``cat``: killed by SIGPIPE (141 in a shell), nothing on stderr, no traceback. A
full disk behind stdout is one line and exit 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support.configs import ENV, make_urls, output_of, write_config

URLS = make_urls(50)
# as a user's shell has it: output buffered (this machine's test environment may unbuffer it)
ENVIRON = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ENV


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A job with 50 ok records already written."""
    path = write_config(tmp_path, URLS)
    out = output_of(tmp_path)
    out.parent.mkdir(parents=True)
    rows = [{"url": u, "status": "ok", "content": "x" * 200} for u in URLS]
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def into_a_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """``python ARGS`` with stdout a pipe whose reader is already gone; stderr captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=ENVIRON,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["export", "{cfg}"],
        ["export", "{cfg}", "--format", "csv"],
        ["export", "{cfg}", "--columns", "url"],  # 3 KB: written by the flush at exit
        ["status", "{cfg}"],
        ["status", "{cfg}", "--json"],
        ["status", "{cfg}", "--errors"],
        ["batches", "list", "{cfg}"],
        ["run", "{cfg}", "--dry-run"],
        ["--help"],
        ["export", "--help"],
    ],
    ids=lambda a: " ".join(a).replace("{cfg}", "CFG"),
)
def test_a_closed_pipe_ends_the_command_like_cat(cfg: Path, args: list[str]) -> None:
    """stdout is a pipe whose reader is already gone: the first write ends the command by
    SIGPIPE, with an empty stderr (not click's silent exit 1, not a traceback)."""
    child = into_a_closed_pipe(["-m", "runner", *(a.format(cfg=cfg) for a in args)])
    assert child.returncode == -signal.SIGPIPE, child.stderr
    assert child.stderr == b""


def test_output_left_in_the_buffer_at_exit_ends_the_same_way() -> None:
    """A command that printed without flushing: the closed pipe shows at glmrun's last flush,
    and ends the process the same way (not exit 120, Python's code for a failed final flush)."""
    code = "import runner.cli.main as m; m.main = lambda: print('x' * 100); m.entry()"
    child = into_a_closed_pipe(["-c", code])
    assert child.returncode == -signal.SIGPIPE, child.stderr
    assert child.stderr == b""


def onto_a_full_disk(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """``python -m runner ARGS`` with its stdout on ``/dev/full`` (every write: ENOSPC)."""
    with open("/dev/full", "wb") as full:
        return subprocess.run(
            [sys.executable, "-m", "runner", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=False,
        )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize(
    "args",
    [
        ["export", "{cfg}"],
        ["status", "{cfg}"],
        ["run", "{cfg}", "--dry-run"],
        ["--help"],
    ],
    ids=lambda a: " ".join(a).replace("{cfg}", "CFG"),
)
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_stdout_on_a_full_disk_is_one_line_and_exit_1(
    cfg: Path, args: list[str], buffered: bool
) -> None:
    """``glmrun status cfg > log`` on a full disk: one ``glmrun:`` line and exit 1, as for the
    output file, not a traceback then Python's 120 (or a traceback and exit 1 unbuffered)."""
    env = ENVIRON if buffered else {**ENVIRON, "PYTHONUNBUFFERED": "1"}
    child = onto_a_full_disk([a.format(cfg=cfg) for a in args], env)
    assert child.returncode == 1, child.stderr
    assert child.stderr.decode() == (
        "glmrun: cannot write: No space left on device (the standard output, or a file)\n"
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_stdout_on_a_full_disk_with_json_logs_ends_with_a_json_error(cfg: Path) -> None:
    """With ``--log-format json`` the line is an error event like the run's other last lines,
    so a log of JSON lines stays one."""
    child = onto_a_full_disk(["run", str(cfg), "--dry-run", "--log-format", "json"], ENVIRON)
    assert child.returncode == 1, child.stderr
    last = orjson.loads(child.stderr.splitlines()[-1])
    assert last["event"] == "error" and last["exit_code"] == 1
    assert (
        last["message"] == "cannot write: No space left on device (the standard output, or a file)"
    )
