"""aioresponses for client tests, with a shim for aiohttp >= 3.13's ClientResponse signature."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses


class _MockResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without ``stream_writer``, which newer aiohttp requires."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[_aioresponses]:
    """An active aioresponses mock; every aiohttp request in the test hits it."""
    monkeypatch.setattr(aioresponses.core, "ClientResponse", _MockResponse)
    with _aioresponses() as m:
        yield m
