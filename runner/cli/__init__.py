"""The ``glmrun`` command line: one module per command and a shared helpers module.

Importing it as the program (the ``glmrun`` script, ``python -m runner``) first installs a
bare SIGTERM handler that exits 143, so a signal in the first moments of a run,
before ``app.signals.SignalStop`` takes over, still gives the documented exit code (nothing
has been sent by then, nothing is open to flush), and raises the collector's threshold until
the event loop starts (``runner.bulk.pause_gc_for_start_up``: about 20 ms less to the first
request).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from runner.bulk import pause_gc_for_start_up


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


def install_early_signals(argv0: str) -> bool:
    """Install the bare SIGTERM handler when this process is the glmrun program (SIGINT keeps
    Python's KeyboardInterrupt, which commands may rely on to clean up); True if installed."""
    name = os.path.basename(argv0)
    if name not in ("glmrun", "__main__.py") or (
        name == "__main__.py" and os.path.basename(os.path.dirname(argv0)) != "runner"
    ):
        return False
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_now)
    except (ValueError, OSError):  # not the main thread
        return False
    return True


if install_early_signals(sys.argv[0] if sys.argv else ""):
    pause_gc_for_start_up()  # the program: until its event loop starts (runner.bulk)
