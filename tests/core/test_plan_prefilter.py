"""The text-input pre-filter and the kept pending list change speed, never the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.core.items import InvalidLine, Item
from runner.core.keys import key_hash
from runner.core.plan import PendingCounts, count_pending, done_line_filter, iter_pending
from runner.core.resume import FAILED, INVALID, OK, RETRYABLE, KeyTable, ResumeIndex
from runner.io.inputs import read_items


def test_prefiltered_counts_and_pending_equal_the_plain_path(tmp_path: Path) -> None:
    """The pre-filter counts every kind of line the same as the plain path.

    The kinds: done (ok and failed), duplicate, invalid and over-long lines.
    """
    long_bad = "x" * 2500
    lines = [
        "https://a/1.jpg",
        "https://a/2.jpg",
        "https://a/3.jpg",
        "https://a/3.jpg",
        "ftp://bad",
        long_bad,
        "https://a/4.jpg",
        "# comment",
        "",
        "https://a/é.jpg",
    ]
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = ResumeIndex()
    index.add("https://a/1.jpg", "ok", True)
    index.add("https://a/é.jpg", "ok", True)
    index.add("ftp://bad", "error", True)
    index.add(long_bad[:2000] + "…", "error", True)
    index.add("https://a/4.jpg", "error", False)  # retryable: still pending

    plain = count_pending(read_items(path), index)
    skipped = PendingCounts()
    fast = count_pending(read_items(path, skip=done_line_filter(index, skipped)), index)
    fast.done += skipped.done
    fast.failed += skipped.failed
    assert skipped.done == 3  # the two ok URLs and ftp://bad; the long line takes the normal path
    for name in ("pending", "done", "failed", "invalid", "duplicates"):
        assert getattr(fast, name) == getattr(plain, name), name
    pending = [
        item.key
        for _, item in iter_pending(
            read_items(path, skip=done_line_filter(index, PendingCounts())), index
        )
    ]
    assert pending == ["https://a/2.jpg", "https://a/3.jpg", "https://a/4.jpg"]


def test_kept_pending_list_only_when_small(tmp_path: Path) -> None:
    """count_pending keeps the pending pairs up to ``keep`` of them, and none beyond."""
    path = tmp_path / "urls.txt"
    path.write_text("".join(f"https://a/{i}.jpg\n" for i in range(5)))
    small = count_pending(read_items(path), ResumeIndex(), keep=5)
    assert small.kept is not None and [item.key for _, item in small.kept] == [
        f"https://a/{i}.jpg" for i in range(5)
    ]
    assert count_pending(read_items(path), ResumeIndex(), keep=4).kept is None
    assert count_pending(read_items(path), ResumeIndex()).kept is None


def test_no_filter_without_finished_keys() -> None:
    """A fresh output needs no pre-filter."""
    assert done_line_filter(ResumeIndex(), PendingCounts()) is None


def test_counts_and_plan_of_every_state_in_a_table_and_after_it() -> None:
    """A table with each state and records read after it: the counts per state (an invalid
    line is neither done nor retryable), and the plan: an invalid line is pending again when
    valid and done (with an error, not recorded again) while still invalid."""
    keys = ["ok", "failed", "retry", "invalid", "invalid2", "later"]
    h = {k: key_hash(k) for k in keys}
    base = KeyTable.from_sequence(
        [h[k] for k in keys[:5]], [OK, FAILED, RETRYABLE, INVALID, INVALID]
    )
    index = ResumeIndex(base=base)
    index.add("later", "error", True, invalid=True)  # read after the table
    index.add("invalid2", "ok", True)  # sent once valid
    assert index.counts() == {"ok": 2, "failed": 1, "retryable": 1, "invalid": 2}
    assert len(index) == 6 and "invalid=2" in repr(index)
    items = [
        Item("ok", "ok", 1),
        Item("invalid", "invalid", 2),  # valid now
        InvalidLine("later", 3, "still bad"),
        InvalidLine("new", 4, "bad"),
    ]
    counts = PendingCounts()
    pending = [item.key for _, item in iter_pending(items, index, counts)]
    assert pending == ["invalid", "new"]
    assert (counts.done, counts.failed, counts.pending, counts.invalid) == (2, 1, 1, 1)


LONG = "https://a/" + "x" * 2500 + ".jpg"  # keyed by itself, but read past the pre-filter
LISTED_TWICE = [
    "https://a/ok.jpg",
    "https://a/failed.jpg",
    "https://a/ok.jpg",
    "https://a/new.jpg",
    "https://a/failed.jpg",
    "https://a/new.jpg",
    "ftp://bad",
    "ftp://bad",
    "https://a/ok.jpg",
    LONG,
    LONG,
]


def twice_index(where: str) -> ResumeIndex:
    states = {
        "https://a/ok.jpg": OK,
        "https://a/failed.jpg": FAILED,
        "ftp://bad": INVALID,
        LONG: OK,
    }
    if where == "table":
        hashes = [key_hash(k) for k in states]
        return ResumeIndex(base=KeyTable.from_sequence(hashes, list(states.values())))
    index = ResumeIndex()
    for key, state in states.items():
        index.add_hash(key_hash(key), state)
    return index


@pytest.mark.parametrize("where", ["table", "later"], ids=["in-the-table", "read-after-it"])
@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "pre-filtered"])
def test_a_finished_key_listed_again_counts_once_then_as_a_duplicate(
    tmp_path: Path, where: str, filtered: bool
) -> None:
    """A finished URL (ok, failed, recorded invalid, or too long for the pre-filter) listed
    again is done once and the other lines duplicates, as a pending URL listed twice is
    pending once."""
    path = tmp_path / "urls.txt"
    path.write_text("".join(line + "\n" for line in LISTED_TWICE))
    index = twice_index(where)
    skipped = PendingCounts()
    skip = done_line_filter(index, skipped) if filtered else None
    counts = count_pending(read_items(path, skip=skip), index, once=skipped.once)
    done, failed = counts.done + skipped.done, counts.failed + skipped.failed
    duplicates = counts.duplicates + skipped.duplicates
    assert (done, failed, counts.pending, duplicates) == (4, 2, 1, 6)


@pytest.mark.parametrize("slot", [0, -1], ids=["in-the-table", "read-after-it"])
def test_a_prefix_key_repeated_after_the_prefix_marks_it_straddled(slot: int) -> None:
    """A key first seen while the finished prefix grows and again after it sets
    ``straddled``; one first seen after the prefix, repeated, does not."""
    from types import SimpleNamespace

    from runner.core.resume import DoneOnce

    once = DoneOnce()
    once.prefix = prefix = SimpleNamespace(growing=True, straddled=False)
    assert once.first(slot, 7, 4) and not once.first(slot, 7, 4)  # both inside the prefix
    prefix.growing = False
    assert once.first(slot + 2 if slot >= 0 else slot, 8, 4)  # first seen after it
    assert not once.first(slot + 2 if slot >= 0 else slot, 8, 4) and not prefix.straddled
    assert not once.first(slot, 7, 4) and prefix.straddled
