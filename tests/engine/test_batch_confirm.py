"""Issue 11: lines are sent again only when the API has confirmed that they will not run.

Each test injects control-plane faults with the simulator's ``control_faults`` and reads its
money counters: ``batch_custom_ids`` (custom_id -> batches created with it), ``batch_paid``
(URL -> batch lines that produced an answer) and ``per_url`` (realtime requests per URL).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from runner.app.batches import cancel
from runner.core.batch_states import Creating, Ended, Running
from runner.errors import ApiStopped, ComeBackLater
from runner.io.batch_state import load_state, state_path
from runner.simulator import Simulator, expected_content
from tests.support.configs import write_batch_config
from tests.support.records import latest, read_records

from .batch_support import (
    Crash,
    CrashingClient,
    SimBox,
    StartBatchSim,
    load,
    output_path,
    run_batch,
    urls,
)


def write_config(
    tmp_path: Path, items: list[str], *, base_url: str | None = None, **batch: Any
) -> Path:
    """The shared batch config over ``items``, with these ``batch`` keys (and ``api.base_url``)."""
    api = {"api": {"base_url": base_url}} if base_url else {}
    return write_batch_config(tmp_path, items, batch=batch, **api)


SLOW = {"batch_validating_s": 1.0, "batch_in_progress_s": 3.0, "batch_finalizing_s": 1.0}


def assert_paid_once(sim: Simulator, items: list[str]) -> None:
    """No custom_id in two created batches, no URL answered by a batch and sent in realtime."""
    s = sim.stats
    assert max(s.batch_custom_ids.values(), default=0) <= 1, s.batch_custom_ids
    assert not set(s.batch_paid) & set(s.per_url), "a URL paid in a batch and in realtime"
    assert max(s.batch_paid.values(), default=0) <= 1


def assert_all_ok_once(cfg: Path, items: list[str], via: str = "batch") -> None:
    records = read_records(output_path(cfg))
    recs = latest(records)
    assert len(records) == len(items), "each URL is written exactly once"
    for u in items:
        assert recs[u]["status"] == "ok" and recs[u]["content"] == expected_content(u)
        assert recs[u]["via"] == via


# --- path 1: a failed poll never abandons a running batch -------------------------------------

POLL_FAULTS = {
    "404": {"status": 404, "code": "1214"},
    "400-1214": {"status": 400, "code": "1214"},
    "500-with-1214": {"status": 500, "code": "1214"},
    "500": {"status": 500, "code": "500"},
}


@pytest.mark.parametrize("fault", list(POLL_FAULTS), ids=list(POLL_FAULTS))
async def test_a_failed_poll_is_retried_and_the_batch_collected(
    tmp_path: Path, start_batch_sim: StartBatchSim, fault: str
) -> None:
    """One non-retryable answer to GET /batches/{id} (a 404, a 4xx, a 500 carrying 1214): the
    poll is retried (a 404 confirmed by listing), the batch collected, nothing sent twice."""
    items = urls(30)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    rule = {"call": "retrieve", "nth": 2, **POLL_FAULTS[fault]}
    box = await start_batch_sim(control_faults=[rule], **SLOW)
    try:
        await run_batch(cfg, box)
        s = box.sim.stats
        assert s.faults_injected == 1
        assert (s.batches_created, s.chat_requests) == (1, 0)
        if fault == "404":
            # the first run's look for lost batches, then the 404 checked against the list
            assert s.calls["list"] == 2
        assert_paid_once(box.sim, items)
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items)


async def test_a_batch_confirmed_absent_is_given_up_and_its_lines_resent(
    tmp_path: Path, start_batch_sim: StartBatchSim, caplog: pytest.LogCaptureFixture
) -> None:
    """A poll's 404 that the listing confirms (the batch is really gone): only then are the
    lines sent again, and the log says why."""
    items = urls(12)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    box = await start_batch_sim(**SLOW)

    def vanish(client: Any) -> Any:
        return _Vanishing(client, box)

    caplog.set_level(logging.INFO)
    try:
        await run_batch(cfg, box, wrap=vanish)
        s = box.sim.stats
        # one list call looks for lost batches (no state yet), one confirms the 404
        assert (s.batches_created, s.calls["list"], s.chat_requests) == (1, 2, 12)
        assert not s.batch_paid  # the batch never answered: nothing paid twice
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items, via="realtime")
    why = [r for r in caplog.records if r.getMessage() == "batch lines did not run"]
    assert why and "not in the account's batch list" in why[0].__dict__["reason"]


class _Vanishing:
    """After the batch's first poll, the simulator forgets it (a batch the API really lost)."""

    def __init__(self, client: Any, box: SimBox):
        self._client = client
        self._box = box
        self.polls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        self.polls += 1
        if self.polls == 2:
            self._box.sim._batches.batches.pop(batch_id, None)
        answer: dict[str, Any] = await self._client.get_batch(batch_id)
        return answer


async def test_a_poll_that_keeps_failing_ends_the_run_with_75_and_the_chunk_tracked(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """Polls that fail for good (an outage): exit 75, the batch still Running in the state
    file, nothing sent through realtime; the next run collects it."""
    items = urls(10)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    rule = {"call": "retrieve", "status": 503, "code": "500", "nth": 1, "count": 0}
    box = await start_batch_sim(control_faults=[rule], **SLOW)
    try:
        with pytest.raises(ComeBackLater) as info:
            await run_batch(cfg, box)
        assert info.value.exit_code == 75 and "stays tracked" in str(info.value)
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None and isinstance(state.chunks[0], Running)
        assert box.sim.stats.chat_requests == 0
        box.sim.settings.control_faults = []
        box.clock.now += 10
        await run_batch(cfg, box)
        assert (box.sim.stats.batches_created, box.sim.stats.chat_requests) == (1, 0)
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items)


async def test_max_wait_with_failing_polls_exits_75_never_lost(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """batch.max_wait_s reached while polls fail: exit 75 with the chunk still tracked."""
    items = urls(10)
    cfg = write_config(tmp_path, items, poll_interval_s=1, max_wait_s=5)
    rule = {"call": "retrieve", "status": 404, "code": "1214", "nth": 1, "count": 0}
    # from the 2nd list call on: the 1st is the run's look for lost batches (no state yet)
    list_rule = {"call": "list", "status": 500, "nth": 2, "count": 0}
    box = await start_batch_sim(control_faults=[rule, list_rule], **SLOW)
    try:
        with pytest.raises(ComeBackLater):
            await run_batch(cfg, box)
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None and isinstance(state.chunks[0], Running)
        assert box.sim.stats.chat_requests == 0
    finally:
        await box.sim.close()


async def test_retry_after_is_kept_on_batch_control_plane_calls(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A 429 with Retry-After: 7 on a poll: the next control-plane call waits 7 s or more
    (the jittered backoff alone would be under 0.01 s; Retry-After is capped at max_delay_s)."""
    items = urls(5)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    data = orjson.loads(cfg.read_bytes())
    data["retry"]["max_delay_s"] = 60  # Retry-After is honoured up to the backoff cap
    cfg.write_bytes(orjson.dumps(data))
    rule = {"call": "retrieve", "status": 429, "code": "1302", "nth": 1}
    box = await start_batch_sim(control_faults=[rule], retry_after_s=7, **SLOW)
    try:
        await run_batch(cfg, box)
        times = [t for kind, t in box.sim.stats.call_times if kind == "retrieve"]
        assert times[1] - times[0] >= 7.0, times
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items)


@pytest.mark.parametrize(
    "rule",
    [
        {"call": "retrieve", "status": 429, "code": "1113", "nth": 1},
        {"call": "create", "status": 401, "code": "1000", "nth": 1},
    ],
    ids=["arrears-on-poll", "401-on-create"],
)
async def test_an_account_stop_on_a_batch_call_ends_the_run_and_sends_nothing(
    tmp_path: Path, start_batch_sim: StartBatchSim, rule: dict[str, Any]
) -> None:
    """1113 or 401 on a batch call: ApiStopped (exit 3), nothing sent through realtime."""
    items = urls(10)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    box = await start_batch_sim(control_faults=[rule], **SLOW)
    try:
        with pytest.raises(ApiStopped) as info:
            await run_batch(cfg, box)
        assert info.value.exit_code == 3
        assert box.sim.stats.chat_requests == 0
    finally:
        await box.sim.close()


# --- path 2: a lost create answer, then a failed lookup ---------------------------------------


@pytest.mark.parametrize(
    "lookup",
    [
        {"status": 400, "code": "1214", "count": 1},
        {"status": 500, "code": "1214", "count": 3},
        {"status": 404, "code": "1214", "count": 2},
    ],
    ids=["400", "500x3", "404x2"],
)
async def test_a_failed_lookup_after_a_lost_create_is_retried_never_rejected(
    tmp_path: Path, start_batch_sim: StartBatchSim, lookup: dict[str, Any]
) -> None:
    """The create is performed but its answer lost; the listing that looks for it fails: it is
    retried until it finds the batch, which is collected; nothing goes to realtime."""
    items = urls(20)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    # the 2nd list call is the lookup (the 1st looks for lost batches: no state yet)
    rules = [{"call": "create", "lose": True, "nth": 1}, {"call": "list", "nth": 2, **lookup}]
    box = await start_batch_sim(control_faults=rules, **SLOW)
    try:
        await run_batch(cfg, box)
        s = box.sim.stats
        assert s.answers_lost == 1 and s.faults_injected == lookup["count"]
        assert (s.batches_created, s.calls["create"], s.chat_requests) == (1, 1, 0)
        assert_paid_once(box.sim, items)
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items)


async def test_a_refused_create_is_confirmed_by_listing_then_sent_another_way(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """A create answered 400 (1210): a listing confirms no batch carries the chunk, and only
    then does the chunk end ``rejected`` and its lines go to realtime."""
    items = urls(8)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    box = await start_batch_sim(
        control_faults=[{"call": "create", "status": 400, "code": "1210", "nth": 1}], **SLOW
    )
    try:
        await run_batch(cfg, box)
        s = box.sim.stats
        # one list call looks for lost batches (no state yet), one confirms the refusal
        assert (s.batches_created, s.calls["list"], s.chat_requests) == (0, 2, 8)
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None
        ended = state.chunks[0].ended  # type: ignore[union-attr]
        assert ended.status == "rejected" and "confirmed" in ended.reason
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items, via="realtime")


# --- path 3: `batches cancel` on a chunk caught mid-create ------------------------------------


@contextlib.asynccontextmanager
async def _killed_at_create(
    tmp_path: Path, start_batch_sim: StartBatchSim, items: list[str], *, before: bool
) -> AsyncIterator[tuple[Path, SimBox]]:
    """A batch job over ``items`` whose run crashed at its create (``before`` it was sent, or
    after), its chunk left ``Creating``; the slow simulator closes when the block ends."""
    box = await start_batch_sim(**SLOW)
    cfg = write_config(tmp_path, items, base_url=box.sim.base_url, poll_interval_s=1)
    try:
        with pytest.raises(Crash):
            await run_batch(
                cfg, box, wrap=lambda c: CrashingClient(c, "create_batch", before=before)
            )
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None and isinstance(state.chunks[0], Creating)
        yield cfg, box
    finally:
        await box.sim.close()


async def test_cancel_of_a_chunk_whose_create_happened_cancels_and_collects_it(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed right after the create was sent: `batches cancel` finds the batch by metadata,
    cancels it remotely; the next run collects its partial results and the rest stays pending
    (never a second batch with the same lines while the first one runs)."""
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test")
    items = urls(30)
    async with _killed_at_create(tmp_path, start_batch_sim, items, before=False) as (cfg, box):
        assert box.sim.stats.batches_created == 1
        lines = await cancel(load(cfg), None)
        assert lines[0].endswith(
            "cancel requested for 1 running batch; 0 chunks not submitted dropped; the next run "
            "collects what they finished, and a later run sends the rest again"
        )
        assert box.sim.stats.batches_cancelled == 1
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None and isinstance(state.chunks[0], Running)
        assert state.chunks[0].cancel_requested
        box.clock.now += 10
        stats = await run_batch(cfg, box)
        s = box.sim.stats
        assert (s.batches_created, s.chat_requests) == (1, 0)
        assert stats.ok == 15 and stats.left_pending == 15  # partial results kept
        assert_paid_once(box.sim, items)
        await run_batch(cfg, box)  # the lines left pending go in a new batch, paid once
        assert max(box.sim.stats.batch_paid.values()) == 1
        assert sum(box.sim.stats.batch_paid.values()) == 30
    assert_all_ok_once(cfg, items)


async def test_cancel_of_a_chunk_whose_create_never_happened_drops_it(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before the create was sent: the listing shows no batch, the chunk is dropped."""
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test")
    async with _killed_at_create(tmp_path, start_batch_sim, urls(10), before=True) as (cfg, box):
        lines = await cancel(load(cfg), None)
        assert lines[0].endswith("0 running batches; 1 chunk not submitted dropped")
        s = box.sim.stats
        # the killed run's look for lost batches (it had no state), then cancel's lookup
        assert (s.batches_created, s.batches_cancelled, s.calls["list"]) == (0, 0, 2)
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None and isinstance(state.chunks[0], Ended)


async def test_cancel_when_the_listing_keeps_failing_keeps_the_chunk_and_exits_75(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing fails every time: the chunk stays Creating and cancel ends with exit 75."""
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test")
    async with _killed_at_create(tmp_path, start_batch_sim, urls(10), before=False) as (cfg, box):
        box.sim.settings.control_faults = [{"call": "list", "status": 500, "nth": 1, "count": 0}]
        with pytest.raises(ComeBackLater):
            await cancel(load(cfg), None)
        state = load_state(state_path(load(cfg).jobs[0]))
        assert state is not None and isinstance(state.chunks[0], Creating)
        # the killed run's look for lost batches, then cancel's: retry.max_attempts
        assert box.sim.stats.calls["list"] == 1 + 3


# --- open points: honest batch records, a fallback that does not stop the polling ------------


async def test_batch_records_carry_latency_from_submission_and_attempts(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """latency_ms runs from the batch's submission to its collection (5 s of simulated batch
    life here); attempts counts the batches a line was in (2 after a rebatch)."""
    items = urls(6)
    cfg = write_config(tmp_path, items, poll_interval_s=1, on_failure="rebatch")
    box = await start_batch_sim(batch_line_faults={items[0]: "500"}, **SLOW)
    try:
        await run_batch(cfg, box)
    finally:
        await box.sim.close()
    recs = latest(read_records(output_path(cfg)))
    first = [recs[u] for u in items[1:]]
    assert all(r["via"] == "batch" and r["attempts"] == 1 for r in first)
    assert all(5000 <= r["latency_ms"] <= 8000 for r in first), [r["latency_ms"] for r in first]
    again = recs[items[0]]  # its line failed (500) in the first batch, then was rebatched
    assert again["attempts"] == 2 and again["status"] == "error"


class _Timeline:
    """Records when polls and realtime requests happen; the second batch runs for a while."""

    def __init__(self, client: Any, box: SimBox):
        self._client = client
        self._box = box
        self.events: list[tuple[str, float]] = []
        self.creates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        self.creates += 1
        if self.creates == 2:
            self._box.sim.settings.batch_in_progress_s = 30.0
        answer: dict[str, Any] = await self._client.create_batch(body)
        return answer

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        self.events.append(("poll", time.monotonic()))
        answer: dict[str, Any] = await self._client.get_batch(batch_id)
        return answer

    async def chat(self, body: bytes) -> dict[str, Any]:
        self.events.append(("chat", time.monotonic()))
        answer: dict[str, Any] = await self._client.chat(body)
        self.events.append(("chat-done", time.monotonic()))
        return answer


async def test_the_realtime_fallback_does_not_stop_polling_other_chunks(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """Chunk 0's lines all fail and go to the realtime fallback (slow answers) while chunk 1
    still runs: chunk 1 keeps being polled during the fallback."""
    items = urls(16)
    cfg = write_config(tmp_path, items, poll_interval_s=1, max_requests_per_file=8)
    faults = {u: "500" for u in items[:8]}
    box = await start_batch_sim(batch_line_faults=faults, latency_mean_s=0.1)
    timeline: list[_Timeline] = []

    def wrap(client: Any) -> Any:
        timeline.append(_Timeline(client, box))
        return timeline[0]

    try:
        await run_batch(cfg, box, wrap=wrap)
    finally:
        await box.sim.close()
    events = timeline[0].events
    chats = [t for kind, t in events if kind.startswith("chat")]
    during = [t for kind, t in events if kind == "poll" and chats[0] < t < chats[-1]]
    assert len(chats) >= 16 and during, "no poll while the fallback was sending"
    recs = latest(read_records(output_path(cfg)))
    assert {recs[u]["via"] for u in items[:8]} == {"realtime"}
    assert {recs[u]["via"] for u in items[8:]} == {"batch"}


async def test_the_batch_writer_is_on_the_second_signal_close_list(
    tmp_path: Path, start_batch_sim: StartBatchSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch job runs (its fallback request hanging here), the job's writer is among
    the writers a second signal flushes and closes before exiting; it leaves the list after."""
    import asyncio
    import io

    import runner.app.orchestrate as orchestrate
    from runner.app.signals import SignalStop
    from runner.config import load_config

    stoppers: list[SignalStop] = []

    class Recorded(SignalStop):
        def __init__(self, grace_s: float):
            super().__init__(grace_s)
            stoppers.append(self)

    monkeypatch.setattr(orchestrate, "SignalStop", Recorded)
    items = urls(4)
    box = await start_batch_sim(
        batch_line_faults={items[0]: "500"}, url_faults={items[0]: ["hang"]}
    )
    cfg = write_config(tmp_path, items, base_url=box.sim.base_url, poll_interval_s=0.01)
    try:
        config = load_config(cfg, environ={"ZHIPUAI_API_KEY": "sk-test"})
        task = asyncio.ensure_future(
            orchestrate.run(config, orchestrate.RunOptions(tty=False), out=io.StringIO())
        )
        for _ in range(1000):
            if box.sim.stats.chat_requests or task.done():
                break
            await asyncio.sleep(0.005)
        assert box.sim.stats.chat_requests == 1 and not task.done()
        paths = [w.path for w in stoppers[0].writers]
        assert paths == [config.jobs[0].output_path]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert stoppers[0].writers == []
    finally:
        await box.sim.close()


@pytest.mark.parametrize(
    "rule",
    [
        {"call": "retrive", "nth": 1},
        {"call": "create", "status": 500},
        {"call": "list", "nth": 1, "stauts": 500},
        "create",
    ],
    ids=["unknown-call", "no-nth-or-rate", "unknown-field", "not-a-mapping"],
)
def test_a_misspelled_control_fault_fails_at_start(rule: Any) -> None:
    """A control fault that would be silently ignored makes a test lie: it is refused."""
    from runner.simulator.settings import settings_from_dict

    with pytest.raises(ValueError, match="control_faults"):
        settings_from_dict({"control_faults": [rule]})


async def test_a_result_file_404_is_asked_again_before_its_lines_are_resent(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """One 404 on the output file's download is retried: the answers are collected from it and
    nothing is sent through realtime."""
    items = urls(10)
    cfg = write_config(tmp_path, items, poll_interval_s=1)
    rule = {"call": "file_content", "status": 404, "code": "1214", "nth": 1}
    box = await start_batch_sim(control_faults=[rule], **SLOW)
    try:
        await run_batch(cfg, box)
        s = box.sim.stats
        assert (s.faults_injected, s.calls["file_content"], s.chat_requests) == (1, 2, 0)
        assert_paid_once(box.sim, items)
    finally:
        await box.sim.close()
    assert_all_ok_once(cfg, items)
