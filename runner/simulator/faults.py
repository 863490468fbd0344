"""Control-plane faults: the files and batches calls answered with an error, or performed with
their answer dropped, by call kind, at a given rate or on the n-th call.

`SimSettings.control_faults` is a list of mappings, each one fault rule::

    {"call": "retrieve", "status": 404, "code": "1214", "nth": 2}       # the 2nd poll: a 404
    {"call": "create", "lose": true, "rate": 0.08}                      # created, answer lost
    {"call": "list", "status": 500, "code": "1214", "nth": 1, "count": 3}  # calls 1-3 fail
    {"call": "*", "status": 500, "rate": 0.15}                          # any control call

`call` is one of `CALL_KINDS` (or "*"); `nth` (1-based, per kind) with `count` (default 1;
0 = every call from the n-th on) or `rate` (a fraction, drawn from the seeded RNG) says when;
`status`/`code`/`message` what the error answer says (a 429 carries Retry-After when
`retry_after_s` is set); `lose: true` performs the call and then closes the socket instead of
answering. The first matching rule wins. `SimStats.calls` counts calls per kind,
`faults_injected` the errors answered and `answers_lost` the answers dropped.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CALL_KINDS = frozenset(
    {
        "upload",
        "list_files",
        "get_file",
        "file_content",
        "delete_file",
        "create",
        "retrieve",
        "list",
        "cancel",
    }
)
_MESSAGE = "control-plane fault (simulated)"
_FIELDS = frozenset({"call", "status", "code", "message", "nth", "count", "rate", "lose"})


@dataclass(frozen=True, slots=True)
class ControlFault:
    call: str
    status: int = 500
    code: str = "500"
    message: str = _MESSAGE
    nth: int | None = None
    count: int = 1
    rate: float = 0.0
    lose: bool = False

    @classmethod
    def parse(cls, d: Mapping[str, Any]) -> ControlFault:
        """A rule from YAML/JSON; unknown fields or kinds raise ValueError naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"control_faults: expected a mapping, found {d!r}")
        unknown = set(d) - _FIELDS
        if unknown:
            raise ValueError(f"control_faults: unknown field(s) {sorted(unknown)}")
        call = str(d.get("call", ""))
        if call != "*" and call not in CALL_KINDS:
            raise ValueError(
                f"control_faults: unknown call {call!r} (expected * or {sorted(CALL_KINDS)})"
            )
        nth = d.get("nth")
        rate = float(d.get("rate", 0.0))
        if nth is None and not 0 < rate <= 1:
            raise ValueError(f"control_faults[{call}]: give nth or a rate in (0, 1]")
        status = int(d.get("status", 500))
        return cls(
            call=call,
            status=status,
            code=str(d.get("code", status)),
            message=str(d.get("message", _MESSAGE)),
            nth=None if nth is None else int(nth),
            count=int(d.get("count", 1)),
            rate=rate,
            lose=bool(d.get("lose", False)),
        )

    def hits(self, kind: str, n: int, rng: random.Random) -> bool:
        """Whether the n-th call (1-based) of `kind` gets this fault."""
        if self.call not in ("*", kind):
            return False
        if self.nth is not None:
            return n >= self.nth and (self.count == 0 or n < self.nth + self.count)
        return rng.random() < self.rate


def pick_fault(
    rules: list[dict[str, Any]], kind: str, n: int, rng: random.Random
) -> ControlFault | None:
    """The first rule that hits the n-th call of `kind`, if any."""
    for raw in rules:
        fault = ControlFault.parse(raw)
        if fault.hits(kind, n, rng):
            return fault
    return None
