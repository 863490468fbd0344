"""SignalStop reacts to a signal even while the event loop is stuck in synchronous code."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from runner.app.signals import SignalStop


async def test_a_signal_sets_the_flag_while_the_loop_is_busy_and_the_event_after() -> None:
    """The thread-safe flag is set between bytecodes (so input reading stops at once); the
    asyncio event follows as soon as the loop runs again; the old handler comes back."""
    before = signal.getsignal(signal.SIGTERM)
    stop = SignalStop(grace_s=5.0)
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 2
        while not stop.flag.is_set() and time.monotonic() < deadline:
            pass  # busy, synchronous: the loop cannot run a callback here
        assert stop.flag.is_set() and not stop.event.is_set()
        await asyncio.wait_for(stop.event.wait(), 1)
        assert stop.signame == "SIGTERM"
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before
