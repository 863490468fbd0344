"""The noted finished prefix of a text input changes how much is read, never the plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.core.plan import PendingCounts, count_pending, done_line_filter
from runner.io import inputs, keyindex
from runner.io.inputs import TextPrefix, read_items
from runner.io.plancache import cache_path, load_prefix, save_prefix
from runner.io.store import load_resume_index, save_resume_index
from tests.support.resume import line_for

URLS = [f"https://a/{i:04d}.jpg" for i in range(100)]


def plan(out: Path, urls: Path, *, noted: bool = True) -> tuple[list[str], int, int, int]:
    """(pending keys, done, failed, where reading started) as ``planning.plan_job`` plans."""
    index = load_resume_index(out, save=True)
    skipped = PendingCounts()
    prefix = load_prefix(out, urls, index) if noted else TextPrefix()
    start, start_done, start_failed = prefix.offset, prefix.done, prefix.failed
    counts = count_pending(
        read_items(urls, skip=done_line_filter(index, skipped), prefix=prefix), index, keep=1000
    )
    save_prefix(out, urls, prefix, index)
    assert counts.kept is not None
    done = counts.done + skipped.done + start_done
    pending = [item.key for _, item in counts.kept]
    return pending, done, counts.failed + skipped.failed + start_failed, start


def send(out: Path, keys: list[str], kind: str = "ok") -> None:
    with open(out, "ab") as handle:
        handle.writelines(line_for(kind, k, None) for k in keys)
    save_resume_index(out)


def test_a_growing_list_is_read_from_where_it_was_all_done(tmp_path: Path) -> None:
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in URLS[:50]) + "# c\n\n")
    send(out, URLS[:40])
    send(out, [URLS[3]], "final")  # done, as an error
    pending, done, failed, start = plan(out, urls)
    assert (pending, done, failed, start) == (URLS[40:50], 40, 1, 0)
    send(out, pending)
    with open(urls, "a") as handle:
        handle.write("".join(u + "\n" for u in URLS[50:60]))
    pending, done, failed, start = plan(out, urls)
    assert start > 0 and (pending, done, failed) == (URLS[50:60], 50, 1)
    assert plan(out, urls, noted=False)[:3] == (pending, done, failed)


def test_an_edited_input_prefix_is_read_again(tmp_path: Path) -> None:
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in URLS[:30]))
    send(out, URLS[:30])
    assert plan(out, urls)[0] == []
    st = urls.stat()
    urls.write_text(urls.read_text().replace(URLS[7], URLS[97]))  # same length, in the prefix
    os.utime(urls, ns=(st.st_atime_ns, st.st_mtime_ns))
    pending, _, _, start = plan(out, urls)
    assert start == 0 and pending == [URLS[97]]


def test_a_done_key_made_unfinished_by_another_tool_is_sent_again(tmp_path: Path) -> None:
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in URLS[:30]))
    send(out, URLS[:30])
    assert plan(out, urls)[0] == []
    with open(out, "ab") as handle:  # appended after the index, not through glmrun
        handle.write(line_for("retryable", URLS[11], None))
    pending, _, _, start = plan(out, urls)
    assert start == 0 and pending == [URLS[11]]
    send(out, [URLS[12]], "retryable")  # this time the index is brought up to date first
    pending, _, _, start = plan(out, urls)
    assert start == 0 and pending == [URLS[11], URLS[12]]


def test_an_edit_far_into_a_big_prefix_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte of the noted prefix is checked, not samples of it: with the output
    fingerprint made to sample beyond 1 KiB (as it does beyond 32 MiB), a same-length edit
    of one URL in the middle of the finished part, mtime kept, is read again and sent; a
    sampled input check would skip it as done (the line it replaced was)."""
    monkeypatch.setattr(keyindex, "FULL_HASH_BYTES", 1024)
    monkeypatch.setattr(keyindex, "_EDGE", 256)
    monkeypatch.setattr(keyindex, "_SAMPLES", 1)
    monkeypatch.setattr(keyindex, "_BLOCK", 16)
    many = [f"https://a/{i:05d}.jpg" for i in range(400)]
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in many))
    assert urls.stat().st_size > 4 * 1024
    send(out, many)
    assert plan(out, urls)[0] == []
    assert plan(out, urls)[3] == urls.stat().st_size  # the note covers the whole input
    st = urls.stat()
    fixed = "https://b/00200.jpg"  # same length as the URL it replaces
    urls.write_text(urls.read_text().replace(many[200], fixed))
    os.utime(urls, ns=(st.st_atime_ns, st.st_mtime_ns))
    pending, done, _, start = plan(out, urls)
    assert (pending, done, start) == ([fixed], 399, 0)


def test_the_prefix_grows_over_lines_invalid_by_their_text_only(tmp_path: Path) -> None:
    """Lines recorded as invalid_input: one invalid by its own text (not a URL) is done with an
    error and the noted prefix grows over it; an http URL recorded invalid (an earlier config)
    is pending again and the prefix ends there, so a later plan reads it again."""
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in [*URLS[:10], "not a url", *URLS[10:20]]))
    send(out, URLS[:20])
    send(out, ["not a url"], "invalid")
    pending, done, failed, _ = plan(out, urls)
    assert (pending, done, failed) == ([], 21, 1)
    pending, done, failed, start = plan(out, urls)
    assert start == urls.stat().st_size and (pending, done, failed) == ([], 21, 1)
    send(out, [URLS[15]], "invalid")  # as an earlier config (say, jsonl) recorded it
    pending, done, failed, start = plan(out, urls)
    assert (pending, done, failed) == ([URLS[15]], 20, 1) and start == 0
    pending, _, _, start = plan(out, urls)
    assert pending == [URLS[15]] and 0 < start < urls.stat().st_size  # it ends the prefix


def counted(out: Path, urls: Path, *, noted: bool) -> tuple[int, int, int]:
    """(done, duplicates, pending) as a plan counts them, from the note or the first line."""
    index = load_resume_index(out, save=True)
    skipped = PendingCounts()
    prefix = load_prefix(out, urls, index) if noted else TextPrefix()
    start_done, start_dups = prefix.done, prefix.duplicates
    skip = done_line_filter(index, skipped)
    skipped.once.prefix = prefix  # as planning.open_plan does
    counts = count_pending(read_items(urls, skip=skip, prefix=prefix), index, once=skipped.once)
    save_prefix(out, urls, prefix, index)
    done = counts.done + skipped.done + start_done
    return done, counts.duplicates + skipped.duplicates + start_dups, counts.pending


def test_a_finished_url_listed_twice_counts_once_from_the_note_too(tmp_path: Path) -> None:
    """Finished URLs listed again inside the noted prefix are duplicates, not done twice:
    the note keeps the prefix's duplicates, so a plan from it counts what a full read does."""
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    listed = URLS[:20] + URLS[5:8] + URLS[20:30] + [URLS[25]]
    urls.write_text("".join(u + "\n" for u in listed))
    send(out, URLS[:30])
    assert counted(out, urls, noted=False) == (30, 4, 0)
    assert json.loads(cache_path(out).read_text())["duplicates"] == 4
    with open(urls, "a") as handle:
        handle.write("".join(u + "\n" for u in URLS[30:33] + [URLS[31]]))
    assert counted(out, urls, noted=True) == (30, 5, 3)
    assert counted(out, urls, noted=False) == (30, 5, 3)


@pytest.mark.parametrize("batch", [1 << 18, 1], ids=["one-batch", "a-batch-a-line"])
def test_a_finished_url_listed_before_and_after_a_pending_one_is_not_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """URLs 0-9 done, 10 pending, then 3 listed again: the prefix ends at 10 with 3 inside
    it, so a plan from it would count 3 as done twice. No note is written (plans read the
    whole input, counting it once) until 10 is done and both lines lie in the prefix; the
    repeat is seen in the batch the prefix ends in and in a later one."""
    monkeypatch.setattr(inputs, "_BATCH_BYTES", batch)
    out, urls = tmp_path / "out.jsonl", tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in [*URLS[:11], URLS[3], URLS[11]]))
    send(out, URLS[:10] + [URLS[11]])
    assert counted(out, urls, noted=False) == (11, 1, 1)
    assert not cache_path(out).exists()
    assert counted(out, urls, noted=True) == (11, 1, 1)
    send(out, [URLS[10]])
    assert counted(out, urls, noted=True) == (12, 1, 0)
    assert json.loads(cache_path(out).read_text())["duplicates"] == 1
    assert counted(out, urls, noted=True) == (12, 1, 0)
