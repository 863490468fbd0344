"""The realtime engine end to end on the loopback simulator, with an injected sleep."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.simulator import Simulator, expected_content
from tests.engine.conftest import EngineRunner
from tests.support.configs import make_urls
from tests.support.records import latest


def assert_ok_and_matching(records: list[dict], urls: list[str]) -> None:
    final = latest(records)
    assert sorted(final) == sorted(urls)
    for url, record in final.items():
        assert record["status"] == "ok", record
        assert record["content"] == expected_content(url)
        assert record["via"] == "realtime"


async def test_all_ok_records_have_the_documented_shape(
    run_engine: EngineRunner, sim: Simulator
) -> None:
    """Every URL gets one ok record with content, usage, model, attempts, latency, id and
    finished_at."""
    urls = make_urls(30)
    run = await run_engine(urls)
    assert len(run.records) == 30
    assert_ok_and_matching(run.records, urls)
    record = run.records[0]
    assert set(record) >= {
        "url",
        "status",
        "content",
        "finish_reason",
        "usage",
        "model",
        "via",
        "attempts",
        "latency_ms",
        "id",
        "finished_at",
    }
    assert (
        record["finish_reason"] == "stop"
        and record["model"] == "glm-4v-flash"
        and record["attempts"] == 1
    )
    assert run.stats.ok == 30 and run.stats.requests == 30 and run.stats.retries == 0
    assert run.stats.prompt_tokens > 0 and run.stats.completion_tokens == 30 * 20
    assert sim.stats.chat_requests == 30 and run.sleeps == []


@pytest.mark.parametrize("fault", ["500", "429", "drop", "badjson", "nochoices", "network_error"])
async def test_retry_class_recovers(run_engine: EngineRunner, sim: Simulator, fault: str) -> None:
    """A transient failure is retried after a backoff and the URL ends ok on the third attempt."""
    urls = make_urls(6)
    sim.settings.url_faults = {urls[2]: [fault, fault]}
    run = await run_engine(urls)
    assert_ok_and_matching(run.records, urls)
    assert len(run.records) == 6
    assert run.by_url()[urls[2]]["attempts"] == 3
    assert sim.stats.per_url[urls[2]] == 3
    assert run.stats.retries == 2 and run.stats.requests == 8
    assert len(run.sleeps) == 2
    assert 0 <= run.sleeps[0] <= 0.5 and 0 <= run.sleeps[1] <= 1.0  # full jitter, base 0.5 s
    if fault == "429":
        assert run.stats.throttled == 2
        assert all(s >= 0.25 for s in run.sleeps)  # throttled floor: base / 2


async def test_timeout_is_retried(run_engine: EngineRunner, sim: Simulator) -> None:
    """A request that never answers times out (api.timeout_s) and is retried."""
    urls = make_urls(3)
    sim.settings.url_faults = {urls[0]: ["hang"]}
    run = await run_engine(urls, timeout_s=0.2)
    assert_ok_and_matching(run.records, urls)
    assert run.by_url()[urls[0]]["attempts"] == 2 and len(run.sleeps) == 1


@pytest.mark.parametrize(
    ("fault", "code"),
    [("1301", "1301"), ("1261", "1261"), ("1210", "1210"), ("sensitive", "sensitive")],
)
async def test_permanent_failure_is_recorded_not_retried(
    run_engine: EngineRunner, sim: Simulator, fault: str, code: str
) -> None:
    """A permanent failure writes an error record (retryable false), is sent once, and the next run
    skips it."""
    urls = make_urls(5)
    sim.settings.url_faults = {urls[1]: [fault]}
    run = await run_engine(urls)
    bad = run.by_url()[urls[1]]
    assert bad["status"] == "error"
    assert (
        bad["error"]["code"] == code
        and bad["error"]["retryable"] is False
        and bad["error"]["message"]
    )
    assert bad["attempts"] == 1 and "content" not in bad
    assert sim.stats.per_url[urls[1]] == 1 and run.sleeps == []
    assert run.stats.errors == 1 and run.stats.ok == 4
    again = await run_engine(urls)
    assert sim.stats.per_url[urls[1]] == 1 and sim.stats.chat_requests == 5
    assert again.counts.done == 5 and again.counts.failed == 1 and again.stats.requests == 0


@pytest.mark.parametrize(
    ("fault", "code"), [("1113", "1113"), ("401", "1000")], ids=["arrears-429", "auth-401"]
)
async def test_fatal_stops_the_run_after_in_flight_finish(
    run_engine: EngineRunner, sim: Simulator, fault: str, code: str
) -> None:
    """A fatal code stops the run: never retried, in-flight requests finish and are written, nothing
    new starts."""
    urls = make_urls(200)
    sim.settings.latency_mean_s = 0.02
    fatal = urls[20]
    sim.settings.url_faults = {fatal: [fault]}
    run = await run_engine(urls, concurrency=8)
    assert run.stopped is not None
    assert run.stopped.code == code and run.stopped.exit_code == 3
    assert f"code {code}" in str(run.stopped)
    assert sim.stats.per_url[fatal] == 1 and run.sleeps == []
    answered = {u for u in sim.stats.per_url if u != fatal}
    assert {r["url"] for r in run.records} == answered  # every request in flight got its record
    assert all(r["status"] == "ok" for r in run.records)
    assert fatal not in run.by_url()  # no record: the next run tries it again
    assert sim.stats.chat_requests < 60  # the feeder stopped


async def test_retry_after_is_honoured(run_engine: EngineRunner, sim: Simulator) -> None:
    """A 429 with Retry-After: 2.5 makes the engine wait exactly 2.5 s before the retry."""
    urls = make_urls(3)
    sim.settings.retry_after_s = 2.5
    sim.settings.url_faults = {urls[0]: ["429"]}
    run = await run_engine(urls)
    assert run.sleeps == [2.5]
    assert_ok_and_matching(run.records, urls)


async def test_attempts_exhausted_is_retryable_and_retried_next_run(
    run_engine: EngineRunner, sim: Simulator
) -> None:
    """When attempts run out the error record says retryable: true and the next run sends that URL
    again."""
    urls = make_urls(4)
    sim.settings.url_faults = {urls[3]: ["500", "500", "500"]}
    run = await run_engine(urls, max_attempts=3)
    bad = run.by_url()[urls[3]]
    assert bad["status"] == "error" and bad["attempts"] == 3
    assert bad["error"] == {
        "code": "500",
        "message": "HTTP 500: Internal error (simulated)",
        "retryable": True,
    }
    assert len(run.sleeps) == 2
    sim.reset_stats()
    again = await run_engine(urls, max_attempts=3)
    assert dict(sim.stats.per_url) == {urls[3]: 1}
    assert latest(again.records)[urls[3]]["status"] == "ok"
    assert_ok_and_matching(again.records, urls)


async def test_in_flight_never_above_concurrency(run_engine: EngineRunner, sim: Simulator) -> None:
    """The simulator never sees more requests at once than limits.concurrency."""
    sim.settings.latency_mean_s = 0.01
    sim.settings.latency_spread_s = 0.005
    urls = make_urls(300)
    run = await run_engine(urls, concurrency=8)
    assert_ok_and_matching(run.records, urls)
    assert 4 <= sim.stats.max_in_flight_seen <= 8


async def test_in_flight_limit_holds_under_retries(
    run_engine: EngineRunner, sim: Simulator
) -> None:
    """Retries and throttling do not let more than limits.concurrency requests out at once."""
    sim.settings.error_500_rate = 0.2
    sim.settings.error_429_rate = 0.1
    urls = make_urls(200)
    run = await run_engine(urls, concurrency=6, max_attempts=12)
    assert_ok_and_matching(run.records, urls)
    assert sim.stats.max_in_flight_seen <= 6
    assert run.stats.retries == sim.stats.chat_requests - 200 > 0


async def test_rpm_paces_request_starts(run_engine: EngineRunner, sim: Simulator) -> None:
    """limits.rpm spaces request starts evenly: 30 starts at 12000/min take at least 29 * 5 ms."""
    sim.settings.latency_mean_s = 0.0
    urls = make_urls(30)
    started = time.monotonic()
    run = await run_engine(urls, concurrency=16, rpm=12_000)
    elapsed = time.monotonic() - started
    assert_ok_and_matching(run.records, urls)
    assert elapsed >= 29 * 0.005 * 0.9


async def test_invalid_lines_become_records(
    run_engine: EngineRunner, sim: Simulator, tmp_path: Path
) -> None:
    """Invalid input lines get invalid_input error records (permanent) and the run goes on."""
    urls = make_urls(3)
    run = await run_engine([urls[0], "ftp://x/y.jpg", urls[1], "not a url", urls[2], urls[0]])
    final = latest(run.records)
    assert final["ftp://x/y.jpg"]["error"]["code"] == "invalid_input"
    assert final["ftp://x/y.jpg"]["error"]["retryable"] is False
    assert "line 2" in final["ftp://x/y.jpg"]["error"]["message"]
    assert final["not a url"]["status"] == "error"
    assert [u for u in final if final[u]["status"] == "ok"] == urls
    assert sim.stats.chat_requests == 3 and run.counts.duplicates == 1


async def test_server_concurrency_limit_is_throttled_and_recovered(
    run_engine: EngineRunner, sim: Simulator
) -> None:
    """Above the account's concurrency the API answers 429/1302; the engine backs off and every URL
    ends ok."""
    sim.settings.max_in_flight = 3
    urls = make_urls(60)
    run = await run_engine(urls, concurrency=6, max_attempts=50)
    assert_ok_and_matching(run.records, urls)
    assert sim.stats.throttled > 0 and run.stats.throttled == sim.stats.throttled
    assert sim.stats.max_in_flight_seen <= 3
    assert all(s >= 0.25 for s in run.sleeps)  # throttled backoff floor (base_delay_s / 2)
