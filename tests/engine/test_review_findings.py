"""Bugs found by the adversarial review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from runner.app.orchestrate import RunOptions, run
from runner.config import load_config
from runner.errors import ComeBackLater
from tests.support.configs import (
    MINIMAL_CONFIG,
    make_urls,
    write_batch_config,
    write_minimal_config,
)
from tests.support.records import latest, read_records
from tests.support.sim import INSTANT_BATCHES, MakeSim

from .batch_support import StartBatchSim, load, output_path, run_batch, urls

ENV = {"ZHIPUAI_API_KEY": "k"}


async def test_no_wait_batch_of_one_job_is_collected_by_a_run_of_all_jobs(tmp_path: Path) -> None:
    """A batch left running by `--job b --no-wait` is collected (not lost and paid again) by a later
    run without --job."""
    job = MINIMAL_CONFIG["jobs"][0]
    cfg = write_minimal_config(
        tmp_path,
        make_urls(5, prefix="https://img.example", digits=0),
        retry={"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02},
        batch={"poll_interval_s": 0.02},
        simulator={**INSTANT_BATCHES, "batch_in_progress_s": 0.2},
        jobs=[
            {**job, "name": "a", "output": "rt/a.jsonl", "mode": "realtime"},
            {**job, "name": "b", "output": "bt/b.jsonl", "mode": "batch"},
        ],
    )
    config = load_config(cfg, environ=ENV)
    with pytest.raises(ComeBackLater):
        await run(config, RunOptions(job="b", no_wait=True, tty=False), out=io.StringIO())
    result = await run(config, RunOptions(tty=False), out=io.StringIO())
    records = read_records(tmp_path / "bt" / "b.jsonl")
    assert sorted(r["url"] for r in records) == sorted(
        f"https://img.example/{i}.jpg" for i in range(5)
    )
    assert {r["via"] for r in records} == {"batch"}
    assert result.exit_code == 0


async def test_arrears_during_the_batch_fallback_stops_and_the_next_run_finishes(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """A 1113 answer while resending failed batch lines in realtime stops the run; the rerun sends
    only what is missing."""
    from runner.errors import ApiStopped

    items = urls(6)
    cfg = write_batch_config(tmp_path, items)
    box = await start_batch_sim(
        batch_line_faults={items[1]: "500", items[2]: "500"}, url_faults={items[1]: ["1113"]}
    )
    with pytest.raises(ApiStopped):
        await run_batch(cfg, box)
    box.sim.settings.url_faults = {}
    await run_batch(cfg, box)
    created = box.sim.stats.batches_created
    records = read_records(output_path(cfg))
    recs = latest(records)
    assert created == 1
    assert set(recs) == set(items) and all(r["status"] == "ok" for r in recs.values())
    assert sorted(r["url"] for r in records if r["via"] == "batch") == sorted(items[:1] + items[3:])


async def test_batch_item_whose_prompt_or_meta_holds_a_unicode_line_separator_is_collected(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """A JSONL item whose prompt or meta contains U+2028 or U+0085 goes through the batch path
    instead of crashing the collect."""
    lines = [
        {"id": "a", "url": "https://img.example/a.jpg", "prompt": "First line\u2028second line"},
        {"id": "b", "url": "https://img.example/b.jpg", "meta": {"note": "x\x85y\u2029z"}},
        {"url": "https://img.example/c.jpg"},
    ]
    cfg = write_batch_config(
        tmp_path, [orjson.dumps(x).decode() for x in lines], input_name="items.jsonl"
    )
    box = await start_batch_sim()
    await run_batch(cfg, box)
    recs = latest(read_records(output_path(cfg)))
    assert set(recs) == {"a", "b", "https://img.example/c.jpg"}
    assert all(r["status"] == "ok" and r["via"] == "batch" for r in recs.values())
    assert recs["b"]["meta"] == {"note": "x\x85y\u2029z"}


async def test_sigterm_during_the_batch_realtime_fallback_exits_within_the_grace_period(
    tmp_path: Path,
    start_sim: MakeSim,
) -> None:
    """SIGTERM while the batch path resends failed lines in realtime and a request hangs: exit 143
    after run.grace_s, not after the request timeout."""
    import asyncio
    import os
    import signal
    import time

    from runner.errors import Interrupted

    urls = make_urls(4, prefix="https://img.example", digits=0)
    sim = await start_sim(
        **INSTANT_BATCHES,
        batch_line_faults={urls[0]: "500"},
        url_faults={urls[0]: ["hang"]},
    )
    cfg = write_minimal_config(
        tmp_path,
        urls,
        api={"base_url": sim.base_url, "timeout_s": 60},
        run={"grace_s": 0.2},
        batch={"poll_interval_s": 0.01, "on_failure": "realtime"},
        job={"mode": "batch"},
    )
    config = load_config(cfg, environ=ENV)
    task = asyncio.ensure_future(run(config, RunOptions(tty=False), out=io.StringIO()))
    deadline = time.monotonic() + 5
    while sim.stats.chat_requests == 0 and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.005)  # until the fallback's request hangs
    assert sim.stats.chat_requests == 1 and not task.done()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        await asyncio.wait_for(task, timeout=5)
    assert caught.value.exit_code == 143
    records = read_records(tmp_path / "out.jsonl")
    assert sorted(r["url"] for r in records) == urls[1:]


async def test_batch_work_folder_that_cannot_be_written_is_an_output_error_not_a_traceback(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """A file in the way of the job's batch work folder (or a full disk) ends the run with a
    one-line OutputError (exit 1), nothing sent."""
    from runner.errors import OutputError

    cfg = write_batch_config(tmp_path, urls(3))
    work = load(cfg).jobs[0].work_dir
    work.parent.mkdir(parents=True)
    work.write_text("in the way")
    box = await start_batch_sim()
    with pytest.raises(OutputError, match="batch"):
        await run_batch(cfg, box)
    assert box.sim.stats.files_uploaded == 0


async def test_a_failed_download_of_the_error_file_does_not_write_the_output_file_twice(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """A 500 on the error file after the output file was collected: the retry skips what was
    written, so every URL has one record."""
    from runner.errors import ApiFailure

    items = urls(6)
    cfg = write_batch_config(tmp_path, items, batch={"on_failure": "record"})

    class FlakyContent:
        def __init__(self, client):
            self._client, self.calls = client, 0

        def __getattr__(self, name):
            return getattr(self._client, name)

        async def file_content(self, fid):
            self.calls += 1
            if self.calls == 2:
                raise ApiFailure(500, None, "HTTP 500: try again")
            return await self._client.file_content(fid)

    box = await start_batch_sim(batch_line_faults={items[0]: "1301"})
    stats = await run_batch(cfg, box, wrap=FlakyContent)
    records = read_records(output_path(cfg))
    assert sorted(r["url"] for r in records) == sorted(items)
    assert stats.ok == 5 and stats.errors == 1


async def test_the_batch_realtime_fallback_keeps_the_tpm_budget(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines the batch path resends in realtime are paced by limits.tpm like any realtime run."""
    from runner.engine import realtime

    budgets = []
    engine_run = realtime.RealtimeEngine.run

    async def spy(self, items):
        budgets.append(self.deps.throttle.tokens)
        return await engine_run(self, items)

    monkeypatch.setattr(realtime.RealtimeEngine, "run", spy)
    items = urls(4)
    cfg = write_batch_config(tmp_path, items)
    text = cfg.read_text().replace(
        '"limits":{"concurrency":8}', '"limits":{"concurrency":8,"tpm":6000000}'
    )
    assert text != cfg.read_text()
    cfg.write_text(text)
    box = await start_batch_sim(batch_line_faults={items[0]: "500"})
    await run_batch(cfg, box)
    assert len(budgets) == 1 and budgets[0] is not None and budgets[0].rate == 100000


async def test_requests_waiting_for_a_slot_when_the_stop_comes_are_not_sent(tmp_path: Path) -> None:
    """After a stop, workers queued on the concurrency gate (auto: more workers than slots) start no
    new request."""
    import asyncio

    from runner.core.items import Item
    from runner.core.stats import JobStats
    from runner.engine.realtime import RealtimeDeps, RealtimeEngine
    from runner.engine.throttle import Throttle
    from runner.io.store import ResultWriter

    cfg = write_minimal_config(tmp_path, ["https://x/0.jpg"])
    config = load_config(cfg, environ=ENV)
    stop = asyncio.Event()
    sent: list[str] = []

    class Client:
        async def chat(self, body: bytes) -> dict:
            sent.append(body.decode())
            for _ in range(5):
                await asyncio.sleep(0)  # the other workers take their items and queue on the gate
            stop.set()  # then the signal comes, the first request still in flight
            return {
                "choices": [{"message": {"content": "a cat"}, "finish_reason": "stop"}],
                "usage": {"total_tokens": 5},
            }

    writer = ResultWriter(tmp_path / "out.jsonl")
    deps = RealtimeDeps(
        client=Client(),
        writer=writer,
        throttle=Throttle(1),
        retry=config.retry,  # type: ignore[arg-type]
        stats=JobStats("j"),
        stop=stop,
        workers=4,
    )
    items = [(i, Item(f"https://x/{i}.jpg", f"https://x/{i}.jpg", i + 1)) for i in range(4)]
    try:
        await RealtimeEngine(config.jobs[0], deps).run(items)
    finally:
        writer.close()
    assert len(sent) == 1
    assert [r["url"] for r in read_records(tmp_path / "out.jsonl")] == ["https://x/0.jpg"]


async def test_sigterm_while_waiting_for_the_lock_exits_143(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--wait-lock` then SIGTERM: the run exits 143 like any interrupted run, not 75, and
    prints no summary of the job it never started (it said 'nothing to do — urls.txt has no
    items', an empty input, to a cron log)."""
    import asyncio
    import os
    import signal

    from runner.errors import Interrupted
    from runner.io.store import RunLock

    cfg = write_minimal_config(tmp_path, ["https://x/0.jpg"])
    config = load_config(cfg, environ=ENV)
    before = signal.getsignal(signal.SIGTERM)
    out = io.StringIO()
    with RunLock(config.jobs[0].output_path):
        task = asyncio.ensure_future(run(config, RunOptions(wait_lock=True, tty=False), out=out))
        caplog.set_level("INFO", logger="runner.app")
        for _ in range(2000):
            await asyncio.sleep(0.001)
            if any(r.getMessage() == "waiting for the output lock" for r in caplog.records):
                break
        assert signal.getsignal(signal.SIGTERM) is not before  # the run's handler is in place
        assert any(r.getMessage() == "waiting for the output lock" for r in caplog.records)
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted) as caught:
            await asyncio.wait_for(task, timeout=5)
    assert caught.value.exit_code == 143
    assert out.getvalue() == ""
    assert not [r for r in caplog.records if r.getMessage() == "job finished"]


async def test_auto_mode_with_limit_routes_on_what_this_run_sends(tmp_path: Path) -> None:
    """mode auto, 50 pending over a threshold of 10, `--limit 5`: the 5 URLs go realtime at once
    instead of into a batch."""
    cfg = write_minimal_config(
        tmp_path,
        make_urls(50, prefix="https://x", digits=0),
        batch={"threshold": 10},
        simulator={"latency_mean_s": 0.0},
        job={"mode": "auto"},
    )
    config = load_config(cfg, environ=ENV)
    out = io.StringIO()
    await run(config, RunOptions(limit=5, dry_run=True, tty=False), out=out)
    assert "-> realtime" in out.getvalue()
    result = await run(config, RunOptions(limit=5, tty=False), out=io.StringIO())
    records = read_records(tmp_path / "out.jsonl")
    assert len(records) == 5 and {r["via"] for r in records} == {"realtime"}
    assert result.stats[0].route == "realtime"
    out = io.StringIO()
    await run(config, RunOptions(dry_run=True, tty=False), out=out)
    assert "45 pending" in out.getvalue() and "-> batch" in out.getvalue()


async def test_a_fallback_cut_short_by_a_signal_counts_only_what_it_sent(
    tmp_path: Path,
    start_sim: MakeSim,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An expired batch's 4 lines go to the realtime fallback, one at a time; SIGTERM while the
    second is in flight lets it finish and sends no more: the collected line says 2 sent again
    and 2 left for a later run (not 4 sent again), as does the summary; the next run sends
    the 2."""
    import asyncio
    import os
    import signal
    import time

    from runner.errors import Interrupted

    urls = make_urls(4, prefix="https://img.example", digits=0)
    sim = await start_sim(
        **{**INSTANT_BATCHES, "latency_mean_s": 0.2},
        batch_final_status="expired",
        batch_partial_fraction=0.0,
    )
    cfg = write_minimal_config(
        tmp_path,
        urls,
        api={"base_url": sim.base_url, "timeout_s": 60},
        limits={"concurrency": 1},
        run={"grace_s": 5},
        batch={"poll_interval_s": 0.01, "on_failure": "realtime"},
        job={"mode": "batch"},
    )
    config = load_config(cfg, environ=ENV)
    out = io.StringIO()
    with caplog.at_level("INFO", logger="runner"):
        task = asyncio.ensure_future(run(config, RunOptions(tty=False), out=out))
        deadline = time.monotonic() + 5
        while sim.stats.chat_requests < 2 and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.005)  # until the fallback's second request is in flight
        assert sim.stats.chat_requests == 2 and not task.done()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted):
            await asyncio.wait_for(task, timeout=5)
    (collected,) = [r for r in caplog.records if r.getMessage() == "batch collected"]
    assert (collected.resent, collected.left, collected.recorded) == (2, 2, 0)
    assert len(read_records(tmp_path / "out.jsonl")) == 2
    assert (
        "(expired): 0 ok, 2 sent again by realtime, 2 left for a later run"
        in capsys.readouterr().err
    )
    assert "2/4 done, 2 left for a later run" in out.getvalue()
    await run(load_config(cfg, environ=ENV), RunOptions(tty=False), out=io.StringIO())
    assert sorted(r["url"] for r in read_records(tmp_path / "out.jsonl")) == sorted(urls)
