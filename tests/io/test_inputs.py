"""The streamed input reader and the pending filter (duplicates, finished keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.core.items import InvalidLine, Item
from runner.core.plan import PendingCounts, iter_pending
from runner.core.resume import ResumeIndex
from runner.core.urls import MAX_URL_CHARS
from runner.errors import ConfigError
from runner.io.inputs import read_items

A = "https://img.example.test/a.jpg"
B = "http://img.example.test/b.png?x=1&y=2"


def read(tmp_path: Path, data: bytes) -> list[Item | InvalidLine]:
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    return list(read_items(path))


def test_blank_comment_and_whitespace_lines(tmp_path: Path) -> None:
    """Blank lines and # comments are skipped; surrounding whitespace is trimmed.

    Line numbers are kept.
    """
    items = read(
        tmp_path, b"# header\n\n   \n\t" + A.encode() + b"  \n  # indented comment\n" + B.encode()
    )
    assert items == [Item(A, A, 4), Item(B, B, 6)]


def test_crlf_and_bom(tmp_path: Path) -> None:
    """A UTF-8 BOM and CRLF line ends are invisible in the URLs."""
    items = read(tmp_path, b"\xef\xbb\xbf" + A.encode() + b"\r\n" + B.encode() + b"\r\n")
    assert [i.url for i in items if isinstance(i, Item)] == [A, B]


def test_unicode_url_is_kept(tmp_path: Path) -> None:
    """Valid UTF-8 beyond ASCII is a valid URL, passed through as is."""
    url = "https://img.example.test/图片/猫.jpg"
    assert read(tmp_path, url.encode() + b"\n") == [Item(url, url, 1)]


BAD_LINES = [
    ("invalid-utf8", b"https://img.example.test/\xff\xfe.jpg", "not valid UTF-8"),
    ("nul-byte", b"https://img.example.test/a\x00b.jpg", "NUL byte"),
    ("ftp-scheme", b"ftp://img.example.test/a.jpg", "scheme ftp: is not allowed"),
    ("gopher-scheme", b"gopher://img.example.test/a.jpg", "scheme gopher: is not allowed"),
    ("data-url", b"data:image/png;base64,iVBORw0KGgo=", "scheme data: is not allowed"),
    ("javascript", b"javascript:alert(1)", "scheme javascript: is not allowed"),
    ("not-a-url", b"just some words", "not a URL"),
    ("no-host", b"https:///a.jpg", "no host"),
    ("inner-space", b"https://img.example.test/a b.jpg", "whitespace"),
    (
        "no-scheme",
        b"img.example.test/a.jpg",
        "no scheme; expected an http:// or https:// URL such as https://img.example.test/a.jpg",
    ),
    (
        "no-scheme-with-port",
        b"www.example.test:8080/p/a.jpg",
        "such as https://www.example.test:8080/p/a.jpg",
    ),
    ("a-word-and-a-slash", b"see images/a.jpg", "not a URL"),
    # a relative path as `find pics` writes it: the fix is named (glmrun never guesses it)
    (
        "bare-relative-path",
        b"pics/2024/c.jpg",
        "not a URL; expected an http:// or https:// URL (a local file's path starts with /, "
        "./ or ../: ./pics/2024/c.jpg)",
    ),
    ("bare-file-name", b"c.JPG", "(a local file's path starts with /, ./ or ../: ./c.JPG)"),
    # an export from a Windows machine: not "scheme C: is not allowed"
    ("windows-path", b"C:\\pics\\a.jpg", "a Windows path; expected an http:// or https:// URL, or"),
    ("windows-path-slash", b"D:/pics/a.jpg", "a Windows path; expected"),
    (
        "trailing-comment",
        b"https://img.example.test/a.jpg  # the cat",
        "URL followed by a comment; a # comment must be on a line of its own",
    ),
    ("too-long", b"https://img.example.test/" + b"x" * MAX_URL_CHARS, "characters long"),
    # pasted with what surrounded it: said so, not "not a URL" (it is one), and never guessed
    ("double-quotes", b'"https://img.example.test/a.jpg"', "URL in quotes; write it without them"),
    ("single-quotes", b"'https://img.example.test/a.jpg'", "URL in quotes; write it without them"),
    ("angle-brackets", b"<https://img.example.test/a.jpg>", "URL in angle brackets; write it"),
    ("quoted-words", b'"just some words"', "not a URL"),
    ("unbalanced-quote", b'"https://img.example.test/a.jpg', "not a URL"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_bad_line_becomes_invalid_line(tmp_path: Path, raw: bytes, reason: str) -> None:
    """A bad line becomes an InvalidLine with a reason, and the lines around it still read."""
    items = read(tmp_path, A.encode() + b"\n" + raw + b"\n" + B.encode() + b"\n")
    assert items[0] == Item(A, A, 1) and items[2] == Item(B, B, 3)
    bad = items[1]
    assert isinstance(bad, InvalidLine)
    assert bad.line_no == 2
    assert reason in bad.reason
    assert len(bad.key) <= 2001  # keyed by its (shortened) text so the next run skips it too


def test_missing_input_file(tmp_path: Path) -> None:
    """A missing input file is a config error naming the path."""
    with pytest.raises(ConfigError, match="input file not found"):
        list(read_items(tmp_path / "missing.txt"))


def test_duplicates_are_sent_once(tmp_path: Path) -> None:
    """iter_pending yields a URL listed twice once and counts the duplicate (invalid lines too)."""
    items = read(tmp_path, f"{A}\n{B}\n{A}\nftp://x\nftp://x\n{A}\n".encode())
    counts = PendingCounts()
    pending = [item for _, item in iter_pending(items, ResumeIndex(), counts)]
    assert [i.key for i in pending] == [A, B, "ftp://x"]
    assert (counts.pending, counts.invalid, counts.duplicates, counts.done) == (2, 1, 3, 0)


def test_finished_keys_are_skipped(tmp_path: Path) -> None:
    """Keys the resume index holds as ok or permanently failed are skipped.

    Retryable ones are pending.
    """
    c = "https://img.example.test/c.jpg"
    index = ResumeIndex()
    index.add(A, "ok", True)
    index.add(B, "error", True)
    index.add(c, "error", False)
    counts = PendingCounts()
    pending = [
        item.key
        for _, item in iter_pending(read(tmp_path, f"{A}\n{B}\n{c}\n".encode()), index, counts)
    ]
    assert pending == [c]
    assert (counts.done, counts.failed, counts.pending) == (2, 1, 1)
