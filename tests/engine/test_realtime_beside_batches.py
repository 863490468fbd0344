"""A job whose batches are still running, run again with a realtime route (``mode`` switched to
realtime, or auto with the pending count under the threshold): the lines in those batches are
left to them and collected, never sent again realtime, where each would be paid twice."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from runner.app.summary import summary_lines
from runner.errors import ComeBackLater
from tests.support.configs import ENV, KEY_ENV, write_batch_config
from tests.support.records import latest, read_records
from tests.support.runs import run_config

from .batch_support import StartBatchSim, urls
from .test_batch_confirm import SLOW, assert_paid_once


@pytest.mark.parametrize("route", ["realtime", "auto"])
async def test_lines_in_running_batches_are_not_sent_again_realtime(
    tmp_path: Path, start_batch_sim: StartBatchSim, route: str
) -> None:
    box = await start_batch_sim(**SLOW)
    first, new = urls(20), urls(5, prefix="https://img.example/new")
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    cfg = write_batch_config(tmp_path, first, api=api, batch={"poll_interval_s": 0.01})
    with pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    assert box.sim.stats.batches_created == 1

    data = orjson.loads(cfg.read_bytes())
    data["jobs"][0]["mode"] = route
    data["batch"]["threshold"] = 1000  # auto: 25 pending go realtime
    cfg.write_bytes(orjson.dumps(data))
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in first + new))
    with pytest.raises(ComeBackLater):  # --limit counts only what this run may send
        await run_config(cfg, ENV, no_wait=True, limit=2)
    assert sorted(box.sim.stats.per_url) == sorted(new[:2])
    with pytest.raises(ComeBackLater) as later:  # the batch still runs: a later run collects
        await run_config(cfg, ENV, no_wait=True)
    assert later.value.stats is not None
    assert "via realtime + batch" in "\n".join(summary_lines(later.value.stats))
    assert sorted(box.sim.stats.per_url) == sorted(new)  # only the new lines went realtime

    box.clock.now += 10
    result, _ = await run_config(cfg, ENV)
    assert result.exit_code == 0
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) == 25, "each URL written once"
    by_url = latest(records)
    assert {u for u, r in by_url.items() if r["via"] == "batch"} == set(first)
    assert {u for u, r in by_url.items() if r["via"] == "realtime"} == set(new)
    assert box.sim.stats.batches_created == 1
    assert_paid_once(box.sim, first + new)
