"""Before a run sends anything: is the API host reachable at all?

A refused connection or a host that does not resolve would otherwise turn every pending URL
into a retryable error record after its retries (a million lines of noise for one typo or
one network outage). One cheap probe, retried a few times for flaky DNS, ends the run early
instead, with nothing recorded and the work still pending: ``Unreachable`` (exit 75).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from runner.api.glm import GlmClient
from runner.errors import ApiFailure, Unreachable

log = logging.getLogger(__name__)


async def check_reachable(
    client: GlmClient,
    *,
    attempts: int = 3,
    base_delay_s: float = 1.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Probe ``client.base_url`` up to ``attempts`` times (delays base, 2*base, ...)."""
    failure: ApiFailure | None = None
    for attempt in range(1, attempts + 1):
        try:
            await _stopped_first(
                client.probe(), stop
            )  # True on a signal: the run ends as interrupted
            return
        except ApiFailure as exc:
            failure = exc
        if attempt < attempts:
            delay = base_delay_s * 2 ** (attempt - 1)
            log.warning(
                "api not reachable; trying again",
                extra={"attempt": attempt, "delay_s": delay, "why": failure.message},
            )
            if stop is None:
                await asyncio.sleep(delay)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    return  # a signal: let the run end as interrupted
                except TimeoutError:
                    pass
    assert failure is not None
    proxy = client.proxy
    through = f" through the proxy {proxy} (HTTPS_PROXY/HTTP_PROXY)" if proxy else ""
    check = "api.base_url, the proxy" if proxy else "api.base_url"
    raise Unreachable(
        f"cannot reach the API at {client.base_url}{through} after {attempts} tries: "
        f"{failure.message}; nothing was sent or recorded; check {check} and the network, "
        "then run again"
    )


async def _stopped_first(probe: Coroutine[Any, Any, None], stop: asyncio.Event | None) -> bool:
    """Await ``probe`` unless ``stop`` is set first (then cancel it and return True)."""
    if stop is None:
        await probe
        return False
    probe_task = asyncio.ensure_future(probe)
    stop_task = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({probe_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (probe_task, stop_task):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if probe_task.done() and not probe_task.cancelled():
        probe_task.result()  # raises ApiFailure
        return False
    return True
