"""Sharding, pure parts: I/N parsing, file names, the split, the plan, merged indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import load_config
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.plan import OTHER_SHARD, PendingCounts, done_line_filter, iter_pending
from runner.core.resume import FAILED, OK, KeyTable, ResumeIndex
from runner.core.shard import Shard, parse_shard, shard_of_name, shard_output_name
from tests.support.configs import write_config


@pytest.mark.parametrize(
    ("text", "shard"),
    [("2/8", Shard(2, 8)), (" 0 / 2 ", Shard(0, 2)), ("0/1", None), ("7/8", Shard(7, 8))],
    ids=["plain", "spaces", "whole-job", "last"],
)
def test_parse_shard_accepts_i_of_n(text: str, shard: Shard | None) -> None:
    """``I/N`` with 0 <= I < N parses; 0/1 is the whole job (no shard file)."""
    assert parse_shard(text) == shard


@pytest.mark.parametrize(
    "text",
    ["8/8", "3/0", "-1/4", "2", "a/b", "1/2/3", ""],
    ids=["n-of-n", "zero-n", "negative", "no-n", "letters", "three", "empty"],
)
def test_parse_shard_refuses_anything_else(text: str) -> None:
    """An index out of range or a malformed value is refused with a message."""
    with pytest.raises(ValueError, match="I/N|N must|between"):
        parse_shard(text)


@pytest.mark.parametrize(
    ("output", "name"),
    [
        ("describe.jsonl", "describe.shard-2-of-8.jsonl"),
        ("results", "results.shard-2-of-8"),
        ("a.b.jsonl", "a.b.shard-2-of-8.jsonl"),
    ],
    ids=["jsonl", "no-suffix", "dotted"],
)
def test_shard_file_names_round_trip(output: str, name: str) -> None:
    """The documented name, and the reader recognises exactly that name."""
    assert shard_output_name(output, Shard(2, 8)) == name
    assert shard_of_name(output, name) == Shard(2, 8)


@pytest.mark.parametrize(
    "candidate",
    [
        "describe.shard-2-of-8.jsonl.lock",
        "other.shard-2-of-8.jsonl",
        "describe.shard-02-of-8.jsonl",
        "describe.shard-8-of-8.jsonl",
        "describe.shard-0-of-1.jsonl",
        "describe.jsonl",
    ],
    ids=["lock", "other-job", "leading-zero", "out-of-range", "n-1", "main"],
)
def test_files_that_are_not_shard_outputs_are_not_read_as_such(candidate: str) -> None:
    """Locks, other jobs' files and names glmrun never writes are not merged into the job."""
    assert shard_of_name("describe.jsonl", candidate) is None


def test_every_key_belongs_to_exactly_one_shard_for_any_n() -> None:
    """The split is a partition for every N, so no URL is sent twice or never."""
    keys = [f"https://e.org/{i}.jpg" for i in range(2000)]
    for n in (2, 3, 4, 8):
        owners = [[s for s in range(n) if Shard(s, n).owns(key_hash(k))] for k in keys]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(o == [s] for o in owners) for s in range(n)]
        assert min(sizes) > 0.7 * len(keys) / n  # and roughly even


def test_plan_skips_other_shards_before_anything_else() -> None:
    """iter_pending and the text pre-filter keep only the shard's items and count the rest."""
    urls = [f"https://e.org/{i}.jpg" for i in range(200)]
    items = [Item(key=u, url=u, line_no=n) for n, u in enumerate(urls, 1)]
    index = ResumeIndex()
    index.add(items[0].key, "ok", True)
    shard = Shard(1, 4)
    counts = PendingCounts()
    mine = [h for h, _ in iter_pending(items, index, counts, shard)]
    expected = {key_hash(i.key) for i in items if key_hash(i.key) % 4 == 1} - index.ok
    assert set(mine) == expected
    assert counts.other_shards == sum(key_hash(i.key) % 4 != 1 for i in items)
    pre = PendingCounts()
    skip = done_line_filter(ResumeIndex(), pre, shard)
    assert skip is not None
    codes = skip([i.key.encode() for i in items])
    assert codes.count(OTHER_SHARD) == counts.other_shards == pre.other_shards
    assert codes.count(0) == len(items) - counts.other_shards and pre.done == 0


def test_the_batched_pre_filter_with_a_table_base_skips_done_and_other_shards() -> None:
    """With the index's base a KeyTable (a persistent index) and a tail read after it: a line
    another shard owns is 3 whatever its state, one of this shard that is done is 1 (ok) or 2
    (permanent error), the rest 0; the counts match iter_pending's."""
    urls = [f"https://e.org/{i}.jpg" for i in range(300)]
    hashes = [key_hash(u) for u in urls]
    base = KeyTable.from_sequence(hashes[:200], [OK] * 150 + [FAILED] * 50)
    index = ResumeIndex(base=base)
    index.add(urls[0], "error", False)  # the tail: ok -> retryable, pending again
    index.add(urls[250], "ok", True)
    shard = Shard(2, 3)
    pre = PendingCounts()
    skip = done_line_filter(index, pre, shard)
    assert skip is not None
    codes = skip([u.encode() for u in urls])
    for n, (h, code) in enumerate(zip(hashes, codes, strict=True)):
        if h % 3 != 2:
            assert code == OTHER_SHARD
        elif n == 0 or (n >= 200 and n != 250):
            assert code == 0
        else:
            assert code == (FAILED if 150 <= n < 200 else OK)
    items = [Item(key=u, url=u, line_no=n) for n, u in enumerate(urls, 1)]
    counts = PendingCounts()
    pending = list(iter_pending(items, index, counts, shard))
    assert (pre.done, pre.failed, pre.other_shards) == (
        counts.done,
        counts.failed,
        counts.other_shards,
    )
    assert codes.count(0) == len(pending)


def test_merged_index_prefers_a_finished_record_in_any_file() -> None:
    """ok in one file beats an error in another; a permanent error beats a retryable one."""
    a, b = ResumeIndex(), ResumeIndex()
    a.add("x", "error", False)
    b.add("x", "ok", True)
    a.add("y", "error", True)
    b.add("y", "error", False)
    b.add("z", "error", False)
    merged = ResumeIndex()
    merged.merge(a)
    merged.merge(b)
    assert merged.ok == {key_hash("x")}
    assert merged.failed == {key_hash("y")}
    assert merged.retryable == {key_hash("z")}
    assert merged.is_done(key_hash("x")) and not merged.is_done(key_hash("z"))


def test_sharded_config_names_files_and_splits_the_queue(tmp_path: Path) -> None:
    """A shard writes its own file, lock and work folder; max_queued is split unless
    batch.shard_max_queued says otherwise."""
    cfg = load_config(write_config(tmp_path, batch={"max_queued": 10}))
    part = cfg.sharded(Shard(2, 4))
    job = part.jobs[0]
    assert job.output_path == tmp_path / "out" / "t.shard-2-of-4.jsonl"
    assert job.main_output_path == tmp_path / "out" / "t.jsonl"
    assert job.work_dir == tmp_path / "out" / ".glmrun" / "t.shard-2-of-4"
    assert part.batch.max_queued == 2 and cfg.batch.max_queued == 10
    assert cfg.sharded(None) is cfg
    fixed = load_config(
        write_config(tmp_path, batch={"max_queued": 10, "shard_max_queued": 7})
    ).sharded(Shard(0, 4))
    assert fixed.batch.max_queued == 7


def test_merge_materialises_an_index_with_a_table_base() -> None:
    """A file's index read from its persistent index (a KeyTable base plus the tail's sets)
    merges like a set-only one: base and tail applied first, then finished wins across files."""
    h = {k: key_hash(k) for k in "vwxyz"}
    with_base = ResumeIndex(base=KeyTable.from_sequence([h["v"], h["w"], h["x"]], [OK, FAILED, OK]))
    with_base.add("x", "error", False)  # the tail: x retryable in this file
    with_base.records = 4
    other = ResumeIndex()
    other.add("w", "ok", True)
    other.add("y", "error", False)
    other.records = 2
    merged = ResumeIndex()
    merged.merge(with_base)
    merged.merge(other)
    assert merged.base is None and merged.records == 6
    assert merged.sets() == ({h["v"], h["w"]}, set(), {h["x"], h["y"]}, set())
    assert merged.is_done(h["v"]) and not merged.is_done(h["x"]) and not merged.is_done(h["z"])
