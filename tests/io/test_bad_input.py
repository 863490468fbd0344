"""Bad input lines and bad output files never stop a run: each becomes data or a skip."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from runner.core.items import InvalidLine, Item
from runner.core.plan import PendingCounts, iter_pending
from runner.core.resume import ResumeIndex
from runner.io.inputs import parse_line, read_items
from runner.io.store import load_resume_index, repair_torn_tail


def _items(tmp_path: Path, data: bytes) -> list[Item | InvalidLine]:
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    return list(read_items(path))


def test_empty_file_has_no_items(tmp_path: Path) -> None:
    """An empty input file yields nothing (the run has nothing to do)."""
    assert _items(tmp_path, b"") == []


def test_only_comments_and_blank_lines_have_no_items(tmp_path: Path) -> None:
    """Comment lines (even indented) and blank lines are not work."""
    assert _items(tmp_path, b"# a list\n\n   # indented\n\t\n#https://x.example/a.jpg\n") == []


def test_crlf_and_bom_are_stripped(tmp_path: Path) -> None:
    """A Windows file (BOM + CRLF) gives the same URLs as a Unix one."""
    items = _items(tmp_path, b"\xef\xbb\xbfhttps://x.example/a.jpg\r\nhttps://x.example/b.jpg\r\n")
    assert [i.url for i in items if isinstance(i, Item)] == [
        "https://x.example/a.jpg",
        "https://x.example/b.jpg",
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"https://x.example/\xff\xfe.jpg", "not valid UTF-8"),
        (b"https://x.example/a\x00.jpg", "NUL byte"),
        (b"ftp://x.example/a.jpg", "scheme ftp: is not allowed"),
        (b"javascript:alert(1)", "scheme javascript: is not allowed"),
        (b"https://x.example/a b.jpg", "whitespace"),
        (b"https:///nohost.jpg", "no host"),
        (b"just some words", "not a URL"),
        (b"http://", "no host"),
    ],
    ids=["invalid-utf8", "nul", "ftp", "javascript", "space", "no-host", "words", "scheme-only"],
)
def test_bad_lines_become_invalid_lines_with_a_reason(raw: bytes, reason: str) -> None:
    """Each kind of bad line is an InvalidLine whose reason says what is wrong."""
    item = parse_line(raw, 7)
    assert isinstance(item, InvalidLine)
    assert reason in item.reason and item.line_no == 7


def test_a_10_mb_line_is_one_invalid_line_with_a_short_key(tmp_path: Path) -> None:
    """A 10 MB line is refused by length; its key is cut so records stay small."""
    items = _items(
        tmp_path, b"https://x.example/" + b"a" * 10_000_000 + b"\nhttps://x.example/ok.jpg\n"
    )
    assert isinstance(items[0], InvalidLine) and "characters long" in items[0].reason
    assert len(items[0].key) <= 2001
    assert isinstance(items[1], Item) and items[1].line_no == 2


@pytest.mark.parametrize(
    "url",
    [
        "https://例え.テスト/画像.jpg",
        "https://xn--r8jz45g.xn--zckzah/a.jpg",
        "https://x.example/a%20b%2Fc.jpg?sig=a%2Bb",
        "https://x.example/ünïcödé/ørkøy.png",
        "HTTPS://X.EXAMPLE/UPPER.JPG",
    ],
    ids=["idn-unicode", "idn-punycode", "percent-encoded", "unicode-path", "upper-scheme"],
)
def test_unicode_and_percent_encoded_urls_are_kept_exactly_as_given(url: str) -> None:
    """No normalisation: the URL sent and the output key are byte-for-byte the input line."""
    item = parse_line(url.encode(), 1)
    assert isinstance(item, Item) and item.url == url and item.key == url


def test_trailing_whitespace_makes_no_second_url(tmp_path: Path) -> None:
    """The same URL with trailing spaces or tabs is a duplicate, sent once."""
    items = _items(
        tmp_path,
        b"https://x.example/a.jpg\nhttps://x.example/a.jpg  \t\n  https://x.example/a.jpg\n",
    )
    counts = PendingCounts()
    pending = list(iter_pending(items, ResumeIndex(), counts))
    assert len(pending) == 1 and counts.duplicates == 2


# --- the output file --------------------------------------------------------------------


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def _rec(url: str, status: str = "ok", **extra: object) -> bytes:
    return orjson.dumps({"url": url, "status": status, **extra}) + b"\n"


def test_a_non_json_middle_line_is_reported_by_line_number_and_skipped(tmp_path: Path) -> None:
    """A corrupt line in the middle is skipped with its line number; the lines after it count."""
    path = _write(
        tmp_path / "o.jsonl",
        _rec("u1"),
        b"this is not json\n",
        b'{"url": "u2", "status": \n',
        _rec("u3"),
    )
    index = load_resume_index(path)
    assert index.corrupt_lines == [2, 3]
    assert index.records == 2 and len(index.sets()[0]) == 2


def test_records_from_a_newer_version_with_extra_fields_still_count(tmp_path: Path) -> None:
    """Unknown fields (a newer glmrun) are ignored; status and key are what matter."""
    path = _write(
        tmp_path / "o.jsonl",
        _rec("u1", schema=3, new_field={"nested": [1, 2]}, via="future-mode"),
        _rec("u2", "error", error={"code": "x", "message": "m", "retryable": False, "hint": "new"}),
        b'{"url": "u3", "status": "queued_remotely", "extra": 1}\n',
    )
    index = load_resume_index(path)
    assert [len(s) for s in index.sets()] == [1, 1, 1, 0]


def test_a_torn_last_line_is_ignored_then_cut_before_appending(tmp_path: Path) -> None:
    """The loader skips a torn tail; repair cuts exactly it, so the next record starts clean."""
    path = _write(tmp_path / "o.jsonl", _rec("u1"), _rec("u2"), b'{"url": "u3", "sta')
    assert len(load_resume_index(path).sets()[0]) == 2
    assert repair_torn_tail(path) == len(b'{"url": "u3", "sta')
    assert path.read_bytes() == _rec("u1") + _rec("u2")
    assert repair_torn_tail(path) == 0


def test_a_file_that_is_one_torn_line_is_emptied(tmp_path: Path) -> None:
    """A kill during the very first write leaves a torn only line; repair empties the file."""
    path = _write(tmp_path / "o.jsonl", b'{"url": "u1", "status": "o')
    assert load_resume_index(path).records == 0
    repair_torn_tail(path)
    assert path.read_bytes() == b""
