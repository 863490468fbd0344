"""Pure: which keys are finished, per the latest record of each (8-byte key hashes, no records).

A job's records may be spread over several files (its main output and one per shard, see
``runner.core.shard``); the job's index is the merge of the per-file indexes (``merge``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.core.keys import key_hash


@dataclass
class ResumeIndex:
    """Which keys are finished (ok, or a permanent error) per the latest record of each."""

    ok: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    retryable: set[int] = field(default_factory=set)
    records: int = 0
    corrupt_lines: list[int] = field(default_factory=list)

    def is_done(self, h: int) -> bool:
        return h in self.ok or h in self.failed

    def add(self, key: str, status: str | None, final: bool) -> None:
        self.add_hash(key_hash(key), status, final)

    def add_hash(self, h: int, status: str | None, final: bool) -> None:
        if status == "ok":
            self.ok.add(h)
            self.failed.discard(h)
            self.retryable.discard(h)
        elif final:
            self.failed.add(h)
            self.ok.discard(h)
            self.retryable.discard(h)
        else:
            self.retryable.add(h)
            self.ok.discard(h)
            self.failed.discard(h)

    def merge(self, other: ResumeIndex) -> None:
        """Fold another file's index into this one. Files have no order between them, so a
        finished state wins: ok over a permanent error over a retryable one (a key finished in
        any file is never sent again)."""
        self.ok |= other.ok
        self.failed |= other.failed
        self.failed -= self.ok
        self.retryable |= other.retryable
        self.retryable -= self.ok
        self.retryable -= self.failed
        self.records += other.records
        self.corrupt_lines.extend(other.corrupt_lines)

    def __repr__(self) -> str:
        sizes = f"ok={len(self.ok)} failed={len(self.failed)} retryable={len(self.retryable)}"
        return f"<ResumeIndex {sizes}>"
