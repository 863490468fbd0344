"""A job's work folder (``.glmrun/<job>/``) deleted while its batches still run on the account:
the next run finds them by their metadata and collects them; it never builds or pays for
their lines again."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import orjson
import pytest

from runner.api.glm import GlmClient
from runner.app.orchestrate import RunOptions, run
from runner.config import Secret, load_config
from runner.core.shard import Shard
from runner.errors import ComeBackLater, ConfigError, GlmrunError
from runner.io.batch_state import load_state, state_path
from tests.support.configs import ENV, KEY_ENV, write_batch_config
from tests.support.records import latest, read_records
from tests.support.runs import run_config

from .batch_support import Crash, StartBatchSim, load, output_path, run_batch, urls
from .test_batch_confirm import SLOW, assert_all_ok_once, assert_paid_once

TEN_PER_FILE = {"poll_interval_s": 1, "max_requests_per_file": 10}


def forget_work_folder(cfg: Path) -> None:
    shutil.rmtree(load_config(cfg, environ=ENV).jobs[0].work_dir)


def found_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("found ")]


async def test_batches_still_running_are_collected_not_sent_again(
    tmp_path: Path, start_batch_sim: StartBatchSim, caplog: pytest.LogCaptureFixture
) -> None:
    """Three batches submitted, the work folder deleted, the run again: one line says what was
    found; no upload or batch is made again; every URL is paid once and written once."""
    box = await start_batch_sim(**SLOW)
    items = urls(30)
    cfg = write_batch_config(tmp_path, items, batch=TEN_PER_FILE)
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    assert (box.sim.stats.files_uploaded, box.sim.stats.batches_created) == (3, 3)
    forget_work_folder(cfg)

    with caplog.at_level(logging.WARNING):
        await run_batch(cfg, box)
    work = load(cfg).jobs[0].work_dir
    assert found_lines(caplog) == [
        f"found 3 batches of job j still on the account from a run whose {work}/ is gone: "
        "collecting them, not sending their 30 lines again"
    ]
    s = box.sim.stats
    assert (s.files_uploaded, s.batches_created) == (3, 3)
    assert s.calls["list"] == 2  # one per run that found no state file
    assert_paid_once(box.sim, items)
    assert_all_ok_once(cfg, items)


async def test_a_first_run_pays_one_list_call(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A job's first run lists the account's batches once, finds none, and runs as before;
    its second run has a state file and lists nothing."""
    box = await start_batch_sim()
    items = urls(12)
    cfg = write_batch_config(tmp_path, items, batch=TEN_PER_FILE)
    await run_batch(cfg, box)
    assert box.sim.stats.calls["list"] == 1
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in items + urls(3, "https://x/n")))
    await run_batch(cfg, box)
    assert box.sim.stats.calls["list"] == 1
    assert box.sim.stats.batches_created == 3


async def test_finished_and_collected_batches_are_left_alone(
    tmp_path: Path, start_batch_sim: StartBatchSim, caplog: pytest.LogCaptureFixture
) -> None:
    """Two batches collected into the output, a third still running when the folder goes:
    only the third is adopted (the others' lines are in the output), and nothing is paid twice."""
    box = await start_batch_sim(**SLOW)
    first, more = urls(20), urls(10, prefix="https://img.example/more")
    cfg = write_batch_config(tmp_path, first, batch=TEN_PER_FILE)
    await run_batch(cfg, box)
    assert len(read_records(output_path(cfg))) == 20
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in first + more))
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    assert box.sim.stats.batches_created == 3
    forget_work_folder(cfg)

    with caplog.at_level(logging.WARNING):
        await run_batch(cfg, box)
    assert [line.split(" still ")[0] for line in found_lines(caplog)] == ["found 1 batch of job j"]
    assert found_lines(caplog)[0].endswith("not sending its 10 lines again")
    assert box.sim.stats.batches_created == 3
    assert_paid_once(box.sim, first + more)
    assert_all_ok_once(cfg, first + more)


async def test_a_batch_finished_but_not_collected_is_collected(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """The batch completed after the run left and before the folder went: its results are
    collected from the account, nothing is built again."""
    box = await start_batch_sim(**SLOW)
    items = urls(25)
    cfg = write_batch_config(tmp_path, items, batch=TEN_PER_FILE)
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    box.clock.now += 100  # every batch completed on the account
    forget_work_folder(cfg)
    await run_batch(cfg, box)
    assert box.sim.stats.batches_created == 3
    assert_paid_once(box.sim, items)
    assert_all_ok_once(cfg, items)


async def test_a_running_batch_whose_input_file_is_gone_refuses_the_run(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """Which lines the batch holds cannot be told: the run is refused (exit 2, one line that
    says what to do) and sends nothing; once the batch has finished, a run collects it."""
    box = await start_batch_sim(**SLOW)
    items = urls(10)
    cfg = write_batch_config(tmp_path, items, batch=TEN_PER_FILE)
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    state = load_state(state_path(load(cfg).jobs[0]))
    assert state is not None
    file_id = state.chunks[0].file_id  # type: ignore[union-attr]
    async with GlmClient(box.sim.base_url, Secret("")) as client:
        await client.delete_file(file_id)
    forget_work_folder(cfg)

    with pytest.raises(ConfigError) as refused:
        await run_batch(cfg, box)
    message = str(refused.value)
    assert refused.value.exit_code == 2
    assert "is still " in message and "its input file is gone" in message
    assert "let it finish" in message and "cancel it in your account" in message
    assert "\n" not in message
    assert (box.sim.stats.files_uploaded, box.sim.stats.batches_created) == (1, 1)
    assert read_records(output_path(cfg)) == []
    assert not state_path(load(cfg).jobs[0]).exists()

    box.clock.now += 100  # it finished: its results say which lines ran
    await run_batch(cfg, box)
    assert box.sim.stats.batches_created == 1
    assert_paid_once(box.sim, items)
    assert_all_ok_once(cfg, items)


async def test_another_configs_batches_of_the_same_job_name_are_not_adopted(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """Configs a/ and b/ both run a job j into out/results.jsonl, each in its own folder, over
    the same URLs: b's first run finds a's running batch and leaves it to a (its metadata names
    a's output); each collects its own."""
    box = await start_batch_sim(**SLOW)
    items = urls(10)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_batch_config(tmp_path / "a", items, batch=TEN_PER_FILE)
    b = write_batch_config(tmp_path / "b", items, batch=TEN_PER_FILE)
    with pytest.raises(ComeBackLater):
        await run_batch(a, box, no_wait=True)
    await run_batch(b, box)
    assert box.sim.stats.batches_created == 2
    by_url = latest(read_records(output_path(b)))
    assert len(by_url) == 10
    await run_batch(a, box)
    assert len(read_records(output_path(a))) == 10
    a_batch = {r["batch_id"] for r in read_records(output_path(a))}
    b_batch = {r["batch_id"] for r in by_url.values()}
    assert len(a_batch) == len(b_batch) == 1 and a_batch != b_batch


async def test_a_realtime_route_leaves_the_lines_to_the_found_batches(
    tmp_path: Path, start_batch_sim: StartBatchSim, caplog: pytest.LogCaptureFixture
) -> None:
    """Mode auto under the threshold routes realtime: the batch found on the account keeps its
    lines, only the new ones go realtime, and the batch is collected after."""
    box = await start_batch_sim(**SLOW)
    first, new = urls(20), urls(5, prefix="https://img.example/new")
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    cfg = write_batch_config(tmp_path, first, api=api, batch={"poll_interval_s": 0.01})
    with pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    data = orjson.loads(cfg.read_bytes())
    data["jobs"][0]["mode"] = "auto"
    data["batch"]["threshold"] = 1000
    cfg.write_bytes(orjson.dumps(data))
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in first + new))
    forget_work_folder(cfg)

    with caplog.at_level(logging.WARNING), pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    assert len(found_lines(caplog)) == 1
    assert sorted(box.sim.stats.per_url) == sorted(new)
    box.clock.now += 100
    result, _ = await run_config(cfg, ENV)
    assert result.exit_code == 0
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) == 25
    by_url = latest(records)
    assert {u for u, r in by_url.items() if r["via"] == "batch"} == set(first)
    assert box.sim.stats.batches_created == 1
    assert_paid_once(box.sim, first + new)


async def test_a_rebatched_line_belongs_to_its_newest_batch(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A line failed in batch A (500) and was rebatched into B, still running when the folder
    goes: the line is B's, not A's (A's failure would send it a third time); when it fails
    in B too it is recorded, not sent again."""
    items = urls(10)
    box = await start_batch_sim(batch_line_faults={items[0]: "500"}, **SLOW)
    cfg = write_batch_config(tmp_path, items, batch={**TEN_PER_FILE, "on_failure": "rebatch"})
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    box.clock.now += 100  # A completed: 9 answers, 1 failure
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)  # A collected, the failed line rebatched in B
    assert box.sim.stats.batches_created == 2
    forget_work_folder(cfg)

    await run_batch(cfg, box)
    assert box.sim.stats.batches_created == 2
    by_url = latest(read_records(output_path(cfg)))
    assert len(read_records(output_path(cfg))) == 10
    assert by_url[items[0]]["status"] == "error" and by_url[items[0]]["attempts"] == 2
    assert all(by_url[u]["status"] == "ok" for u in items[1:])


async def test_a_failure_already_recorded_is_sent_again_not_collected_again(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A finished batch whose failed line is in the output as a retryable error: the rerun
    after the folder went sends that line again (that is what the error record asks for), it
    does not collect the same failure from the old batch."""
    items = urls(10)
    box = await start_batch_sim(batch_line_faults={items[0]: "500"})
    cfg = write_batch_config(tmp_path, items, batch={**TEN_PER_FILE, "on_failure": "record"})
    await run_batch(cfg, box)
    first = latest(read_records(output_path(cfg)))[items[0]]
    assert first["status"] == "error" and first["error"]["retryable"] is True
    forget_work_folder(cfg)

    await run_batch(cfg, box)
    assert box.sim.stats.batches_created == 2
    again = latest(read_records(output_path(cfg)))[items[0]]
    assert again["batch_id"] != first["batch_id"]
    assert len(read_records(output_path(cfg))) == 11


async def test_shards_find_their_own_batches_and_refuse_the_whole_jobs(
    tmp_path: Path, start_batch_sim: StartBatchSim, caplog: pytest.LogCaptureFixture
) -> None:
    """Shards 0/2 and 1/2 submit; shard 0's folder goes: its rerun adopts its own batch only.
    The whole job's batch running with every work folder gone: a shard run is refused (it
    would send that batch's lines again) and says to run without --shard."""
    box = await start_batch_sim(**SLOW)
    items = urls(20)
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    cfg = write_batch_config(tmp_path, items, api=api, batch={"poll_interval_s": 0.01})
    shard0, shard1 = (load_config(cfg, environ=ENV).sharded(Shard(i, 2)) for i in (0, 1))
    for config in (shard0, shard1):
        with pytest.raises(ComeBackLater):
            await run(config, RunOptions(tty=False, no_wait=True), out=io.StringIO())
    assert box.sim.stats.batches_created == 2
    shutil.rmtree(shard0.jobs[0].work_dir)
    box.clock.now += 100
    with caplog.at_level(logging.WARNING):
        assert (await run(shard0, RunOptions(tty=False), out=io.StringIO())).exit_code == 0
    assert [line.split(" still ")[0] for line in found_lines(caplog)] == ["found 1 batch of job j"]
    assert (await run(shard1, RunOptions(tty=False), out=io.StringIO())).exit_code == 0
    assert box.sim.stats.batches_created == 2
    assert_paid_once(box.sim, items)

    more = urls(10, prefix="https://img.example/more")
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in items + more))
    with pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    assert box.sim.stats.batches_created == 3
    shutil.rmtree(tmp_path / "out" / ".glmrun")  # every work folder: no run has a state
    with pytest.raises(ConfigError, match="whole job's.*; run without --shard until"):
        await run(shard0, RunOptions(tty=False, no_wait=True), out=io.StringIO())
    assert box.sim.stats.batches_created == 3
    box.clock.now += 100
    assert (await run_config(cfg, ENV))[0].exit_code == 0  # the whole job adopts its batch
    assert box.sim.stats.batches_created == 3
    assert_paid_once(box.sim, items + more)


@pytest.mark.parametrize("status", [500, 404], ids=["500", "404"])
async def test_a_run_that_cannot_look_sends_nothing(
    tmp_path: Path, start_batch_sim: StartBatchSim, status: int
) -> None:
    """The listing keeps failing (a 404 too: it says nothing about the job's batches): the run
    ends (exit 75, or 3 when the API refuses the account) before building or sending
    anything, and leaves no state, so the next run looks again."""
    items = urls(10)
    rule = {"call": "list", "status": status, "code": "1214", "nth": 1, "count": 0}
    box = await start_batch_sim(control_faults=[rule])
    cfg = write_batch_config(tmp_path, items, batch=TEN_PER_FILE)
    with pytest.raises(GlmrunError) as ended:
        await run_batch(cfg, box)
    assert ended.value.exit_code in (3, 75)
    s = box.sim.stats
    assert (s.files_uploaded, s.batches_created, s.chat_requests) == (0, 0, 0)
    assert not state_path(load(cfg).jobs[0]).exists()
    box.sim.settings.control_faults = []
    await run_batch(cfg, box)
    assert_all_ok_once(cfg, items)


async def test_a_crash_after_the_sidecars_before_the_state_adopts_again(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed once the sidecars are written but before the state that names them: no state,
    so the next run lists and adopts the batches again; nothing is sent twice."""
    box = await start_batch_sim(**SLOW)
    items = urls(20)
    cfg = write_batch_config(tmp_path, items, batch=TEN_PER_FILE)
    with pytest.raises(ComeBackLater):
        await run_batch(cfg, box, no_wait=True)
    forget_work_folder(cfg)

    def killed(*args: object) -> None:
        raise Crash("claim_state")

    with monkeypatch.context() as patch:
        patch.setattr("runner.engine.batch.job.claim_state", killed)
        with pytest.raises(Crash):
            await run_batch(cfg, box)
    assert not state_path(load(cfg).jobs[0]).exists()
    await run_batch(cfg, box)
    assert box.sim.stats.batches_created == 2
    assert_paid_once(box.sim, items)
    assert_all_ok_once(cfg, items)


async def test_a_run_through_the_orchestrator_looks_once_and_leaves_a_state(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """The look on the account runs while the input is planned, whatever route the plan takes,
    and leaves a state file even when it finds nothing: an auto job that always routes
    realtime lists the account's batches on its first run only (a cron job every 10 minutes
    would otherwise list them at every run), and a batch job's first run lists once, not
    once in the orchestrator and again in the batch engine."""
    box = await start_batch_sim()
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    cfg = write_batch_config(tmp_path, urls(6), api=api, batch={"poll_interval_s": 0.01})
    data = orjson.loads(cfg.read_bytes())
    data["jobs"][0]["mode"] = "auto"
    data["batch"]["threshold"] = 1000
    cfg.write_bytes(orjson.dumps(data))
    for _ in range(3):
        result, _ = await run_config(cfg, ENV)
        assert result.exit_code == 0
    assert box.sim.stats.calls["list"] == 1
    assert state_path(load_config(cfg, environ=ENV).jobs[0]).exists()
    assert box.sim.stats.batches_created == 0

    data["jobs"][0]["mode"] = "batch"
    data["jobs"][0]["name"] = "other"
    data["jobs"][0]["output"] = "out/other.jsonl"
    cfg.write_bytes(orjson.dumps(data))
    result, _ = await run_config(cfg, ENV)
    assert result.exit_code == 0
    assert box.sim.stats.calls["list"] == 2  # the batch job's first run: one more, not two
    assert box.sim.stats.batches_created == 1


async def test_a_look_beside_another_outputs_fresh_state_is_not_refused(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """Two configs whose jobs share a name and an output folder start their first runs at once:
    a's made the folder's state and runs (holds its lock) while b's looked on the account. b
    found nothing, so it needs no state: it goes on, not refused over a's state."""
    from runner.engine.batch.adopt import adopt_lost_batches
    from runner.io.batch_state import claim_state
    from runner.io.store import RunLock

    box = await start_batch_sim()
    a = write_batch_config(tmp_path, urls(4))
    data = orjson.loads(a.read_bytes())
    data["jobs"][0]["output"] = "out/other.jsonl"
    b = tmp_path / "b.json"
    b.write_bytes(orjson.dumps(data))
    job_a = load_config(a, environ=ENV).jobs[0]
    config_b = load_config(b, environ=ENV)
    job_b = config_b.jobs[0]
    assert job_a.work_dir == job_b.work_dir
    claim_state(job_a, "chash")
    with RunLock(job_a.output_path):
        async with GlmClient(box.sim.base_url, Secret("")) as client:
            await adopt_lost_batches(job_b, config_b, client)
    state = load_state(state_path(job_b))
    assert state is not None and state.output == job_a.output_path.name
    assert box.sim.stats.calls["list"] == 1


@pytest.mark.parametrize("how", ["deleted", "emptied"])
async def test_an_output_gone_after_its_batches_were_collected_is_collected_again(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """The output deleted (or emptied) after its batches were collected, the work folder kept:
    its state said nothing was in batches, so the next run built and paid for every line again
    (deleting the folder too cost nothing: the look on the account found the batches). Now the
    state is moved aside, the account is looked at, and the results are collected again."""
    monkeypatch.setenv(KEY_ENV, ENV[KEY_ENV])  # for the helpers that load the config
    box = await start_batch_sim()
    api = {"base_url": box.sim.base_url, "api_key_env": KEY_ENV}
    items = urls(12)
    cfg = write_batch_config(tmp_path, items, api=api, batch={"poll_interval_s": 0.01})
    assert (await run_config(cfg, ENV))[0].exit_code == 0
    assert box.sim.stats.batches_created == 1
    out = output_path(cfg)
    if how == "deleted":
        out.unlink()
    else:
        out.write_bytes(b"")

    with caplog.at_level(logging.WARNING):
        result, _ = await run_config(cfg, ENV)
    assert result.exit_code == 0
    assert box.sim.stats.batches_created == 1  # nothing built or paid again
    assert_paid_once(box.sim, items)
    assert_all_ok_once(cfg, items)
    gone = [r.getMessage() for r in caplog.records if " is gone, but " in r.getMessage()]
    assert gone == [
        f"{out} is gone, but 1 batch chunk (12 lines) was collected into it: its state is moved "
        f"aside ({state_path(load(cfg).jobs[0])}.output-gone) and the account is looked at, so "
        "this run collects their results again instead of paying for those lines twice"
    ]
    # the state the look left says the account was looked at: the next run lists nothing more
    lists = box.sim.stats.calls["list"]
    assert (await run_config(cfg, ENV))[0].exit_code == 0
    assert box.sim.stats.calls["list"] == lists
