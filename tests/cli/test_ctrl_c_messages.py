"""Ctrl-C in commands that send nothing (--dry-run, status, export): one line that says what
the stop left, at once, instead of a run's 'results so far are saved, run again to resume'
(a dry run first printed its whole plan)."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import pytest

import runner.app.dry_run as dry_run_module
from runner.app.planning import PlanStopped
from runner.config import load_config
from runner.errors import Interrupted
from tests.support.configs import ENV, make_urls, write_config


async def test_a_cancelled_dry_run_stops_its_count_and_says_nothing_was_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan (a count of millions of lines, here one that waits) is told to stop, prints
    nothing more, and the run ends with the dry run's own interrupted line."""
    started, told = threading.Event(), threading.Event()

    def slow_plan(job: Any, config: Any, stop: threading.Event) -> Any:
        started.set()
        if stop.wait(5):
            told.set()
        raise PlanStopped

    monkeypatch.setattr(dry_run_module, "plan_job", slow_plan)
    config = load_config(write_config(tmp_path, make_urls(3)), environ=ENV)
    out = io.StringIO()
    task = asyncio.create_task(dry_run_module.dry_runs(list(config.jobs), config, None, out))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()  # what asyncio.Runner does on Ctrl-C
    with pytest.raises(Interrupted) as caught:
        await task
    assert str(caught.value) == "interrupted by SIGINT (a dry run: nothing was sent or written)"
    assert caught.value.exit_code == 130
    assert await asyncio.to_thread(told.wait, 5) and out.getvalue() == ""


@pytest.mark.parametrize(
    ("command", "target", "line"),
    [
        (
            "status",
            "runner.cli.status.collect",
            "glmrun: interrupted by SIGINT (status only reads: nothing was changed)\n",
        ),
        (
            "export",
            "runner.cli.export.export_to",
            "glmrun: interrupted by SIGINT (the export is incomplete; a file given with -o "
            "was not written)\n",
        ),
    ],
    ids=["status", "export"],
)
def test_ctrl_c_in_a_command_that_sends_nothing_says_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, target: str, line: str
) -> None:
    """status and export stopped by Ctrl-C: exit 130 and a line that fits them, not a run's
    'results so far are saved, run again to resume'."""
    from click.testing import CliRunner

    from runner.cli.main import main

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    cfg = write_config(tmp_path, make_urls(3))
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "out" / "t.jsonl").write_text("")
    monkeypatch.setattr(target, interrupted)
    result = CliRunner(env=ENV).invoke(main, [command, str(cfg)])
    assert (result.exit_code, result.stderr) == (130, line)
