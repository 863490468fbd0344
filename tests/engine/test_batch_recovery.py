"""Crash recovery at every step boundary: the rerun never uploads or creates twice."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from runner.errors import ComeBackLater
from runner.io.batch_state import load_state, state_path
from runner.simulator import expected_content
from tests.support.configs import write_batch_config
from tests.support.records import latest, read_records

from .batch_support import (
    Crash,
    CrashingClient,
    StartBatchSim,
    load,
    output_path,
    run_batch,
    urls,
)

SLOW = {"batch_validating_s": 1.0, "batch_in_progress_s": 3.0, "batch_finalizing_s": 1.0}


def assert_all_ok_once(cfg: Path, items: list[str]) -> None:
    records = read_records(output_path(cfg))
    recs = latest(records)
    assert len(records) == len(items), "each URL is written exactly once"
    assert all(
        recs[u]["status"] == "ok" and recs[u]["content"] == expected_content(u) for u in items
    )


@pytest.mark.parametrize(
    ("method", "after", "before"),
    [
        ("upload_file", 1, False),  # upload answer lost
        ("upload_file", 2, False),  # crash after the second chunk's upload
        ("create_batch", 1, True),  # after upload, before create was sent
        ("create_batch", 1, False),  # create sent, answer lost
        ("create_batch", 2, False),  # second chunk's create answer lost
        ("get_batch", 2, False),  # during polling
        ("file_content", 1, True),  # before collecting
    ],
    ids=[
        "upload-lost",
        "upload-2nd",
        "before-create",
        "create-lost",
        "create-2nd-lost",
        "polling",
        "before-collect",
    ],
)
async def test_crash_between_steps_then_rerun(
    tmp_path: Path, start_batch_sim: StartBatchSim, method: str, after: int, before: bool
) -> None:
    """Killed at a step boundary, the next run finishes with one upload and one batch per chunk."""
    items = urls(30)
    cfg = write_batch_config(
        tmp_path, items, batch={"max_requests_per_file": 20, "poll_interval_s": 1}
    )
    box = await start_batch_sim(**SLOW)
    with pytest.raises(Crash):
        await run_batch(cfg, box, wrap=lambda c: CrashingClient(c, method, after, before=before))
    await run_batch(cfg, box)
    s = box.sim.stats
    assert (s.files_uploaded, s.batches_created, s.batch_lines_received) == (2, 2, 30)
    assert_all_ok_once(cfg, items)


async def test_crash_during_collection_writes_no_duplicates(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A crash between the output and the error file download re-collects without duplicate
    records."""
    items = urls(12)
    cfg = write_batch_config(tmp_path, items, batch={"poll_interval_s": 1})
    box = await start_batch_sim(batch_line_faults={items[0]: "1301"}, **SLOW)
    with pytest.raises(Crash):
        await run_batch(cfg, box, wrap=lambda c: CrashingClient(c, "file_content", 2))
    partial = read_records(output_path(cfg))
    assert len(partial) == 11  # the output file's lines made it to disk
    await run_batch(cfg, box)
    assert (box.sim.stats.files_uploaded, box.sim.stats.batches_created) == (1, 1)
    records = read_records(output_path(cfg))
    assert len(records) == 12
    assert latest(records)[items[0]]["error"]["code"] == "1301"


async def test_no_wait_exits_then_next_run_collects(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """--no-wait submits and raises ComeBackLater (75); the next run collects and creates nothing
    new."""
    items = urls(25)
    cfg = write_batch_config(
        tmp_path, items, batch={"max_requests_per_file": 10, "poll_interval_s": 1}
    )
    box = await start_batch_sim(**SLOW)
    with pytest.raises(ComeBackLater) as info:
        await run_batch(cfg, box, no_wait=True)
    assert info.value.exit_code == 75
    assert (box.sim.stats.files_uploaded, box.sim.stats.batches_created) == (3, 3)
    assert read_records(output_path(cfg)) == []
    state = load_state(state_path(load(cfg).jobs[0]))
    assert state is not None and {type(c).__name__ for c in state.chunks} == {"Running"}
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)  # still running: polls, submits nothing
    box.clock.now += 10
    await run_batch(cfg, box, no_wait=True)
    assert (box.sim.stats.files_uploaded, box.sim.stats.batches_created) == (3, 3)
    assert_all_ok_once(cfg, items)


async def test_max_wait_s_gives_up_waiting(tmp_path: Path, start_batch_sim: StartBatchSim) -> None:
    """batch.max_wait_s ends the wait with ComeBackLater while the batches stay tracked."""
    items = urls(5)
    cfg = write_batch_config(tmp_path, items, batch={"poll_interval_s": 1, "max_wait_s": 2})
    box = await start_batch_sim(
        batch_validating_s=1.0, batch_in_progress_s=100.0, batch_finalizing_s=1.0
    )
    with pytest.raises(ComeBackLater, match="max_wait_s"):
        await run_batch(cfg, box)
    assert box.clock.now - 1000.0 <= 3.0
    box.clock.now += 200
    await run_batch(cfg, box)
    assert box.sim.stats.batches_created == 1
    assert_all_ok_once(cfg, items)


async def test_new_input_lines_get_a_new_chunk_tracked_ones_do_not(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """URLs added to the input while batches run go into a new chunk; tracked URLs are not
    rebuilt."""
    items = urls(10)
    cfg = write_batch_config(tmp_path, items, batch={"poll_interval_s": 1})
    box = await start_batch_sim(**SLOW)
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    more = items + urls(5, prefix="https://img.example/q")
    (tmp_path / "urls.txt").write_text("".join(u + "\n" for u in more))
    box.clock.now += 10
    await run_batch(cfg, box)
    assert (box.sim.stats.batches_created, box.sim.stats.batch_lines_received) == (2, 15)
    assert_all_ok_once(cfg, more)
    raw = orjson.loads(state_path(load(cfg).jobs[0]).read_bytes())
    assert [c["type"] for c in raw["chunks"]] == ["Collected", "Collected"]
