"""``glmrun export``: a job's records as CSV or JSONL, the latest record per key, streamed.

Memory does not grow with the records, only with the number of lines and keys:

1. First pass: each whole line's 8-byte key hash goes into an ``array('Q')`` (8 bytes/line).
2. Walking that array backwards with a set of seen hashes marks the last line of each key in
   a ``bytearray`` (1 byte/line); the array and the set are dropped before step 3.
3. Second pass: the marked lines are written out in file order; JSONL without ``--columns``
   copies the line bytes as they are (no re-encoding).

A job run as shards (``run --shard I/N``) has several output files; ``export`` reads them all
(``runner.io.job_files``) and writes one record per key across them: in each file the latest,
and across files the finished one (ok over a permanent error over an invalid input line over a
retryable error, as resume decides), ties going to the file listed later. That needs a map of
key hash -> winning file (about 100 bytes per key), only when there is more than one file.

Both passes stop at the file size seen at the start, so a run appending meanwhile cannot
make them disagree; a torn last line is skipped. ``-o FILE`` is written to a temp file and
renamed, so a failed export never leaves half a file under the final name.
"""

from __future__ import annotations

import csv
import io
import os
from array import array
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from runner.core.keys import key_hash
from runner.core.records import is_final, is_invalid_input, record_key, unknown_field
from runner.errors import ConfigError, OutputError
from runner.io.jsonl import iter_lines, parse_record

Format = Literal["csv", "jsonl"]
DEFAULT_COLUMNS = (
    "key",
    "url",
    "status",
    "content",
    "finish_reason",
    "error.code",
    "error.message",
    "usage.prompt_tokens",
    "usage.completion_tokens",
    "model",
    "via",
    "attempts",
    "finished_at",
)
_NO_KEY = 0  # marker hash for lines that are not records (never exported)


def _scan(path: Path, size: int, ranks: bytearray | None = None) -> array[int]:
    """The key hash of every whole line (``_NO_KEY`` for a line that is not a record); with
    ``ranks``, each line's ``_rank`` too."""
    hashes = array("Q")
    for line in iter_lines(path, size):
        record = parse_record(line)
        key = None if record is None else record_key(record)
        hashes.append(_NO_KEY if key is None else key_hash(key) or 1)
        if ranks is not None:
            ranks.append(0 if record is None else _rank(record))
    return hashes


def _last_of_each(hashes: array[int]) -> bytearray:
    """A flag per line: 1 where the line is the last one of its key."""
    winners = bytearray(len(hashes))
    seen: set[int] = set()
    for i in range(len(hashes) - 1, -1, -1):
        h = hashes[i]
        if h != _NO_KEY and h not in seen:
            seen.add(h)
            winners[i] = 1
    return winners


def latest_lines(path: Path, size: int) -> bytearray:
    """A flag per whole line: 1 where the line is the latest record of its key."""
    return _last_of_each(_scan(path, size))


def merged_winners(paths: list[Path], sizes: list[int]) -> list[bytearray]:
    """Per file, a flag per whole line: 1 where the line is the record exported for its key
    (the latest in its file, and the best across files)."""
    per_file: list[tuple[array[int], bytearray]] = []
    best: dict[int, int] = {}  # key hash -> rank << 16 | file number
    for n, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        ranks = bytearray()
        hashes = _scan(path, size, ranks)
        winners = _last_of_each(hashes)
        for i, flag in enumerate(winners):
            if flag:
                h, score = hashes[i], ranks[i] << 16 | n
                if score >= best.get(h, -1):
                    best[h] = score
        per_file.append((hashes, winners))
    out = []
    for n, (hashes, winners) in enumerate(per_file):
        for i, flag in enumerate(winners):
            if flag and best[hashes[i]] & 0xFFFF != n:
                winners[i] = 0  # another file holds a better record of this key
        out.append(winners)
    return out


def _rank(record: dict[str, Any]) -> int:
    """ok 3, a permanent error 2, an invalid input line 1 (never sent), anything else 0:
    across files a finished record wins, in the order resume merges files
    (``runner.core.resume.ResumeIndex.merge``)."""
    if record.get("status") == "ok":
        return 3
    if is_invalid_input(record):
        return 1
    return 2 if is_final(record) else 0


def column_value(record: dict[str, Any], column: str) -> Any:
    """``key`` (key or url), a top-level field, or a dotted path (usage.prompt_tokens, meta.x)."""
    if column == "key":
        return record_key(record)
    value: Any = record
    for part in column.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    """A CSV cell: text as it is, JSON's spelling of true/false/numbers, objects as JSON."""
    match value:
        case None:
            return ""
        case str():
            return value
        case bool():
            return "true" if value else "false"
        case int() | float():
            return str(value)
        case _:
            return orjson.dumps(value).decode()


def export_records(
    source: Path | list[Path],
    out: IO[bytes],
    *,
    fmt: Format = "jsonl",
    latest_only: bool = True,
    columns: list[str] | None = None,
    status: str | None = None,
) -> int:
    """Write the records of ``source`` (one output file, or every file of a job) to ``out``;
    returns how many were written. ``status`` (ok / error) keeps only records with that status
    (the latest per key)."""
    for column in columns or ():
        problem = unknown_field(column)
        if problem:
            raise ConfigError(f"--columns: {problem}")
    paths = [source] if isinstance(source, Path) else source
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            sizes.append(-1)
    present = [(p, n) for p, n in zip(paths, sizes, strict=True) if n >= 0]
    if not present:
        raise ConfigError(f"{paths[0]}: no output file yet (nothing to export)")
    paths, sizes = [p for p, _ in present], [n for _, n in present]
    if not latest_only:
        winners: list[bytearray | None] = [None] * len(paths)
    elif len(paths) == 1:
        winners = [latest_lines(paths[0], sizes[0])]
    else:
        winners = list(merged_winners(paths, sizes))
    cols = columns or (list(DEFAULT_COLUMNS) if fmt == "csv" else None)
    text = (
        io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        if fmt == "csv"
        else None
    )
    writer = csv.writer(text) if text is not None else None
    if writer is not None and cols is not None:
        writer.writerow(cols)
    written = 0
    for path, size, flags in zip(paths, sizes, winners, strict=True):
        written += _write_lines(path, size, flags, out, writer, cols, status)
    if text is not None:
        text.flush()
        text.detach()
    out.flush()
    return written


def _write_lines(
    source: Path,
    size: int,
    winners: bytearray | None,
    out: IO[bytes],
    writer: Any,
    cols: list[str] | None,
    status: str | None = None,
) -> int:
    """The second pass over one file: the flagged lines (or all records) in file order."""
    written = 0
    for i, line in enumerate(iter_lines(source, size)):
        if winners is not None and (i >= len(winners) or not winners[i]):
            # i past the first pass: a run cut the torn tail and appended since; not in the snapshot
            continue
        if winners is not None and cols is None and status is None:
            out.write(line)  # a winner is a record with a key: copied as it is
            written += 1
            continue
        record = parse_record(line)
        if record is None or record_key(record) is None:
            continue
        if status is not None and record.get("status") != status:
            continue
        if writer is not None:
            writer.writerow([_cell(column_value(record, c)) for c in cols or ()])
        elif cols is not None:
            out.write(orjson.dumps({c: column_value(record, c) for c in cols}) + b"\n")
        else:
            out.write(line)
        written += 1
    return written


def export_to(
    source: Path | list[Path], target: Path | None, stdout: IO[bytes], **options: Any
) -> int:
    """Export to ``target`` (temp file + rename) or to ``stdout`` when target is None."""
    if target is None:
        return export_records(source, stdout, **options)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            n = export_records(source, handle, **options)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the export: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
