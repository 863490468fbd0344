"""`glmrun batches cancel` after the batches finished on the API but before a run collected
them: the cancel cannot stop them, so the line says they had finished (the next run collects
all they did), not that running batches were cancelled and a later run sends the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.app.batches import cancel
from runner.errors import ComeBackLater
from tests.support.configs import write_batch_config

from .batch_support import StartBatchSim, load, run_batch, urls

SLOW = {"batch_validating_s": 1.0, "batch_in_progress_s": 3.0, "batch_finalizing_s": 1.0}


async def test_cancel_of_finished_batches_says_they_finished(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches submitted with --no-wait, both completed on the API: cancel names them as
    finished, and the next run collects every line of them, nothing sent again."""
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test")
    box = await start_batch_sim(**SLOW)
    items = urls(20)
    cfg = write_batch_config(
        tmp_path,
        items,
        batch={"max_requests_per_file": 10, "poll_interval_s": 1},
        api={"base_url": box.sim.base_url},
    )
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    box.clock.now += 10  # both batches complete on the API
    (line,) = await cancel(load(cfg), None)
    assert line.endswith(
        ": 2 batches had finished already (the next run collects them); "
        "0 chunks not submitted dropped"
    )
    stats = await run_batch(cfg, box)
    assert (stats.ok, box.sim.stats.batches_created, box.sim.stats.chat_requests) == (20, 2, 0)


async def test_a_second_cancel_while_the_api_is_cancelling_says_so(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ``batches cancel`` while the first one's batches are still cancelling said
    "cancel requested for 0 running batches"; it says the cancel was already requested, and
    asks the API nothing again."""
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test")
    box = await start_batch_sim(**SLOW)
    cfg = write_batch_config(
        tmp_path,
        urls(20),
        batch={"max_requests_per_file": 10, "poll_interval_s": 1},
        api={"base_url": box.sim.base_url},
    )
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    box.clock.now += 2  # in progress
    (first,) = await cancel(load(cfg), None)
    assert ": cancel requested for 2 running batches;" in first
    (second,) = await cancel(load(cfg), None)
    assert second.endswith(
        ": cancel already requested for 2 running batches (not asked again); the next run "
        "collects what they finished"
    )
    assert box.sim.stats.batches_cancelled == 2
