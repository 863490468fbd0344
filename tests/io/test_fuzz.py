"""Hypothesis fuzzing of the input reader and the output record parser."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.core.items import InvalidLine, Item
from runner.core.keys import key_hash
from runner.errors import ConfigError
from runner.io.inputs import is_local_ref, parse_line, read_items
from runner.io.store import load_resume_index

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_SCRATCH_DIR = tempfile.mkdtemp(prefix="glmrun-fuzz-")
atexit.register(shutil.rmtree, _SCRATCH_DIR, True)
_SCRATCH = Path(_SCRATCH_DIR) / "o.jsonl"  # one file, rewritten per example

url_like = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda t: ("https://" + t).encode("utf-8", "surrogatepass")),
    st.text(max_size=100).map(lambda t: ("http://h.example/" + t).encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(url_like)
def test_parse_line_never_raises_and_items_are_sendable(raw: bytes) -> None:
    """Any bytes give an Item or an InvalidLine; an Item is a local reference (checked later)
    or an http(s) URL without spaces or NUL."""
    line = raw.replace(b"\n", b"")
    result = parse_line(line, 1)
    assert isinstance(result, (Item, InvalidLine))
    if isinstance(result, Item) and is_local_ref(result.url):
        assert result.url.encode() == line  # checked against local_files.allowed_dirs at plan time
    elif isinstance(result, Item):
        assert result.url.lower().startswith(("http://", "https://"))
        assert not any(ch.isspace() for ch in result.url) and "\x00" not in result.url
        assert result.url.encode() == line
        key_hash(result.key)
    else:
        assert result.reason
        key_hash(result.key)


@FUZZ
@given(st.lists(url_like, max_size=30), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_read_items_yields_one_result_per_non_blank_non_comment_line(
    lines: list[bytes], eol: bytes, bom: bool
) -> None:
    """The reader never drops or invents a line, whatever the bytes; it raises only for a file
    that starts with a UTF-16 byte order mark, refused whole as UTF-16 (a config error, exit 2:
    every line of it would be an invalid_input record)."""
    lines = [line.replace(b"\n", b"").replace(b"\r", b"") for line in lines]
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + eol for line in lines)
    path = _SCRATCH.with_suffix(".txt")
    path.write_bytes(data)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        with pytest.raises(ConfigError, match="the file is UTF-16"):
            list(read_items(path))
        return
    results = list(read_items(path))
    seen = list(lines)
    if seen and not bom:
        seen[0] = seen[0].removeprefix(b"\xef\xbb\xbf")  # a BOM that starts the file is a BOM
    expected = [
        n
        for n, line in enumerate(seen, start=1)
        if line.strip(b" \t\r\n\x0b\x0c") and not line.strip(b" \t\r\n\x0b\x0c").startswith(b"#")
    ]
    assert [r.line_no for r in results] == expected


records = st.builds(
    lambda url, ok, extra: {
        "url": url,
        "status": "ok" if ok else "error",
        **({} if ok else {"error": {"code": "x", "message": "m", "retryable": False}}),
        **extra,
    },
    st.text(min_size=1, max_size=40),
    st.booleans(),
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("url", "key", "status", "error")),
        st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
        max_size=3,
    ),
)


def _is_record(line: bytes) -> bool:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict)


garbage = (
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")).filter(lambda b: not _is_record(b))
)


@FUZZ
@given(st.lists(st.one_of(records, garbage), max_size=40), st.binary(max_size=40))
def test_record_parser_never_raises_and_keeps_every_valid_line(
    entries: list[object], tail: bytes
) -> None:
    """Valid records between garbage lines and before a torn tail are all in the index."""
    body = b"".join((orjson.dumps(e) if isinstance(e, dict) else e) + b"\n" for e in entries)
    _SCRATCH.write_bytes(body + tail.replace(b"\n", b""))
    index = load_resume_index(_SCRATCH)
    latest: dict[str, str] = {}
    for e in entries:
        if isinstance(e, dict):
            latest[e["url"]] = e["status"]
    assert index.sets()[0] == {key_hash(u) for u, s in latest.items() if s == "ok"}
    assert index.sets()[1] == {key_hash(u) for u, s in latest.items() if s == "error"}
    assert index.records == sum(isinstance(e, dict) for e in entries)
    garbage_lines = [
        n for n, e in enumerate(entries, start=1) if not isinstance(e, dict) and e.strip()
    ]
    assert index.corrupt_lines == garbage_lines
