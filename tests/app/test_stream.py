"""A realtime run counts as it sends (runner.app.stream): the first request leaves before the
input is read to its end, the input is read once, and the counts, plan event and summary at
the end are those a counted plan gives; --limit and resumes pay for nothing twice."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.app import stream as stream_module
from runner.app.stream import Stream, lines_after, plan_or_stream
from runner.config import load_config
from runner.core.stats import JobStats
from runner.io import prepare
from runner.simulator import Simulator
from tests.support.configs import ENV, KEY_ENV, make_urls, write_minimal_config
from tests.support.records import read_records
from tests.support.runs import run_config
from tests.support.sim import MakeSim

write_config = write_minimal_config.derive(
    limits={"concurrency": 4}, retry={"max_attempts": 2, "base_delay_s": 0.001}
)


def configure(tmp_path: Path, sim: Simulator, mode: str = "realtime", **over: Any) -> Path:
    api = {"base_url": sim.base_url, "api_key_env": KEY_ENV}
    return write_config(tmp_path, None, api=api, job={"mode": mode}, **over)


def sent(sim: Simulator, before: Counter[str]) -> Counter[str]:
    return Counter(sim.stats.per_url) - before


async def test_the_first_request_leaves_before_the_input_is_read(
    tmp_path: Path, start_sim: MakeSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Order of events, not timing: when the reader reaches the end of a fresh input, the
    simulator has already answered requests; the input is opened once (no counting pass)."""
    sim = await start_sim(latency_mean_s=0.0)
    urls = make_urls(400)
    (tmp_path / "urls.txt").write_text("".join(u + "\n" for u in urls))
    events: list[Any] = []
    real = prepare.read_items

    def reading(*args: Any, **kwargs: Any) -> Iterator[Any]:
        events.append("open")
        yield from real(*args, **kwargs)
        events.append(("end", sim.stats.chat_requests))

    monkeypatch.setattr(prepare, "read_items", reading)
    result, _ = await run_config(configure(tmp_path, sim), ENV)
    assert events[0] == "open" and len(events) == 2, events  # one pass
    assert events[1][1] > 0  # requests answered before the input was read to its end
    assert sim.stats.per_url == Counter(urls)
    stats = result.stats[0]
    assert (stats.ok, stats.total, stats.skipped) == (400, 400, 0)


def mixed_input(done: list[str], failed: str, new: list[str]) -> str:
    lines = [
        "# a comment",
        *done,
        failed,
        "",
        *new[:3],
        new[0],  # a duplicate of a pending line
        done[3],  # a done line again: a duplicate (a URL counts once)
        "ftp://example.test/x.jpg",  # invalid
        "not a url",  # invalid
        "ftp://example.test/x.jpg",  # the same invalid line again: a duplicate
        *new[3:],
        "   ",
    ]
    return "\n".join(lines) + "\n"


async def run_mixed(
    tmp_path: Path, start_sim: MakeSim, caplog: pytest.LogCaptureFixture
) -> tuple[JobStats, str, dict[str, Any], Counter[str]]:
    done = make_urls(12, prefix="https://img.example.test/done")
    failed = "https://img.example.test/refused.jpg"
    new = make_urls(6, prefix="https://img.example.test/new")
    sim = await start_sim(latency_mean_s=0.0, url_faults={failed: ["1301"]})
    config = configure(tmp_path, sim)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in [*done, failed]))
    await run_config(config, ENV)  # 12 ok, 1 permanent error
    urls.write_text(mixed_input(done, failed, new))
    before = Counter(sim.stats.per_url)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="runner"):
        result, out = await run_config(config, ENV)
    plans = [r for r in caplog.records if r.getMessage() == "plan"]
    assert len(plans) == 1
    event = {k: getattr(plans[0], k) for k in ("pending", "done", "route", "why")}
    return result.stats[0], out, event, sent(sim, before)


async def test_counts_and_summary_are_those_of_a_counted_plan(
    tmp_path: Path,
    start_sim: MakeSim,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mixed input (done, failed before, pending, duplicate, invalid, blank and comment
    lines) run streamed and run with today's counted plan: the same stats, plan event,
    summary counts and requests."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    streamed = await run_mixed(tmp_path / "a", start_sim, caplog)
    monkeypatch.setattr(stream_module, "fixed_route", lambda *a: None)  # count first
    counted = await run_mixed(tmp_path / "b", start_sim, caplog)
    fields = ("total", "ok", "errors", "invalid", "skipped", "duplicates", "failed_before")
    s, c = streamed[0], counted[0]
    assert [getattr(s, f) for f in fields] == [getattr(c, f) for f in fields]
    assert [getattr(s, f) for f in fields] == [8, 6, 2, 2, 13, 3, 1]
    assert streamed[1].splitlines()[0] == counted[1].splitlines()[0]
    assert (
        streamed[1]
        .splitlines()[0]
        .startswith(
            "j: ok 6, errors 2 (2 invalid lines), skipped 13 done before, 3 duplicate lines"
        )
    )
    assert streamed[2] == counted[2]
    assert streamed[2]["pending"] == 6 and streamed[2]["done"] == 13
    assert streamed[3] == counted[3] and sum(streamed[3].values()) == 6


async def test_a_limited_resume_counts_the_whole_input_and_pays_once(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """--limit stops sending, not counting: the summary counts every line of the input; the
    next runs send the rest, each URL once, then nothing."""
    sim = await start_sim(latency_mean_s=0.0)
    config = configure(tmp_path, sim)
    old, new = make_urls(50), make_urls(20, start=50)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in old))
    await run_config(config, ENV)
    with open(urls, "a") as handle:
        handle.writelines(u + "\n" for u in [*new, "ftp://x.test/a.jpg"])
    before = Counter(sim.stats.per_url)
    result, out = await run_config(config, ENV, limit=3)
    first = sent(sim, before)
    assert sum(first.values()) == 3 and max(first.values()) == 1
    stats = result.stats[0]
    assert (stats.skipped, stats.total, stats.ok) == (50, 3 + 1, 3)
    before = Counter(sim.stats.per_url)
    await run_config(config, ENV)
    assert first + sent(sim, before) == Counter(new)
    before = Counter(sim.stats.per_url)
    result, out = await run_config(config, ENV)
    assert sent(sim, before) == Counter()
    assert out.startswith("j: nothing to do — 71 done (1 with permanent errors")
    assert len({r["url"] for r in read_records(tmp_path / "out.jsonl")}) == 71


async def test_mode_auto_streams_below_the_threshold_and_counts_above(
    tmp_path: Path, start_sim: MakeSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In mode auto a list of at most batch.threshold lines (after the finished prefix) is
    realtime whatever the count: streamed; a longer one is counted first (it may be a batch)."""
    sim = await start_sim(latency_mean_s=0.0)
    passes: list[str] = []
    real = stream_module.count_plan
    monkeypatch.setattr(
        stream_module, "count_plan", lambda *a, **k: passes.append("count") or real(*a, **k)
    )
    (tmp_path / "urls.txt").write_text("".join(u + "\n" for u in make_urls(10)))
    config = configure(tmp_path, sim, mode="auto", batch={"threshold": 10})
    result, _ = await run_config(config, ENV)
    assert passes == [] and result.stats[0].ok == 10
    with open(tmp_path / "urls.txt", "a") as handle:
        handle.writelines(u + "\n" for u in make_urls(11, start=10))  # 21 lines, 11 pending
    result, _ = await run_config(config, ENV)
    assert passes == ["count"] and result.stats[0].ok == 11


@pytest.mark.parametrize("at_once", [1000, 5], ids=["counted-at-once", "counted-in-a-thread"])
def test_the_total_while_reading_is_a_falling_upper_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_once: int
) -> None:
    """Blank lines, comments and duplicates make the line count too high: the total shown
    never rises, never falls below the truth, and is exact at the end. A long input's lines
    are counted on in a thread: until then the total is what the first count found."""
    monkeypatch.setattr(stream_module, "COUNTED_AT_ONCE", at_once)
    monkeypatch.setattr(stream_module, "MAX_SKIPPED", 0)
    monkeypatch.setattr(threading.Thread, "start", lambda self: None)  # counted below
    urls = make_urls(30)
    lines = [*urls[:10], "", "# c", urls[0], *urls[10:20], urls[5], "", *urls[20:]]
    (tmp_path / "urls.txt").write_text("\n".join(lines))  # no newline at the end
    assert lines_after(tmp_path / "urls.txt", 0) == len(lines)
    path = write_config(tmp_path, None, job={"mode": "realtime"}, batch={"threshold": 1})
    config = load_config(path, environ=ENV)
    stream = plan_or_stream(config.jobs[0], config, threading.Event(), keep=0, limit=None)
    assert isinstance(stream, Stream)
    stats = stream.new_stats()
    assert stats.total > min(len(lines) - 1, at_once)  # what lines_after found by then
    stream.count_lines()
    stats = stream.new_stats()
    shown = [stats.total]
    for _ in stream.pairs(stats):
        shown.append(stats.total)
    assert stream.complete and shown[-1] == 30 == stats.total
    assert shown[0] == len(lines)
    assert all(a >= b >= 30 for a, b in zip(shown, shown[1:], strict=False))


async def test_a_long_finished_history_without_a_note_is_counted_off_the_loop(
    tmp_path: Path, start_sim: MakeSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamed reader skips finished lines on the event loop: with more finished keys
    than MAX_SKIPPED and as many lines left to read, the input is counted first, in the
    planning thread; with the input's finished prefix noted, only its tail is read: streamed."""
    monkeypatch.setattr(stream_module, "MAX_SKIPPED", 5)
    passes: list[str] = []
    real = stream_module.count_plan
    monkeypatch.setattr(
        stream_module, "count_plan", lambda *a, **k: passes.append("count") or real(*a, **k)
    )
    sim = await start_sim(latency_mean_s=0.0)
    config = configure(tmp_path, sim)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in make_urls(10)))
    await run_config(config, ENV)  # fresh: streamed
    assert passes == []

    async def append_and_run(start: int, n: int) -> None:
        with open(urls, "a") as handle:
            handle.writelines(u + "\n" for u in make_urls(n, start=start))
        before = Counter(sim.stats.per_url)
        await run_config(config, ENV)
        assert sent(sim, before) == Counter(make_urls(n, start=start))

    await append_and_run(10, 3)  # no prefix noted yet (none was finished): 13 lines read
    assert passes == ["count"]
    await append_and_run(13, 2)  # 2 lines after the noted prefix: streamed
    assert passes == ["count"]
    (tmp_path / "out.jsonl.resume-plan").unlink()  # no note: 17 lines, 15 finished keys
    await append_and_run(15, 2)
    assert passes == ["count", "count"]
