"""Shared fixtures: simulators on loopback, an aioresponses mock, and logging reset between tests.

Plain helpers (config writers, the record reader, run helpers) live in ``tests/support``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses

from runner.simulator import Simulator
from tests.support.sim import MakeSim, running_sim


@pytest.fixture
async def start_sim() -> AsyncIterator[MakeSim]:
    """``await start_sim(**settings)``: a simulator on 127.0.0.1 (OS-chosen port), 5 ms latency
    unless set; ``clock=`` and ``state_dir=`` go to Simulator. All are closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *, clock: Any = None, state_dir: Path | None = None, **settings: Any
        ) -> Simulator:
            return await stack.enter_async_context(
                running_sim(
                    clock=clock, state_dir=state_dir, **{"latency_mean_s": 0.005, **settings}
                )
            )

        yield start


@pytest.fixture
async def sim(start_sim: MakeSim) -> Simulator:
    """A started, fault-free simulator (5 ms latency); tune ``sim.settings`` in the test."""
    return await start_sim()


@pytest.fixture(autouse=True)
def _reset_runner_logging() -> Iterable[None]:
    """CLI tests install a handler on a stream CliRunner closes; drop it after each test."""
    yield
    logger = logging.getLogger("runner")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


class _MockResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without ``stream_writer``, which newer aiohttp
    requires."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[_aioresponses]:
    """An active aioresponses mock; every aiohttp request in the test hits it."""
    monkeypatch.setattr(aioresponses.core, "ClientResponse", _MockResponse)
    with _aioresponses() as m:
        yield m
