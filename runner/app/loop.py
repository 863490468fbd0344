"""Which event loop runs glmrun: uvloop when it is installed (``pip install -e '.[fast]'``),
else asyncio's own. ``GLMRUN_LOOP=asyncio`` forces the standard loop (to compare, or to rule
uvloop out when debugging)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from runner.bulk import start_up_over


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("GLMRUN_LOOP", "auto") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = (
        uvloop.new_event_loop
    )  # uvloop is untyped here
    return factory


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    start_up_over()  # what the process imported stays; the collector's usual pace again
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
