"""Resuming from the noted input prefix (planned before its check ends) never skips a URL
that is not done and never sends one twice, whatever changed the input or the output in
between: each case counts the simulator's requests per URL over whole in-process runs."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from runner.io import plancache
from runner.simulator import Simulator
from tests.support.configs import ENV, KEY_ENV, make_urls, write_minimal_config
from tests.support.records import read_records
from tests.support.runs import run_config
from tests.support.sim import INSTANT_BATCHES, MakeSim

OLD = make_urls(300, prefix="https://img.example.test/old")
NEW = make_urls(20, prefix="https://img.example.test/new")
write_config = write_minimal_config.derive(
    limits={"concurrency": 8}, retry={"max_attempts": 3, "base_delay_s": 0.001}
)


class Box:
    """A job on urls.txt -> out.jsonl against one simulator; ``run`` returns the requests per
    URL of that run alone."""

    def __init__(self, tmp_path: Path, sim: Simulator):
        self.dir, self.sim = tmp_path, sim
        self.urls, self.out = tmp_path / "urls.txt", tmp_path / "out.jsonl"
        self.config = self.configure("realtime")

    def configure(self, mode: str) -> Path:
        api = {"base_url": self.sim.base_url, "api_key_env": KEY_ENV}
        return write_config(
            self.dir, None, api=api, batch={"poll_interval_s": 0}, job={"mode": mode}
        )

    async def run(self, **options: Any) -> Counter[str]:
        """Requests per URL in this run: realtime ones and batch lines paid alike."""
        stats = self.sim.stats
        before = Counter(stats.per_url) + Counter(stats.batch_paid)
        await run_config(self.config, ENV, **options)
        return Counter(stats.per_url) + Counter(stats.batch_paid) - before

    def write(self, urls: list[str]) -> None:
        self.urls.write_text("".join(u + "\n" for u in urls))

    def append(self, urls: list[str]) -> None:
        with open(self.urls, "a") as handle:
            handle.writelines(u + "\n" for u in urls)

    def all_done(self, urls: list[str]) -> None:
        """The latest record of every URL is ok."""
        status = {r["url"]: r["status"] for r in read_records(self.out)}
        assert all(status.get(u) == "ok" for u in urls), [u for u in urls if status.get(u) != "ok"]


@pytest.fixture
async def box(tmp_path: Path, start_sim: MakeSim) -> Box:
    """OLD all sent and done, the index and the input note written, and checked to be used."""
    b = Box(tmp_path, await start_sim(**INSTANT_BATCHES))
    b.write(OLD)
    assert await b.run() == Counter(OLD)
    b.append(NEW[:1])
    assert await b.run() == Counter(NEW[:1])
    assert plancache.cache_path(b.out).exists()
    return b


def _same_length_edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) in place, keeping the mtime."""
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    assert data.count(old.encode()) == 1
    with open(path, "r+b") as handle:
        handle.seek(data.index(old.encode()))
        handle.write(new.encode())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


FIXED = "https://img.example.test/fix/00150.jpg"  # as long as OLD[150]


def edit_prefix(b: Box) -> list[str]:
    _same_length_edit(b.urls, OLD[150], FIXED)
    b.append(NEW[1:])
    return [FIXED, *NEW[1:]]


def truncate_input(b: Box) -> list[str]:
    b.write(OLD[:100] + NEW[1:5])  # shorter than the noted prefix
    return NEW[1:5]


def replace_input(b: Box) -> list[str]:
    tmp = b.dir / "urls.new"
    tmp.write_text("".join(u + "\n" for u in [*OLD[:200], FIXED, *OLD[200:], *NEW[1:]]))
    os.replace(tmp, b.urls)  # a new file: one URL inserted in the middle
    return [FIXED, *NEW[1:]]


def truncate_output(b: Box) -> list[str]:
    lines = b.out.read_bytes().splitlines(keepends=True)
    b.out.write_bytes(b"".join(lines[:-40]))  # the last 40 records are gone
    b.append(NEW[1:])
    return [orjson.loads(line)["url"] for line in lines[-40:]] + NEW[1:]


def edit_output(b: Box) -> list[str]:
    lines = b.out.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[120])
    record.update(status="error", error={"code": "server_error", "retryable": True})
    lines[120] = orjson.dumps(record) + b"\n"
    b.out.write_bytes(b"".join(lines))  # rewritten in place: a done key became unfinished
    b.append(NEW[1:])
    return [record["url"], *NEW[1:]]


def append_output(b: Box) -> list[str]:
    with open(b.out, "ab") as handle:  # another tool: one old key undone, one new key done
        undone = {"url": OLD[7], "status": "error", "error": {"retryable": True}}
        handle.write(orjson.dumps(undone) + b"\n")
        handle.write(orjson.dumps({"url": NEW[3], "status": "ok", "content": "x"}) + b"\n")
    b.append(NEW[1:])
    return [OLD[7], *NEW[1:3], *NEW[4:]]


def crash_before_the_note(b: Box) -> list[str]:
    """A run killed after sending, before the index and the note were brought up to date:
    its records are in the output, after the persistent index."""
    with open(b.out, "ab") as handle:
        for url in NEW[1:10]:
            handle.write(orjson.dumps({"url": url, "status": "ok", "content": "c"}) + b"\n")
    b.append(NEW[1:])
    return NEW[10:]


@pytest.mark.parametrize(
    "change",
    [
        edit_prefix,
        truncate_input,
        replace_input,
        truncate_output,
        edit_output,
        append_output,
        crash_before_the_note,
    ],
    ids=lambda f: f.__name__,
)
async def test_each_change_sends_exactly_what_is_not_done(
    box: Box, change: Callable[[Box], list[str]]
) -> None:
    """After the change, one run sends exactly the URLs not done, each once; the next run
    sends nothing and every URL of the input has one ok record."""
    expected = change(box)
    assert await box.run() == Counter(expected)
    assert await box.run() == Counter()
    box.all_done([u for u in box.urls.read_text().split("\n") if u])


async def test_a_wrong_guess_sends_the_tail_first_and_the_rest_once(
    box: Box, caplog: pytest.LogCaptureFixture
) -> None:
    """A same-length edit of a finished line (mtime kept) with new lines appended: the run
    sends the new lines at once, learns from the check that the prefix changed, reads the
    whole input and sends the edited line; nothing is sent twice and the note is rewritten."""
    expected = edit_prefix(box)
    with caplog.at_level(logging.WARNING):
        assert await box.run() == Counter(expected)
    assert "the input changed before the noted prefix" in caplog.text
    note = orjson.loads(plancache.cache_path(box.out).read_bytes())
    assert note["offset"] == box.urls.read_bytes().index(FIXED.encode())  # noted again
    assert await box.run() == Counter()
    box.all_done(OLD[:150] + [FIXED] + OLD[151:] + NEW)


async def test_an_unchanged_input_is_proven_by_its_stat(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a quiet stat noted, an unchanged input is not read before sending; an in-place
    edit of the same length with the mtime put back still changes ctime and is seen."""
    monkeypatch.setattr(plancache, "QUIET_NS", 0)
    box.append(NEW[1:2])
    assert await box.run() == Counter(NEW[1:2])
    assert await box.run() == Counter()  # notes the longer prefix with the stat
    assert orjson.loads(plancache.cache_path(box.out).read_bytes())["input_stat"] is not None
    reads: list[int] = []
    real = plancache._input_hash
    monkeypatch.setattr(plancache, "_input_hash", lambda *a: reads.append(a[1]) or real(*a))
    assert await box.run() == Counter()
    assert reads == []  # proven by the stat: the prefix was not hashed
    _same_length_edit(box.urls, OLD[150], FIXED)
    assert await box.run() == Counter([FIXED])


async def test_a_batch_run_waits_for_the_check_and_plans_it_all_when_it_fails(
    box: Box, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch costs minutes and is routed on the pending count, so a batch run checks the
    prefix before it builds anything: after the same-length edit, one batch carries the edited
    line and the new ones, each once."""
    box.config = box.configure("batch")
    expected = edit_prefix(box)
    with caplog.at_level(logging.WARNING):
        assert await box.run() == Counter(expected)
    assert "the input changed before the noted prefix" in caplog.text
    assert await box.run() == Counter()
    box.all_done(OLD[:150] + [FIXED] + OLD[151:] + NEW)


@pytest.mark.parametrize("limit", [5, 25], ids=["limit-in-the-tail", "limit-past-the-tail"])
async def test_a_wrong_guess_keeps_to_the_limit(box: Box, limit: int) -> None:
    """With ``--limit``, the items sent before and after a wrong guess together stay within
    it, and the next runs send the rest, each URL once."""
    expected = edit_prefix(box)
    first = await box.run(limit=limit)
    assert sum(first.values()) == min(limit, len(expected)) and max(first.values()) == 1
    rest = await box.run()
    assert first + rest == Counter(expected)
    assert await box.run() == Counter()


async def test_a_wrong_guess_in_mode_auto_routes_the_rest_by_its_size(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """Mode auto: the guessed plan (2 new lines after the noted prefix) goes realtime; the
    check then finds the list replaced by 300 other URLs. Those are routed as auto routes any
    300 (the batch threshold is 50): by batch, at the batch price, not realtime at twice it.
    Each URL is paid once."""
    sim = await start_sim(**INSTANT_BATCHES)
    b = Box(tmp_path, sim)
    api = {"base_url": sim.base_url, "api_key_env": KEY_ENV}
    b.config = write_config(
        b.dir, None, api=api, batch={"poll_interval_s": 0, "threshold": 50}, job={"mode": "auto"}
    )
    b.write(OLD)
    assert await b.run() == Counter(OLD)  # 300: by batch
    b.append(NEW[:1])
    assert await b.run() == Counter(NEW[:1])  # 1: realtime, and the prefix is noted
    other = make_urls(300, prefix="https://img.example.test/oth")  # as long as OLD's lines
    tmp = b.dir / "urls.new"
    tmp.write_text("".join(u + "\n" for u in [*other, *NEW[:3]]))
    os.replace(tmp, b.urls)  # a new file, the same length up to the noted offset
    realtime_before = Counter(sim.stats.per_url)
    batch_before = Counter(sim.stats.batch_paid)
    assert await b.run() == Counter([*other, *NEW[1:3]])
    assert Counter(sim.stats.per_url) - realtime_before == Counter(NEW[1:3])
    assert Counter(sim.stats.batch_paid) - batch_before == Counter(other)
    assert await b.run() == Counter()
    b.all_done([*other, *NEW[:3]])
