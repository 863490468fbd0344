"""``HTTPS_PROXY`` / ``HTTP_PROXY``: glmrun goes through the proxy the environment names for
``base_url`` (credentials from the proxy's URL, ``NO_PROXY`` honoured), looked up once per run,
and never for a loopback host (the simulator, a local gateway)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from runner.api.glm import env_proxy
from runner.errors import Unreachable
from tests.support.configs import ENV, make_urls, write_config
from tests.support.records import read_records
from tests.support.runs import run_config
from tests.support.sim import MakeSim

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")
API = "https://open.bigmodel.cn/api/paas/v4"


@pytest.fixture(autouse=True)
def no_proxy_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def test_the_proxy_for_the_api_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_proxy(API) == (None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://us%40er:p%3Aw@proxy.corp:3128")
    credentials = "Basic " + base64.b64encode(b"us@er:p:w").decode()
    assert env_proxy(API) == ("http://proxy.corp:3128", {"Proxy-Authorization": credentials})
    assert env_proxy("http://open.bigmodel.cn/api/paas/v4") == (None, None)  # no HTTP_PROXY
    monkeypatch.setenv("no_proxy", ".bigmodel.cn")
    assert env_proxy(API) == (None, None)


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765"])
def test_a_loopback_base_url_never_goes_through_a_proxy(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``HTTP_PROXY`` set for the office network, no ``NO_PROXY``: the simulator is still
    reached directly."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    assert env_proxy(f"http://{host}/api/paas/v4") == (None, None)


async def test_a_run_goes_through_the_proxy_the_environment_names(
    tmp_path: Path, start_sim: MakeSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that does not resolve, reached through a proxy that does: the simulator takes
    the proxy's place (a plain-HTTP proxy gets the absolute URL and answers it). Every URL
    is answered, so every request went through it."""
    sim = await start_sim()
    monkeypatch.setenv("HTTP_PROXY", sim.base_url.split("/api/")[0])
    cfg = write_config(
        tmp_path, make_urls(5), api={"base_url": "http://api.glm.invalid/api/paas/v4"}
    )
    result, _ = await run_config(cfg, ENV)
    assert result.exit_code == 0
    assert [r["status"] for r in read_records(tmp_path / "out" / "t.jsonl")] == ["ok"] * 5
    assert sim.stats.chat_requests == 5


async def test_an_unreachable_proxy_is_named_in_the_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    cfg = write_config(
        tmp_path,
        make_urls(1),
        api={"base_url": "http://api.glm.invalid/api/paas/v4"},
        retry={"base_delay_s": 0.01},
    )
    with pytest.raises(Unreachable, match=r"through the proxy http://127\.0\.0\.1:9 \("):
        await run_config(cfg, ENV)
