"""The one way tests read glmrun's JSONL output back: whole lines, in order, latest per key."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

Record = dict[str, Any]


def read_records(path: Path, *, torn_tail_ok: bool = False) -> list[Record]:
    """Every record of an output file, in order; ``[]`` while the file does not exist.

    Every line must parse and the file must end with a newline, as the writer leaves it. With
    ``torn_tail_ok`` the bytes after the last newline are dropped first, as a new run sees a
    file that a kill cut mid-write.
    """
    data = path.read_bytes() if path.exists() else b""
    if torn_tail_ok:
        data = data[: data.rfind(b"\n") + 1]
    assert not data or data.endswith(b"\n"), f"{path}: the last line is torn"
    return [orjson.loads(line) for line in data.splitlines()]


def latest(records: Iterable[Record]) -> dict[str, Record]:
    """The latest record per key (``key``, else ``url``), as the resume index sees them."""
    out: dict[str, Record] = {}
    for record in records:
        out[record.get("key", record["url"])] = record
    return out


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """Rows as JSON lines (an input file, or an output file a test fakes)."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path
