"""The live state every part of the simulator shares: knobs, counters, clock, RNG, ids and
the closing event, plus the atomic write used to persist files and batches in `state_dir`.

Handlers hold this object, not copies of its fields: `reset_stats()` swaps in a new `stats`,
and every handler must count into the new one.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from pathlib import Path

from runner.simulator.settings import SimSettings, SimStats


class SimState:
    """Shared by chat, files and batches; `Simulator` is one (it extends this class)."""

    def __init__(
        self, settings: SimSettings, clock: Callable[[], float], state_dir: Path | None
    ) -> None:
        self.settings = settings
        self.stats = SimStats()
        self.clock = clock
        self.state_dir = state_dir
        self.rng = random.Random(settings.seed)
        self.started_at = clock()  # t=0 of limit_schedule; reset by start() and /_sim/reset
        self.closing = asyncio.Event()  # set by close(): wakes hanging and trickling answers
        self._seq = 0
        self._id_base = 8_700_000_000_000_000_000 + random.Random().randrange(10**14) * 1000

    def next_id(self) -> str:
        """A completion id, unique within this process (chat answers and batch results)."""
        self._seq += 1
        return str(self._id_base + self._seq)


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a killed simulator never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
