"""Stopping well: the first SIGINT/SIGTERM/SIGHUP stops new work, a second one exits at once.

SIGHUP is what a run gets when its terminal goes away (an ssh connection dropped, a terminal
window closed): left to its default it killed the run with requests in flight, answered and
billed but never recorded, so the next run paid for them again. It now stops the run as
SIGTERM does (exit 129), with the terminal's streams moved to /dev/null first: writing to a
terminal that hung up fails (EIO), and the summary would have ended the run in a traceback.
A run started under ``nohup`` (SIGHUP ignored) keeps ignoring it.

Also the wait for another run's output lock, which a signal cuts short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from runner.clock import sleep_or_stop
from runner.errors import Interrupted, RunLocked
from runner.io.store import AFTER_IT, ResultWriter, RunLock
from runner.logs import direct_line, for_stderr

log = logging.getLogger(__name__)


class SignalStop:
    """First signal: stop starting work, cancel what is left after the grace period.
    Second signal: flush every writer and exit at once.

    The handlers are plain ``signal.signal`` ones, not ``loop.add_signal_handler``: Python
    runs them between bytecodes even while the loop is busy in synchronous code (skipping a
    million finished lines), so ``flag`` stops the input at once and a second signal exits
    at once; the rest of the first signal's work is handed to the loop."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.event = asyncio.Event()
        self.flag = threading.Event()  # the same, readable from sync code and threads
        self.signame: str | None = None
        self.writers: list[ResultWriter] = []
        # what a second signal writes before its notice (the live display's frame_gone)
        self.screen: list[Callable[[], str]] = []
        self.current: asyncio.Task[Any] | None = None
        self._first: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}
        self._terminal: list[int] = []  # standard streams that are a terminal (at install)

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        # asked now: once the terminal hangs up, isatty() says no (its ioctl fails)
        self._terminal = [fd for fd in (0, 1, 2) if _isatty(fd)]
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # nohup: the person asked for the run to outlive the terminal
                self._previous[sig] = signal.signal(sig, self._on_os_signal)
            except (ValueError, OSError):  # not the main thread
                pass

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _on_os_signal(self, sig: int, frame: Any) -> None:
        name = signal.Signals(sig).name
        if sig == signal.SIGHUP:
            _to_devnull(self._terminal)
        if self._first is not None:
            code = Interrupted(self._first).exit_code
            notice = direct_line(
                f"second {name}: exiting at once; answers to requests still in flight are lost "
                "(the next run sends those requests again)",
                event="second signal: exiting at once",
                level="warning",
                signal=name,
                exit_code=code,
            )
            if name != "SIGHUP":  # a terminal that hung up has no width to wrap to
                notice = for_stderr(notice)
            os.write(2, (self._screen_cleared() + notice + "\n").encode())
            for writer in self.writers:
                with contextlib.suppress(Exception):
                    writer.close()
            os._exit(code)
        self._first = name
        self.flag.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_signal, sig)

    def _screen_cleared(self) -> str:
        out = []
        for clear in self.screen:
            with contextlib.suppress(Exception):  # the notice and the exit come first
                out.append(clear())
        return "".join(out)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        self.signame = name
        self.event.set()
        log.warning(
            "stopping: no new requests; in-flight ones get the grace period "
            "(a second signal stops at once)",
            extra={"signal": name, "grace_s": self.grace_s},
        )
        asyncio.get_running_loop().call_later(self.grace_s, self._cancel_current)

    def _cancel_current(self) -> None:
        if self.current is not None and not self.current.done():
            self.current.cancel()


async def acquire_lock(
    lock: RunLock,
    *,
    wait: bool,
    stop: asyncio.Event,
    poll_s: float = 0.2,
    advice: str = AFTER_IT,
    say: Callable[[str], None] | None = None,
) -> None:
    """Take the output lock; with ``wait`` poll for it (a signal still stops the wait). ``say``
    tells a person at a terminal that the run waits and for whom: a blank screen for as long
    as another run takes looked like a hang (the event alone shows only with -v)."""
    try:
        lock.acquire(advice=advice)
        return
    except RunLocked:
        if not wait:
            raise
    log.info(
        "waiting for the output lock", extra={"lock": str(lock.path), "holder_pid": lock.holder()}
    )
    if say is not None:
        say(f"{lock.describe_holder()}; waiting for it to finish (Ctrl-C stops the wait)")
    while True:
        if await sleep_or_stop(poll_s, stop):
            raise RunLocked(f"stopped while waiting: {lock.describe_holder()}")
        try:
            lock.acquire()
            return
        except RunLocked:
            continue


def tell_person(text: str) -> None:
    """``glmrun: text`` on stderr, for a person at a terminal before any live display runs;
    wrapped at spaces to the terminal's width, as warnings are."""
    print(for_stderr(f"glmrun: {text}"), file=sys.stderr, flush=True)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _to_devnull(fds: list[int]) -> None:
    """Point ``fds`` (the streams that were the terminal) at /dev/null: once the terminal has
    hung up, every write to it fails with EIO. Files and pipes are left as they are."""
    if not fds:
        return
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in fds:
            os.dup2(null, fd)
        os.close(null)
