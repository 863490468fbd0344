"""aiohttp, imported with its CA read off the main thread.

aiohttp builds two default TLS contexts when it is imported, and each reads the system's CA
bundle (``SSLContext.set_default_verify_paths``: 30-45 ms each on a small machine, together
about a fifth of a one-URL run's start-up). That read is C code that releases the GIL, so
while ``import aiohttp`` runs here the method is swapped for one that starts the same read on
a thread of its own; the import and glmrun's own start go on meanwhile, and the client waits
for the read before it opens its session (``wait_for_ca``). The second context verifies no
peer (``CERT_NONE``: aiohttp's ``ssl=False``, which glmrun never asks for); a CA bundle is
never consulted there, so it is not read at all, which leaves the machine's other core to
the read that matters. The contexts are the ones aiohttp builds, in the state it leaves them
once the read is done, and nothing can use them before (no session exists). Outside that one
import the method is the C one again.

Measured with ``benchmarks/run_all.py --only startup``, three paired runs: glmrun's own share
of start-up over the floor (which pays both reads in turn) went from +0.08-0.11 s to
+0.01-0.06 s with both reads on threads. When aiohttp is already imported (a test, the
simulator in the same process) there is nothing to overlap and nothing is swapped."""

from __future__ import annotations

import ssl
import sys
import threading


class _Load(threading.Thread):
    """One context's CA read; its error, if any, is raised by ``wait_for_ca`` in the caller
    (where the import itself would have raised it)."""

    def __init__(self, load: object, ctx: ssl.SSLContext):
        super().__init__(name="glmrun-ca-load", daemon=True)
        self._load, self._ctx = load, ctx
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._load(self._ctx)  # type: ignore[operator]
        except BaseException as exc:  # handed to the thread that waits
            self.error = exc


def _import_aiohttp() -> list[_Load]:
    if "aiohttp" in sys.modules:
        return []
    loads: list[_Load] = []
    load = ssl.SSLContext.set_default_verify_paths
    own = ssl.SSLContext.__dict__.get("set_default_verify_paths")  # None: inherited from C

    def on_a_thread(ctx: ssl.SSLContext) -> None:
        if ctx.verify_mode == ssl.CERT_NONE:
            return  # verifies no peer: a CA bundle it would never consult
        loads.append(_Load(load, ctx))
        loads[-1].start()

    ssl.SSLContext.set_default_verify_paths = on_a_thread  # type: ignore[method-assign,assignment]
    try:
        import aiohttp  # noqa: F401 - the import this module exists for
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths  # the inherited C method again
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]
    return loads


_LOADS = _import_aiohttp()


def wait_for_ca() -> None:
    """Return once aiohttp's verifying TLS context holds the system's CA bundle; raise what
    the read raised (what ``import aiohttp`` would have raised)."""
    for load in _LOADS:
        load.join()
        if load.error is not None:
            raise load.error
