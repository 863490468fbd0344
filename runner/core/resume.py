"""Pure: which keys are finished, per the latest record of each (8-byte key hashes, no records)."""

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

    def __repr__(self) -> str:
        sizes = f"ok={len(self.ok)} failed={len(self.failed)} retryable={len(self.retryable)}"
        return f"<ResumeIndex {sizes}>"
