"""``run --wait-lock`` at a terminal says that it waits and for whom, instead of a blank screen
for as long as the other run takes; without a terminal (cron) the wait stays an INFO event."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

import pytest

from runner.app.orchestrate import RunOptions, run
from runner.app.signals import acquire_lock
from runner.config import load_config
from runner.errors import Interrupted
from runner.io.store import RunLock
from tests.support.configs import ENV, write_minimal_config


async def test_a_wait_for_the_lock_is_said_once_and_ends_when_the_holder_lets_go(
    tmp_path: Path,
) -> None:
    """``say`` hears one line naming the output, the holder's pid and how to stop waiting."""
    said: list[str] = []
    path = tmp_path / "out.jsonl"
    with RunLock(path):
        waiting = asyncio.ensure_future(
            acquire_lock(
                RunLock(path), wait=True, stop=asyncio.Event(), poll_s=0.001, say=said.append
            )
        )
        for _ in range(200):
            await asyncio.sleep(0.001)
            if said:
                break
        assert not waiting.done()
    await asyncio.wait_for(waiting, timeout=5)
    (line,) = said
    assert line.startswith(f"{path} is in use by another glmrun run (pid {os.getpid()}, since ")
    assert line.endswith("; waiting for it to finish (Ctrl-C stops the wait)")


@pytest.mark.parametrize(
    ("tty", "quiet", "told"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["terminal", "no-terminal", "quiet"],
)
async def test_run_waiting_for_the_lock_tells_a_person_at_a_terminal(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tty: bool,
    quiet: bool,
    told: bool,
) -> None:
    """At a terminal the wait is one ``glmrun:`` line on stderr (nothing showed before it but a
    blank screen); piped, or with -q, nothing is printed."""
    config = load_config(write_minimal_config(tmp_path, ["https://x/0.jpg"]), environ=ENV)
    options = RunOptions(wait_lock=True, tty=tty, quiet=quiet)
    with RunLock(config.jobs[0].output_path):
        task = asyncio.ensure_future(run(config, options, out=io.StringIO()))
        caplog.set_level("INFO", logger="runner.app")
        for _ in range(2000):
            await asyncio.sleep(0.001)
            if any(r.getMessage() == "waiting for the output lock" for r in caplog.records):
                break
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted):
            await asyncio.wait_for(task, timeout=5)
    err = capsys.readouterr().err
    assert ("waiting for it to finish (Ctrl-C stops the wait)" in err) is told, err
