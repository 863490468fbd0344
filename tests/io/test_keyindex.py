"""The persistent resume index is used only while the output still starts with what it covers.

Every case checks the exact sets of done keys against a full parse of the output as it is now,
and whether the index was used (``persisted >= 0``) or rejected for a full scan (``-1``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.core.plan import PendingCounts, count_pending, done_line_filter
from runner.core.resume import ResumeIndex
from runner.io import keyindex
from runner.io.inputs import read_items
from runner.io.store import load_resume_index, save_resume_index
from tests.support.resume import line_for, reference

URLS = [f"https://a/{i:04d}.jpg" for i in range(60)]


def write_output(path: Path, kinds: list[str]) -> None:
    path.write_bytes(b"".join(line_for(k, u, None) for k, u in zip(kinds, URLS, strict=False)))


def sets(index: ResumeIndex) -> tuple[set[int], set[int], set[int], set[int]]:
    return index.sets()


def exact(path: Path) -> tuple[set[int], set[int], set[int], set[int]]:
    ref = reference(path)
    return ref.ok, ref.failed, ref.retryable, ref.invalid


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output of 40 records (ok, a permanent error, a retryable one, an invalid input line)
    with a saved index."""
    path = tmp_path / "out.jsonl"
    kinds = ["ok"] * 40
    kinds[7], kinds[20], kinds[30] = "final", "retryable", "invalid"
    write_output(path, kinds)
    first = load_resume_index(path, save=True)
    assert first.persisted == -1 and keyindex.index_path(path).exists()
    return path


def test_a_valid_index_is_used_and_agrees_with_a_full_parse(out: Path) -> None:
    index = load_resume_index(out)
    assert index.persisted == out.stat().st_size
    assert sets(index) == exact(out)
    assert index.records == 40


def test_records_appended_after_the_index_are_read_from_the_tail(out: Path) -> None:
    """Another tool appends: a new ok, a done key made retryable, a retryable key made ok, an
    invalid line made ok (its config was fixed) and a new invalid line."""
    covered = out.stat().st_size
    with open(out, "ab") as handle:
        handle.write(line_for("ok", URLS[50], None))
        handle.write(line_for("retryable", URLS[3], None))
        handle.write(line_for("ok", URLS[20], None))
        handle.write(line_for("ok", URLS[30], None))
        handle.write(line_for("invalid", URLS[51], None))
        handle.write(b"not json\n")
    index = load_resume_index(out)
    assert index.persisted == covered
    assert sets(index) == exact(out)
    assert index.changed_done  # URLS[3] was done and is not any more
    assert index.corrupt_lines == reference(out).corrupt_lines == [46]
    save_resume_index(out)  # the next load starts after all of it
    again = load_resume_index(out)
    assert again.persisted == out.stat().st_size and sets(again) == exact(out)
    assert again.stable_from == out.stat().st_size  # history was rewritten: no plan shortcut


def test_a_truncated_output_is_scanned_in_full(out: Path) -> None:
    data = out.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) - 1) + 1  # drop the last record
    out.write_bytes(data[:cut])
    index = load_resume_index(out)
    assert index.persisted == -1
    assert sets(index) == exact(out)


def test_an_output_replaced_by_another_file_is_scanned_in_full(out: Path) -> None:
    other = out.with_name("other.jsonl")
    write_output(other, ["final"] * 40)  # same keys, every one a permanent error now
    os.replace(other, out)
    index = load_resume_index(out)
    assert index.persisted == -1
    assert sets(index) == exact(out) and not exact(out)[0]


def test_same_size_different_content_is_scanned_in_full(out: Path) -> None:
    data = out.read_bytes()
    swapped = data.replace(b"https://a/0001.jpg", b"https://a/9991.jpg")
    assert len(swapped) == len(data)
    st = out.stat()
    with open(out, "r+b") as handle:  # in place: same inode, same size...
        handle.write(swapped)
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime (cp -p, rsync -t)
    index = load_resume_index(out)
    assert index.persisted == -1
    assert sets(index) == exact(out)


@pytest.mark.parametrize("same_length", [True, False], ids=["same-length", "longer"])
def test_an_edit_in_the_middle_is_scanned_in_full(out: Path, same_length: bool) -> None:
    """An ok record in the middle becomes a retryable error (then something is appended)."""
    lines = out.read_bytes().splitlines(keepends=True)
    old = lines[15]
    new = old.replace(b'"status":"ok"', b'"status":"no"')
    if not same_length:
        new = line_for("retryable", URLS[15], None)
    lines[15] = new
    out.write_bytes(b"".join(lines) + line_for("ok", URLS[55], None))
    index = load_resume_index(out)
    assert index.persisted == -1
    assert sets(index) == exact(out)


def test_a_changed_last_line_then_an_append_is_scanned_in_full(out: Path) -> None:
    """Another tool rewrites the last record's end and appends: the covered prefix changed."""
    data = out.read_bytes()
    out.write_bytes(data[:-2] + b',"x":1}\n' + line_for("ok", URLS[56], None))
    index = load_resume_index(out)
    assert index.persisted == -1
    assert sets(index) == exact(out)


def test_a_stale_index_never_skips_an_unfinished_url(tmp_path: Path) -> None:
    """An index saved when URLs 0-19 were ok is planted beside an output where 5 and 12 are
    not done any more (rewritten in place by another tool, same size and mtime): the plan
    sends exactly those and 20-24."""
    out = tmp_path / "out.jsonl"
    write_output(out, ["ok"] * 20)
    load_resume_index(out, save=True)
    stale = keyindex.index_path(out).read_bytes()
    st = out.stat()
    lines = out.read_bytes().splitlines(keepends=True)
    for i in (5, 12):  # same length: "ok" -> "no" (a status that is not done)
        lines[i] = lines[i].replace(b'"status":"ok"', b'"status":"no"')
    out.write_bytes(b"".join(lines))
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
    keyindex.index_path(out).write_bytes(stale)  # planted
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(u + "\n" for u in URLS[:25]))
    index = load_resume_index(out)
    counts = PendingCounts()
    plan = count_pending(read_items(urls, skip=done_line_filter(index, counts)), index, keep=100)
    assert plan.kept is not None
    assert [item.key for _, item in plan.kept] == [URLS[5], URLS[12], *URLS[20:25]]
    assert counts.done + plan.done == 18


def test_an_unreadable_index_means_a_full_scan(out: Path) -> None:
    keyindex.index_path(out).write_bytes(b"garbage")
    index = load_resume_index(out)
    assert index.persisted == -1 and sets(index) == exact(out)


def test_an_older_glmrun_index_is_replaced_quietly(
    out: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The index of a glmrun that counted invalid_input lines as done (format 02) is not used
    (its invalid lines would stay done): a full scan, an INFO line, not a warning, a new index."""
    path = keyindex.index_path(out)
    path.write_bytes(b"GLMRIX02" + path.read_bytes()[8:])
    with caplog.at_level("INFO", logger="runner"):
        index = load_resume_index(out, save=True)
    assert index.persisted == -1 and sets(index) == exact(out)
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "older glmrun" in caplog.records[0].getMessage()
    assert load_resume_index(out).persisted == out.stat().st_size


def test_large_outputs_are_sampled_and_still_caught(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond FULL_HASH_BYTES the fingerprint samples: a longer record in the middle shifts
    the last sampled block; a same-length rewrite without an append changes the mtime."""
    monkeypatch.setattr(keyindex, "FULL_HASH_BYTES", 1024)
    monkeypatch.setattr(keyindex, "_EDGE", 256)
    monkeypatch.setattr(keyindex, "_BLOCK", 8)
    monkeypatch.setattr(keyindex, "_SAMPLES", 4)
    load_resume_index(out, save=True)
    assert load_resume_index(out).persisted == out.stat().st_size
    data = out.read_bytes()
    lines = data.splitlines(keepends=True)
    lines[10] = lines[10].replace(b'"status":"ok"', b'"status":"no"')
    os.utime(out, ns=(1, 1))
    out.write_bytes(b"".join(lines))  # same size, new mtime
    index = load_resume_index(out)
    assert index.persisted == -1 and sets(index) == exact(out)
    load_resume_index(out, save=True)
    lines[10] = line_for("retryable", URLS[10], None)  # longer, then an append
    out.write_bytes(b"".join(lines) + line_for("ok", URLS[57], None))
    index = load_resume_index(out)
    assert index.persisted == -1 and sets(index) == exact(out)


def test_a_fenced_table_reads_blocks_and_agrees_with_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large index is opened with only its fence in memory: single look-ups read blocks,
    many at once read the table; both, and a merge of new keys (written in steps that are
    not a multiple of the block), agree with the arrays."""
    import random

    import numpy as np

    from runner.core.resume import DONE_AGAIN, DoneOnce, KeyTable

    out = tmp_path / "out.jsonl"
    out.write_bytes(line_for("ok", URLS[0], None))
    rng = random.Random(7)
    keys = sorted(set(rng.getrandbits(64) for _ in range(20_000)))
    states = [rng.choice([1, 2, 3]) for _ in keys]
    memory = KeyTable(np.array(keys, dtype=np.uint64), np.array(states, dtype=np.uint8))
    meta = {"lines": 1, "records": 1, "stable_from": 0, "corrupt_lines": []}
    keyindex.write_index(out, out.stat().st_size, memory, meta)
    opened = keyindex.open_index(out)
    assert opened is not None
    fenced = opened[1]
    assert fenced.fence is not None and len(fenced) == len(keys)
    probes = [keys[0], keys[-1], keys[511], keys[512], keys[9_999], 0, 2**64 - 1, 12345]
    for h in probes:  # one at a time: the block path
        assert fenced.state(h) == memory.state(h), h
        assert fenced.find(h) == memory.find(h), h  # and the position (plan.DoneOnce marks it)
        digest = np.array([h], dtype="<u8").tobytes()
        assert fenced.states_of_digests(digest) == memory.states_of_digests(digest), h
    assert fenced._keys is None  # the table itself was never read whole
    done = [k for k, s in zip(keys, states, strict=True) if s != 3][:3]  # 3: retryable
    twice = np.array([done[0], done[1], done[0], 12345], dtype="<u8").tobytes()
    for table in (fenced, memory):  # a few look-ups (blocks), and the whole table
        once = DoneOnce()
        first = table.states_of_digests(twice, once)
        assert first[1] == memory.state(done[1]) and first[3] == 0
        # the key listed twice: one line done, the other a duplicate (either one)
        assert sorted([first[0], first[2]]) == sorted([memory.state(done[0]), DONE_AGAIN])
        again = np.array([done[1], done[2]], dtype="<u8").tobytes()
        assert table.states_of_digests(again, once) == [DONE_AGAIN, memory.state(done[2])]
    assert fenced._keys is None
    new = [(rng.getrandbits(64), 1) for _ in range(30)] + [(keys[77], 2), (keys[-1], 1)]
    monkeypatch.setattr(keyindex, "_CHUNK", 1000)
    keyindex.write_index(out, out.stat().st_size, fenced, meta, new, keyindex.index_path(out))
    merged = keyindex.open_index(out)
    assert merged is not None
    expected = dict(zip(keys, states, strict=True)) | dict(new)
    table = merged[1]
    got = dict(zip(table.keys.tolist(), table.states.tolist(), strict=True))  # reads it whole
    assert got == expected
    assert table.states_of([h for h, _ in new]) == [s for _, s in new]
    again = keyindex.open_index(out)
    assert again is not None
    for h, s in new[:5] + [(keys[1024], expected[keys[1024]]), (keys[3000], expected[keys[3000]])]:
        assert again[1].state(h) == s  # block reads through the rewritten fence


def test_a_small_tail_is_left_for_the_next_run_to_scan(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rewriting a large index for a few records is not worth its bytes: the index stays as it
    was (same file, same covered offset) until the tail reaches the budget, and every load in
    between agrees with a full parse."""
    import runner.io.store as store

    monkeypatch.setattr(store, "TAIL_BUDGET", 1500)  # the index itself is > 4 KiB
    path = keyindex.index_path(out)
    covered, before = out.stat().st_size, path.stat()
    with open(out, "ab") as handle:
        handle.writelines(line_for("ok", u, None) for u in URLS[40:45])  # < 1500 bytes
    save_resume_index(out)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    index = load_resume_index(out)
    assert index.persisted == covered and sets(index) == exact(out)
    with open(out, "ab") as handle:
        handle.writelines(line_for("ok", u, None) for u in URLS[45:60])  # now over 1500
    save_resume_index(out)
    again = load_resume_index(out)
    assert again.persisted == out.stat().st_size and sets(again) == exact(out)


def test_a_tail_that_changed_a_finished_key_is_settled_at_once(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However small, a tail that made a done key unfinished is written into the index, so
    the plan shortcut (``stable_from``) is trusted again from the next run on."""
    import runner.io.store as store

    monkeypatch.setattr(store, "TAIL_BUDGET", 1 << 30)
    with open(out, "ab") as handle:
        handle.write(line_for("retryable", URLS[3], None))
    save_resume_index(out)
    again = load_resume_index(out)
    assert again.persisted == out.stat().st_size and not again.changed_done
    assert again.stable_from == out.stat().st_size


def test_an_invalid_line_is_not_done_on_any_path_of_the_pre_filter(tmp_path: Path) -> None:
    """A key whose latest record is invalid_input gets code 4 (parse it again) from the text
    pre-filter whether its state comes from a fenced table (a few look-ups), the whole table
    (many), or the tail over a key the table has as done; ok and permanent errors stay done
    (1, 2), and a retryable error is to do (0). Only the done ones are counted."""
    out = tmp_path / "out.jsonl"
    many = [f"https://b/{i:05d}.jpg" for i in range(5000)]  # a fence longer than 8 look-ups
    kinds = ["ok"] * len(many)
    kinds[1], kinds[2], kinds[3], kinds[5] = "invalid", "final", "invalid", "retryable"
    out.write_bytes(b"".join(line_for(k, u, None) for k, u in zip(kinds, many, strict=True)))
    load_resume_index(out, save=True)
    with open(out, "ab") as handle:  # the tail: an ok key made invalid by another tool
        handle.write(line_for("invalid", many[0], None))
    index = load_resume_index(out)
    assert index.persisted > 0 and index.base is not None and index.base.fence is not None
    counts = PendingCounts()
    skip = done_line_filter(index, counts)
    assert skip is not None
    one_by_one = [skip([u.encode()])[0] for u in many[:6]]  # the block path
    assert index.base._keys is None  # (the table was not read whole)
    assert one_by_one == [4, 4, 2, 4, 1, 0]
    assert (counts.done, counts.failed) == (2, 1)
    again = done_line_filter(index, PendingCounts())  # a second read (one filter per read:
    assert again is not None  # the first would call these lines again duplicates, code 5)
    assert again([u.encode() for u in many])[:6] == [4, 4, 2, 4, 1, 0]  # the whole table
    assert skip([many[4].encode(), many[2].encode()]) == [5, 5]  # seen by this read already
