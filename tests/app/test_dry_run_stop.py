"""Ctrl-C during --dry-run: it ends at once with one line saying nothing was sent, instead of
printing the whole plan first and then 'results so far are saved, run again to resume'."""

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
