"""Shared fixtures: a config factory, a simulator on loopback, and JSONL read-back helpers."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioresponses.core
import orjson
import pytest
import yaml
from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses

from runner.simulator import SimSettings, Simulator

KEY_ENV = "GLMRUN_TEST_KEY"
ENV = {KEY_ENV: "test-key-not-secret"}
DELETE = object()  # an override value that removes the key

BASE_CONFIG: dict[str, Any] = {
    "api": {"base_url": "simulator", "api_key_env": KEY_ENV, "timeout_s": 5},
    "limits": {"concurrency": 4},
    "retry": {"max_attempts": 5, "base_delay_s": 0.001, "max_delay_s": 0.01},
    "run": {"flush_interval_s": 0.05, "progress_interval_s": 10, "grace_s": 1},
    "simulator": {"latency_mean_s": 0.005},
    "jobs": [
        {
            "name": "t",
            "input": "urls.txt",
            "output": "out/t.jsonl",
            "model": "glm-4v-flash",
            "prompt": "describe the picture",
            "params": {"temperature": 0.5},
        }
    ],
}


def make_urls(n: int, start: int = 0, prefix: str = "https://img.example.test/p") -> list[str]:
    """``n`` distinct, valid image URLs."""
    return [f"{prefix}/{i:05d}.jpg" for i in range(start, start + n)]


def merge(base: Any, over: Any) -> Any:
    """Deep-merge ``over`` into a copy of ``base``; DELETE removes a key."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is DELETE:
            out.pop(key, None)
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


MakeConfig = Callable[..., Path]


def write_config(
    tmp_path: Path,
    urls: Iterable[str] | None = None,
    *,
    job: dict[str, Any] | None = None,
    raw: str | None = None,
    input_bytes: bytes | None = None,
    **overrides: Any,
) -> Path:
    """Write ``tmp_path/config.yaml`` (fast defaults + ``overrides``) and its input file.

    ``job`` merges into the first job; ``raw`` replaces the YAML text outright;
    ``input_bytes`` replaces the input file's content.
    """
    data = merge(BASE_CONFIG, overrides)
    if job:
        data["jobs"] = [merge(data["jobs"][0], job), *data["jobs"][1:]]
    path = tmp_path / "config.yaml"
    path.write_text(
        raw if raw is not None else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
    )
    if input_bytes is None:
        lines = list(urls) if urls is not None else make_urls(10)
        input_bytes = "".join(f"{u}\n" for u in lines).encode()
    (tmp_path / "urls.txt").write_bytes(input_bytes)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of an output file, in order (whole lines only)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest record per URL, as the resume index sees them."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        out[record.get("key", record["url"])] = record
    return out


def ok_urls(records: Iterable[dict[str, Any]]) -> list[str]:
    return [r["url"] for r in records if r["status"] == "ok"]


def output_of(tmp_path: Path) -> Path:
    return tmp_path / "out" / "t.jsonl"


MakeSim = Callable[..., Awaitable[Simulator]]


@pytest.fixture
def make_config() -> MakeConfig:
    """``make_config(tmp_path, urls, job=..., **overrides)`` -> path of a config + input file."""
    return write_config


@pytest.fixture
async def start_sim() -> AsyncIterator[MakeSim]:
    """Start simulators on 127.0.0.1 port 0 with fast settings; all are closed after the test."""
    started: list[Simulator] = []

    async def start(**settings: Any) -> Simulator:
        sim = Simulator(SimSettings(**{"latency_mean_s": 0.005, **settings}))
        await sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.close()


@pytest.fixture
async def sim(start_sim: MakeSim) -> Simulator:
    """A started, fault-free simulator (5 ms latency); tune ``sim.settings`` in the test."""
    return await start_sim()


@pytest.fixture(autouse=True)
def _reset_runner_logging() -> Iterable[None]:
    """CLI tests install a handler on a stream CliRunner closes; drop it after each test."""
    yield
    import logging

    logger = logging.getLogger("runner")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


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
