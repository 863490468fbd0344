"""The output store: resume index, torn-tail repair, corrupt lines, the writer, the run lock."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import orjson
import pytest

from runner.core.keys import key_hash
from runner.core.records import dumps, error_record, ok_record
from runner.errors import RunLocked
from runner.io.store import ResultWriter, RunLock, load_resume_index
from tests.support.records import read_records

A, B, C, D = (f"https://img.example.test/{n}.jpg" for n in "abcd")
ANSWER = {
    "id": "1",
    "model": "m",
    "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
    "usage": {},
}


def ok(url: str) -> bytes:
    return dumps(ok_record(url, ANSWER, via="realtime", attempts=1, latency_ms=5))


def err(url: str, retryable: bool) -> bytes:
    return dumps(error_record(url, "1301", "bad", retryable=retryable, via="realtime", attempts=1))


def test_latest_record_wins(tmp_path: Path) -> None:
    """The latest record per URL decides: ok after error is done, retryable error after ok is
    pending."""
    out = tmp_path / "o.jsonl"
    out.write_bytes(err(A, True) + ok(A) + ok(B) + err(B, True) + err(C, False) + err(D, True))
    index = load_resume_index(out)
    assert index.records == 6
    assert index.is_done(key_hash(A))
    assert not index.is_done(key_hash(B)) and key_hash(B) in index.sets()[2]
    assert index.is_done(key_hash(C)) and key_hash(C) in index.sets()[1]
    assert not index.is_done(key_hash(D))


def test_missing_output_is_empty(tmp_path: Path) -> None:
    """No output file yet means nothing is done."""
    index = load_resume_index(tmp_path / "none.jsonl")
    assert index.records == 0 and index.empty


def test_torn_last_line_tolerated_and_repaired(tmp_path: Path) -> None:
    """A torn last line is ignored by the loader and cut by the writer, so the next record starts on
    its own line."""
    out = tmp_path / "o.jsonl"
    out.write_bytes(ok(A) + ok(B) + ok(C)[:25])
    index = load_resume_index(out)
    assert index.records == 2 and not index.is_done(key_hash(C))
    writer = ResultWriter(out)
    writer.append(orjson.loads(ok(C)))
    writer.close()
    assert [r["url"] for r in read_records(out)] == [A, B, C]
    assert out.read_bytes().endswith(b"\n")


def test_torn_only_line(tmp_path: Path) -> None:
    """A file holding only a torn line is truncated to empty before the first append."""
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"url": "htt')
    assert load_resume_index(out).records == 0
    with_writer = ResultWriter(out)
    with_writer.close()
    assert out.read_bytes() == b""


def test_corrupt_middle_line_reported_and_skipped(tmp_path: Path) -> None:
    """A middle line that is not a JSON record is reported by line number and the others still
    load."""
    out = tmp_path / "o.jsonl"
    out.write_bytes(ok(A) + b"this is not json\n" + ok(B) + b"[1, 2]\n" + ok(C))
    index = load_resume_index(out)
    assert index.corrupt_lines == [2, 4]
    assert index.records == 3
    assert all(index.is_done(key_hash(u)) for u in (A, B, C))


def test_many_bad_lines_are_warned_a_few_then_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fifty lines that are not records: three warnings naming lines, then one saying more
    follow, not fifty; every one is still collected and skipped."""
    out = tmp_path / "o.jsonl"
    out.write_bytes(ok(A) + b"".join(b"garbage %d\n" % i for i in range(50)) + ok(B))
    with caplog.at_level("WARNING", logger="runner"):
        index = load_resume_index(out)
    assert index.corrupt_lines == list(range(2, 52)) and index.records == 2
    assert [(r.getMessage(), getattr(r, "line", None)) for r in caplog.records] == [
        ("skipped a line that is not a JSON record", 2),
        ("skipped a line that is not a JSON record", 3),
        ("skipped a line that is not a JSON record", 4),
        ("more lines that are not JSON records skipped; not listed", None),
    ]


def test_newer_records_with_extra_fields_are_accepted(tmp_path: Path) -> None:
    """Records from a newer glmrun with unknown fields, and keyed records, still count."""
    out = tmp_path / "o.jsonl"
    newer = {
        "url": A,
        "status": "ok",
        "content": "x",
        "shiny_new_field": {"a": [1]},
        "via": "batch",
    }
    keyed = {"url": B, "key": "item-7", "status": "ok"}
    out.write_bytes(orjson.dumps(newer) + b"\n" + orjson.dumps(keyed) + b"\n")
    index = load_resume_index(out)
    assert index.is_done(key_hash(A))
    assert index.is_done(key_hash("item-7")) and not index.is_done(key_hash(B))


async def test_writer_hands_records_to_the_os_each_loop_turn(tmp_path: Path) -> None:
    """Inside a loop, appended records reach the file by the next loop turn (a kill -9 then loses
    none)."""
    out = tmp_path / "o.jsonl"
    writer = ResultWriter(out)
    try:
        writer.append(orjson.loads(ok(A)))
        writer.append(orjson.loads(ok(B)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [r["url"] for r in read_records(out)] == [A, B]
    finally:
        writer.close()


def test_writer_close_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """close() fsyncs the output once, so the records survive a power cut after exit."""
    out = tmp_path / "o.jsonl"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    writer = ResultWriter(out)
    writer.append(orjson.loads(ok(A)))
    writer.close()
    writer.close()
    assert len(synced) == 1
    assert read_records(out)[0]["url"] == A


def test_run_lock_second_acquire_names_pid(tmp_path: Path) -> None:
    """A second lock on the same output raises RunLocked naming the holder's pid; release frees
    it."""
    out = tmp_path / "o.jsonl"
    first = RunLock(out)
    first.acquire()
    try:
        with pytest.raises(
            RunLocked,
            match=rf"^{re.escape(str(out))} is in use by another glmrun run \(pid {os.getpid()}, "
            r"since \d\d:\d\d:\d\d, \d+s ago\); try again once it has finished$",
        ):
            RunLock(out).acquire()
    finally:
        first.release()
    with RunLock(out):
        pass


def test_run_lock_says_since_when_the_holder_has_held_it(tmp_path: Path) -> None:
    """A lock held for days reads as such (a hung cron run), with the date; fresh ones as time."""
    out = tmp_path / "o.jsonl"
    with RunLock(out) as lock:
        since = lock.path.stat().st_mtime
        assert lock.describe_holder(now=since + 192).endswith(
            f"(pid {os.getpid()}, since "
            f"{time.strftime('%H:%M:%S', time.localtime(since))}, 3m12s ago)"
        )
        held = lock.describe_holder(now=since + 3 * 86400 + 4 * 3600)
        assert held.endswith(
            f"since {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}, 3d04h ago)"
        )
        assert str(out) in held
