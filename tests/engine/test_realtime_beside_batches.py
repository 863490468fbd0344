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


async def test_bench_leaves_lines_in_running_batches_to_them(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """``glmrun bench`` sends a job's pending URLs realtime: while the job's batches run, their
    lines are not pending for it, as for a run's realtime route (each would be paid twice);
    it measures with the new ones only, and the batch is collected as usual."""
    import io

    from runner.app.bench import bench
    from runner.config import load_config

    box = await start_batch_sim(**SLOW)
    first, new = urls(20), urls(6, prefix="https://img.example/new")
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    cfg = write_batch_config(tmp_path, first, api=api, batch={"poll_interval_s": 0.01})
    with pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in first + new))

    out = io.StringIO()
    levels = await bench(load_config(cfg, environ=ENV), sample=4, levels=[2, 4], out=out)
    assert sorted(box.sim.stats.per_url) == sorted(new)  # none of the batch's lines
    assert [lv.results for lv in levels] == [4, 2]
    assert "(20 in batches still running, left to them)" in out.getvalue()

    box.clock.now += 10
    result, _ = await run_config(cfg, ENV)
    assert result.exit_code == 0
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) == 26, "each URL written once"
    assert_paid_once(box.sim, first + new)
