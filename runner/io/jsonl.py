"""The one reader of glmrun's output JSONL: resume, status, cost and export all read through it.

Rules, the same for every reader:
- a line is a record when it parses as a JSON object; anything else (a bad middle line, a
  half-written line from another tool) is skipped and reported with its line number;
- the last line may lack its newline: if it is still a whole JSON object it counts (the
  writer adds the newline back before its first append); otherwise it is a torn tail, left
  by a kill, and is skipped (the writer cuts it);
- fields the reader does not know (newer versions, user tools) are kept, never an error;
- ``size`` reads a snapshot: bytes appended after it are not seen (export's two passes).

Blocks of 8 MB keep the read fast (a million records in well under a second of I/O) and
memory flat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from runner.core.records import Record
from runner.errors import OutputError

log = logging.getLogger(__name__)

BLOCK = 8 << 20


def parse_record(line: bytes) -> Record | None:
    """The record on ``line``, or None when the line is not a JSON object."""
    try:
        record: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _open_at(path: Path, start: int) -> BinaryIO | None:
    """``path`` open for reading at byte ``start``; None when it does not exist, an
    ``OutputError`` when it cannot be read (a folder, no permission)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the output: {exc.strerror}") from None
    if start:
        handle.seek(start)
    return handle


def iter_blocks(
    path: Path, size: int | None = None, *, start: int = 0, ends: list[int] | None = None
) -> Iterator[bytes]:
    """Blocks of whole lines, each ending in a newline (an untorn last line gets one added),
    from byte ``start`` (a line start) to ``size``; ``ends`` gets the offset just after the
    last newline read (where a later scan can start).

    A missing file yields nothing; one that cannot be read is an ``OutputError``."""
    handle = _open_at(path, start)
    if handle is None:
        return
    block = BLOCK  # read at call time: tests shrink it to split records across blocks
    with handle:
        remaining = None if size is None else size - start
        rest = b""
        whole = start
        lines = 0
        while remaining is None or remaining > 0:
            chunk = handle.read(block if remaining is None else min(block, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            lines += data.count(b"\n", 0, cut)
            whole += cut
            if ends is not None:
                ends.append(whole)
            yield data[:cut]
        if rest and parse_record(rest) is not None:
            yield rest + b"\n"  # whole, only its newline is missing
        elif rest:
            log.info(
                "torn last line", extra={"file": str(path), "line": lines + 1, "bytes": len(rest)}
            )


def iter_spans(
    path: Path, *, start: int = 0, ends: list[int] | None = None
) -> Iterator[tuple[bytes, int]]:
    """``iter_blocks`` for a regex scan, without its copies: ``(data, end)`` where
    ``data[:end]`` is whole lines, each preceded by a newline (the first one too), so
    ``pattern.findall(data, 0, end)`` sees every line as ``\n...``. One concatenation per
    8 MB block (``iter_blocks`` makes three: a 10-million-record scan is 3.6 GB of memcpy
    fewer). Same rules: the last line counts only if whole, ``ends`` as in ``iter_blocks``."""
    handle = _open_at(path, start)
    if handle is None:
        return
    block = BLOCK  # read at call time: tests shrink it to split records across blocks
    with handle:
        rest = b""
        whole = start
        while chunk := handle.read(block):
            data = b"\n" + rest + chunk
            end = data.rfind(b"\n")
            if end == 0:
                rest = data[1:]
                continue
            rest = data[end + 1 :]
            whole += end  # the leading newline is not the file's
            if ends is not None:
                ends.append(whole)
            yield data, end
        if rest and parse_record(rest) is not None:
            yield b"\n" + rest, len(rest) + 1  # whole, only its newline is missing
        elif rest:
            log.info("torn last line", extra={"file": str(path), "bytes": len(rest)})


FIRST_LINE_MAX = 1 << 20  # a first record longer than this is taken on trust


def foreign_first_line(path: Path) -> str | None:
    """The first line of an existing ``path`` that is plainly not a record (a file that is not
    glmrun's output, about to get records appended), shortened; None when ``path`` is missing,
    empty, starts with a record, or with a record torn by a kill (no newline yet)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(FIRST_LINE_MAX)
    except OSError:
        return None  # missing, or unreadable: the run's own open says so
    line, newline, _ = head.lstrip(b"\r\n\t ").partition(b"\n")
    if not line or parse_record(line) is not None:
        return None
    if not newline and line.startswith(b"{"):
        return None  # the first record, torn (or longer than what was read)
    text = line.decode("utf-8", "replace").strip()
    return text if len(text) <= 40 else text[:37] + "..."


def iter_lines(path: Path, size: int | None = None) -> Iterator[bytes]:
    """Every line (newline included) of the file or of its first ``size`` bytes."""
    for data in iter_blocks(path, size):
        start = 0
        end = data.find(b"\n")
        while end >= 0:
            yield data[start : end + 1]
            start = end + 1
            end = data.find(b"\n", start)


def iter_records(
    path: Path, corrupt: list[int] | None = None, size: int | None = None
) -> Iterator[Record]:
    """Every record of the file; a line that is not one is logged and its number collected."""
    for line_no, line in enumerate(iter_lines(path, size), start=1):
        record = parse_record(line)
        if record is not None:
            yield record
        elif line.strip():
            skipped_line(path, line_no, corrupt)


SKIPPED_SHOWN = 3  # lines that are not records, warned one by one per scan; then one line


def skipped_line(path: Path, line_no: int, corrupt: list[int] | None) -> None:
    """Report a line that is not a JSON record (the run goes on without it): the first few
    of a scan one by one, then once that more follow (not a screenful per run)."""
    seen = len(corrupt) if corrupt is not None else 0
    if seen < SKIPPED_SHOWN:
        log.warning(
            "skipped a line that is not a JSON record", extra={"file": str(path), "line": line_no}
        )
    elif seen == SKIPPED_SHOWN:
        log.warning(
            "more lines that are not JSON records skipped; not listed",
            extra={"file": str(path), "from_line": line_no},
        )
    if corrupt is not None:
        corrupt.append(line_no)
