"""Two configs whose batch jobs share a name and an output folder share a work folder
(``.glmrun/<job>/``): a run of one must never collect the other's batches into its own output,
where the other would then pay for those lines again."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from runner.app.batches import cancel
from runner.app.orchestrate import RunOptions, run
from runner.app.status import collect, format_status
from runner.config import load_config
from runner.core.shard import Shard
from runner.errors import ComeBackLater, ConfigError
from runner.io.batch_state import JobState, create_state, load_state, state_path
from runner.io.store import RunLock
from tests.support.configs import ENV, KEY_ENV, write_batch_config
from tests.support.records import read_records
from tests.support.runs import run_config

from .batch_support import StartBatchSim, load, output_path, run_batch, urls
from .test_batch_confirm import SLOW, assert_all_ok_once, assert_paid_once


def two_configs(
    tmp_path: Path, base_url: str | None = None
) -> tuple[Path, Path, list[str], list[str]]:
    """Configs a/ and b/, each a job named ``j`` writing into the one folder out/."""
    paths, lists = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        items = urls(20, prefix=f"https://img.example/{name}")
        api = {"api": {"base_url": base_url}} if base_url else {}
        paths.append(
            write_batch_config(
                tmp_path / name,
                items,
                job={"output": f"../out/{name}.jsonl"},
                batch={"poll_interval_s": 1},  # the driver's sleeps move the FakeClock on
                **api,
            )
        )
        lists.append(items)
    return paths[0], paths[1], lists[0], lists[1]


async def test_a_second_config_never_collects_the_first_ones_batches(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """b is refused (exit 2, nothing sent) while a's batch runs; a collects its own; then b
    takes the folder over and sends its own lines. Every line is paid once."""
    a, b, a_items, b_items = two_configs(tmp_path)
    assert load(a).jobs[0].work_dir.resolve() == load(b).jobs[0].work_dir.resolve()
    box = await start_batch_sim(**SLOW)
    with pytest.raises(ComeBackLater):
        await run_batch(a, box, no_wait=True)
    assert box.sim.stats.batches_created == 1

    (status,) = collect(load(b))  # glmrun status says so before a run is tried
    assert "a.jsonl" in status.blocked and not status.finished
    assert "\n  a run is refused: " in format_status(status)
    assert collect(load(a))[0].blocked == ""

    with pytest.raises(ConfigError) as refused:
        await run_batch(b, box)
    assert refused.value.exit_code == 2
    message = str(refused.value)
    assert "a.jsonl" in message and "1 chunk is not collected yet" in message
    assert "another name or output folder" in message
    s = box.sim.stats
    assert (s.files_uploaded, s.batches_created) == (1, 1)  # b built and sent nothing
    assert read_records(output_path(b)) == []
    state = load_state(state_path(load(a).jobs[0]))
    assert state is not None and state.output == "a.jsonl" and len(state.chunks) == 1

    box.clock.now += 10
    await run_batch(a, box)
    assert_all_ok_once(a, a_items)

    await run_batch(b, box)  # a's chunks are all collected: b takes the folder over
    assert_all_ok_once(b, b_items)
    assert (box.sim.stats.batches_created, box.sim.stats.batch_lines_received) == (2, 40)
    assert_paid_once(box.sim, a_items + b_items)
    state = load_state(state_path(load(b).jobs[0]))
    assert state is not None and state.output == "b.jsonl"

    await run_batch(a, box)  # all done, nothing tracked for a: nothing is built or sent
    assert box.sim.stats.batches_created == 2
    assert_all_ok_once(a, a_items)


async def test_no_take_over_while_a_run_of_the_other_output_holds_its_lock(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """a's batches are collected but a run of a is going on (its lock held): b is refused."""
    a, b, a_items, b_items = two_configs(tmp_path)
    box = await start_batch_sim()
    await run_batch(a, box)
    with RunLock(output_path(a)), pytest.raises(ConfigError, match="holds its lock now"):
        await run_batch(b, box)
    assert box.sim.stats.batches_created == 1
    await run_batch(b, box)
    assert_all_ok_once(b, b_items)


async def test_a_state_from_before_outputs_were_noted_stays_its_jobs(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """An older glmrun's state.json has no output: the job that runs next collects it as
    before, and the output is noted from then on."""
    a, _, a_items, _ = two_configs(tmp_path)
    box = await start_batch_sim(**SLOW)
    with pytest.raises(ComeBackLater):
        await run_batch(a, box, no_wait=True)
    path = state_path(load(a).jobs[0])
    data = orjson.loads(path.read_bytes())
    del data["output"]
    path.write_bytes(orjson.dumps(data))
    box.clock.now += 10
    await run_batch(a, box)
    assert_all_ok_once(a, a_items)
    assert box.sim.stats.batches_created == 1
    state = load_state(path)
    assert state is not None and state.output == "a.jsonl"


async def test_cancel_from_the_other_config_leaves_the_batches_alone(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test")
    box = await start_batch_sim(**SLOW)
    a, b, a_items, _ = two_configs(tmp_path, box.sim.base_url)
    with pytest.raises(ComeBackLater):
        await run_batch(a, box, no_wait=True)
    lines = await cancel(load(b), None)
    assert "those of a.jsonl" in lines[0] and "the config that writes a.jsonl" in lines[0]
    assert box.sim.stats.batches_cancelled == 0
    box.clock.now += 10
    await run_batch(a, box)
    assert_all_ok_once(a, a_items)


async def test_a_job_renamed_while_its_batches_run_does_not_send_them_again(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """Renamed j -> k after a --no-wait submit, the job finds no state of its own: it is
    refused (nothing built or sent) until it is named j again and has collected them."""
    a, _, a_items, _ = two_configs(tmp_path)
    box = await start_batch_sim(**SLOW)
    with pytest.raises(ComeBackLater):
        await run_batch(a, box, no_wait=True)
    named_j = a.read_text()
    a.write_text(named_j.replace('"name":"j"', '"name":"k"'))
    assert load(a).jobs[0].name == "k"
    with pytest.raises(ConfigError, match="under the job name 'j'.*name the job 'j'"):
        await run_batch(a, box)
    assert (box.sim.stats.files_uploaded, box.sim.stats.batches_created) == (1, 1)
    a.write_text(named_j)
    box.clock.now += 10
    await run_batch(a, box)
    assert_all_ok_once(a, a_items)
    a.write_text(named_j.replace('"name":"j"', '"name":"k"'))
    await run_batch(a, box)  # collected: the new name is free to go on
    assert box.sim.stats.batches_created == 1
    assert_all_ok_once(a, a_items)


async def run_shard(cfg: Path, shard: Shard) -> int:
    config = load_config(cfg, environ=ENV).sharded(shard)
    return (await run(config, RunOptions(tty=False), out=io.StringIO())).exit_code


async def test_runs_sharded_otherwise_leave_each_others_open_batches_alone(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """The whole job's batches hold lines of every shard, and a shard's some of the whole
    job's: while either has open batches, a run sharded otherwise is refused (nothing sent);
    glmrun status, which speaks of no one layout, does not call the sharded job blocked (a
    health check reading ``blocked`` alerted while shard batches ran as they should)."""
    box = await start_batch_sim(**SLOW)
    items = urls(20)
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    cfg = write_batch_config(tmp_path, items, api=api, batch={"poll_interval_s": 0.01})
    with pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    with pytest.raises(ConfigError, match="of the whole job .*; run without --shard"):
        await run_shard(cfg, Shard(0, 2))
    assert box.sim.stats.batches_created == 1
    box.clock.now += 10
    assert (await run_config(cfg, ENV))[0].exit_code == 0
    assert await run_shard(cfg, Shard(0, 2)) == 0  # all collected: nothing left to send
    assert box.sim.stats.batches_created == 1

    more = urls(20, prefix="https://img.example/more")
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in items + more))
    config = load_config(cfg, environ=ENV).sharded(Shard(1, 2))
    with pytest.raises(ComeBackLater):
        await run(config, RunOptions(tty=False, no_wait=True), out=io.StringIO())
    assert box.sim.stats.batches_created == 2
    (status,) = collect(load_config(cfg, environ=ENV))  # a shard's open batches: its normal
    assert status.blocked == "" and "refused" not in format_status(status)  # state, not blocked
    with pytest.raises(ConfigError, match="of shard 1/2; run with --shard 1/2"):
        await run_config(cfg, ENV)
    assert box.sim.stats.batches_created == 2
    box.clock.now += 10
    assert await run_shard(cfg, Shard(1, 2)) == 0
    with pytest.raises(ComeBackLater):  # shard 0's share of the new lines goes in a batch
        await run_config(cfg, ENV, no_wait=True)
    box.clock.now += 10
    assert (await run_config(cfg, ENV))[0].exit_code == 0
    assert_paid_once(box.sim, items + more)
    assert sum(box.sim.stats.batch_paid.values()) == 40


def test_only_the_first_of_two_runs_creates_the_state(tmp_path: Path) -> None:
    """Two runs starting together on an empty work folder: one state is created, the other
    run is told and reads it."""
    path = tmp_path / ".glmrun" / "j" / "state.json"
    assert create_state(path, JobState("j", "t1", "h", output="a.jsonl"))
    assert not create_state(path, JobState("j", "t2", "h", output="b.jsonl"))
    state = load_state(path)
    assert state is not None and (state.tag, state.output) == ("t1", "a.jsonl")
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left
