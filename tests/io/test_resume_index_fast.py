"""The fast resume-index loader agrees with a full JSON parse of every line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.io import jsonl
from runner.io.store import load_resume_index
from tests.support.resume import line_for, reference

urls = st.sampled_from(
    [
        "https://a/1.jpg",
        "https://a/2.jpg",
        'https://a/"q".jpg',
        "https://a/\\b.jpg",
        "https://a/é.jpg",
        "https://a/\u2028.jpg",
    ]
)
kinds = st.sampled_from(["ok", "final", "retryable", "invalid", "foreign", "corrupt", "blank"])
keys = st.one_of(st.none(), st.sampled_from(["k1", 'k"2', "https://a/1.jpg"]))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(kinds, urls, keys), max_size=30),
    st.booleans(),
    st.sampled_from([60, 97, 256, 8 << 20]),
)
def test_fast_loader_matches_a_full_parse(
    tmp_path: Path, lines: list[tuple[str, str, str | None]], torn: bool, block: int
) -> None:
    """Any mix of ok/error/foreign/corrupt/blank lines (and a torn tail) gives the same index,
    whatever the read blocks (small ones make blocks of plain ok lines, hashed in bulk, and
    mixed ones, parsed line by line, alternate; a later record of a key still wins)."""
    path = tmp_path / "out.jsonl"
    data = b"".join(line_for(*spec) for spec in lines)
    if torn:
        data += b'{"url":"https://a/9.jpg","status":"o'
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonl, "BLOCK", block)
        fast = load_resume_index(path)
    ref = reference(path)
    assert fast.sets() == (ref.ok, ref.failed, ref.retryable, ref.invalid)
    assert fast.records == ref.records
    assert fast.corrupt_lines == ref.corrupt_lines


def test_blocks_split_mid_line_lose_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Records that straddle the read-block boundary are still read whole."""
    from runner.io import jsonl

    monkeypatch.setattr(jsonl, "BLOCK", 97)
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        b"".join(
            line_for("ok" if i % 7 else "final", f"https://a/{i}.jpg", None) for i in range(200)
        )
    )
    fast, ref = load_resume_index(path), reference(path)
    assert fast.sets()[:2] + (fast.records,) == (ref.ok, ref.failed, ref.records)
    assert len(fast.sets()[0]) + len(fast.sets()[1]) == 200


def test_missing_output_is_an_empty_index(tmp_path: Path) -> None:
    """No output file yet: nothing is done."""
    index = load_resume_index(tmp_path / "none.jsonl")
    assert index.empty and index.records == 0
