"""Pure: which shard owns an item, and the names of a shard's output file and work folder.

``--shard I/N`` splits a job across N processes with no coordination: shard I owns the items
whose key hash (``runner.core.keys``) modulo N is I. The hash does not depend on input order,
so every process that reads the same input agrees on the split, and appending lines never
moves an item from one shard to another. Each shard appends to its own file beside the job's
output (``out/describe.jsonl`` -> ``out/describe.shard-2-of-8.jsonl``), with its own lock and
batch work folder; readers merge the main file and every shard file, whatever N wrote them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``--shard I/N``): the items whose key hash mod ``count`` is
    ``index``."""

    index: int
    count: int

    def owns(self, h: int) -> bool:
        """True when the item with key hash ``h`` belongs to this shard."""
        return h % self.count == self.index

    @property
    def label(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard | None:
    """``"I/N"`` -> Shard(I, N); ``0/1`` (the whole job) -> None. Raises ValueError with a
    message for people on anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"expected I/N (for example 2/8), found {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"N must be at least 1, found {text!r}")
    if index >= count:
        raise ValueError(f"I must be between 0 and N-1 ({count - 1}), found {text!r}")
    return None if count == 1 else Shard(index, count)


def shard_output_name(output_name: str, shard: Shard) -> str:
    """``describe.jsonl`` -> ``describe.shard-2-of-8.jsonl`` (no suffix: ``name.shard-2-of-8``)."""
    path = PurePath(output_name)
    stem, suffix = (path.stem, path.suffix) if path.suffix else (path.name, "")
    return f"{stem}.{shard.label}{suffix}"


def shard_of_name(output_name: str, candidate: str) -> Shard | None:
    """The shard whose output file is ``candidate`` for the job output ``output_name``, or None
    when ``candidate`` is not such a file (e.g. another job's output, a lock, a temp file)."""
    path = PurePath(output_name)
    stem, suffix = (path.stem, path.suffix) if path.suffix else (path.name, "")
    match = re.fullmatch(re.escape(stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(suffix), candidate)
    if not match:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    if count < 2 or index >= count or str(index) != match.group(1) or str(count) != match.group(2):
        return None  # leading zeros or out of range: not a name glmrun writes
    return Shard(index, count)


def shard_work_name(job_name: str, shard: Shard | None) -> str:
    """The batch work folder's name under ``.glmrun/``: the job's, or ``<job>.shard-I-of-N``."""
    return job_name if shard is None else f"{job_name}.{shard.label}"


def shard_max_queued(max_queued: int, shard: Shard | None) -> int:
    """``batch.max_queued`` is per account and model: N shards share it, each 1/N (at least 1)."""
    return max_queued if shard is None else max(1, max_queued // shard.count)
