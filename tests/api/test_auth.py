"""Auth paths against the simulator (bearer, signed JWT with refresh and 1003) and an OpenAI-style
proxy URL."""

from __future__ import annotations

import logging
from pathlib import Path

import jwt
import orjson
import pytest
from aiohttp import web

from runner.api.auth import REFRESH_MARGIN_S, JwtAuth, quiet_jwt
from runner.api.glm import GlmClient
from runner.config import Secret, load_config
from runner.core.payloads import batch_line
from runner.errors import ApiStopped, ConfigError
from runner.simulator import expected_content
from tests.support.configs import write_surface_config
from tests.support.records import latest, read_records
from tests.support.runs import run_config
from tests.support.sim import MakeSim

KEY = "my-key-id.s3cr3t-part"
URLS = [f"https://e.org/{i}.jpg" for i in range(5)]


async def test_bearer_key_is_sent_as_is(tmp_path: Path) -> None:
    """Default auth sends the raw key as the bearer token; the simulator accepts only that key."""
    cfg = write_surface_config(tmp_path, URLS, simulator={"require_key": KEY})
    await run_config(cfg, environ={"ZHIPUAI_API_KEY": KEY})
    assert all(r["status"] == "ok" for r in read_records(tmp_path / "out.jsonl"))


async def test_a_key_from_an_env_file_with_windows_line_ends_is_sent_without_the_cr(
    tmp_path: Path,
) -> None:
    """``. ./glmrun.env`` written on Windows leaves a CR after the key: an HTTP header cannot
    carry it (aiohttp raised, and the run ended in a traceback); spaces around it would be
    refused by the API. Both are dropped."""
    cfg = write_surface_config(tmp_path, URLS, simulator={"require_key": KEY})
    for key in (KEY + "\r", f"  {KEY}\r\n"):
        (tmp_path / "out.jsonl").unlink(missing_ok=True)
        result, _ = await run_config(cfg, environ={"ZHIPUAI_API_KEY": key})
        assert result.exit_code == 0
        assert [r["status"] for r in read_records(tmp_path / "out.jsonl")] == ["ok"] * 5


def test_a_key_with_a_space_inside_is_refused_without_showing_it(tmp_path: Path) -> None:
    """A key with a space or control character inside cannot be right: one line, exit 2,
    before anything is sent, and the key is not repeated."""
    real = {"base_url": "https://open.bigmodel.cn/api/paas/v4"}
    cfg = write_surface_config(tmp_path, URLS, api=real)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, environ={"ZHIPUAI_API_KEY": "my-key-id. s3cr3t"})
    assert str(info.value).endswith(
        "api.api_key_env: the value of ZHIPUAI_API_KEY has a space or control character "
        "inside; an API key has none (check how it was pasted or exported)"
    )
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigError, match="environment variable ZHIPUAI_API_KEY is empty"):
        load_config(cfg, environ={"ZHIPUAI_API_KEY": " "})


async def test_jwt_auth_signs_tokens_the_way_the_api_checks_them(tmp_path: Path) -> None:
    """auth: jwt sends an HS256 token (ms times, sign_type SIGN) that the simulator verifies."""
    cfg = write_surface_config(
        tmp_path, URLS, api={"auth": "jwt"}, simulator={"require_jwt": KEY, "keep_bodies": True}
    )
    result, _ = await run_config(cfg, environ={"ZHIPUAI_API_KEY": KEY})
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert all(recs[u]["content"] == expected_content(u) for u in URLS)
    assert result.exit_code == 0


async def test_jwt_1003_mints_a_new_token_and_retries_once(tmp_path: Path) -> None:
    """An expired-token answer (1003) costs no attempt: a fresh token is minted and the request
    resent."""
    cfg = write_surface_config(
        tmp_path, [URLS[0]], api={"auth": "jwt"}, simulator={"require_jwt": KEY, "expire_tokens": 1}
    )
    await run_config(cfg, environ={"ZHIPUAI_API_KEY": KEY})
    (rec,) = read_records(tmp_path / "out.jsonl")
    assert rec["status"] == "ok" and rec["attempts"] == 1


async def test_jwt_1003_twice_stops_the_run_without_showing_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If the new token is refused too, the run stops (exit 3) and no message carries the key or
    secret."""
    cfg = write_surface_config(
        tmp_path, [URLS[0]], api={"auth": "jwt"}, simulator={"require_jwt": KEY, "expire_tokens": 5}
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApiStopped) as info:
        await run_config(cfg, environ={"ZHIPUAI_API_KEY": KEY})
    assert info.value.exit_code == 3 and info.value.code == "1003"
    text = (
        str(info.value) + caplog.text + (tmp_path / "out.jsonl").read_text()
        if (tmp_path / "out.jsonl").exists()
        else str(info.value) + caplog.text
    )
    assert "s3cr3t" not in text and "my-key-id" not in text


async def test_jwt_claims_and_header_match_the_doc(start_sim: MakeSim) -> None:
    """The token's header has sign_type SIGN; payload api_key is the id, exp - timestamp is the ttl
    in ms."""
    sim = await start_sim(latency_mean_s=0, require_jwt=KEY, keep_bodies=True)
    async with GlmClient(sim.base_url, Secret(KEY), auth="jwt", jwt_ttl_s=120) as client:
        await client.chat(
            orjson.dumps({"model": "glm-4v", "messages": [{"role": "user", "content": "hi"}]})
        )
    token = sim.stats.bodies[0]["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["sign_type"] == "SIGN"
    with quiet_jwt():
        claims = jwt.decode(
            token, "s3cr3t-part", algorithms=["HS256"], options={"verify_exp": False}
        )
    assert claims["api_key"] == "my-key-id" and claims["exp"] - claims["timestamp"] == 120_000
    assert claims["timestamp"] > 1e12  # milliseconds


def test_jwt_is_cached_and_refreshed_before_expiry() -> None:
    """The token is reused until REFRESH_MARGIN_S before it lapses, then a new one is minted."""
    now = [1_000_000.0]
    auth = JwtAuth(Secret(KEY), ttl_s=210, clock=lambda: now[0])
    first = auth.header()
    now[0] += 210 - REFRESH_MARGIN_S - 1
    assert auth.header() == first and auth.minted == 1
    now[0] += 2
    assert auth.header() != first and auth.minted == 2
    auth.invalidate()
    auth.header()
    assert auth.minted == 3 and "s3cr3t" not in repr(auth)


async def test_jwt_needs_an_id_dot_secret_key(tmp_path: Path) -> None:
    """auth: jwt with a key that has no '.' stops the run with a ConfigError that does not print the
    key."""
    cfg = write_surface_config(tmp_path, [URLS[0]], api={"auth": "jwt"})
    with pytest.raises(ConfigError, match="<id>.<secret>") as info:
        await run_config(cfg, environ={"ZHIPUAI_API_KEY": "plainkey123"})
    assert "plainkey123" not in str(info.value) and info.value.exit_code == 2


async def test_openai_style_proxy_base_url_and_model_name_untouched() -> None:
    """base_url https://proxy/v1: chat goes to /v1/chat/completions with the model as the user
    spelled it."""
    seen: list[tuple[str, dict[str, object], str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (request.path, orjson.loads(await request.read()), request.headers["Authorization"])
        )
        answer = {
            "id": "1",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "ok"}}],
            "usage": {},
        }
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    body = orjson.dumps({"model": "GLM-4V-Plus", "messages": [{"role": "user", "content": "x"}]})
    try:
        async with GlmClient(f"http://127.0.0.1:{port}/v1/", Secret("sk-proxy")) as client:
            assert (await client.chat(body))["choices"][0]["message"]["content"] == "ok"
    finally:
        await runner.cleanup()
    assert seen == [
        (
            "/v1/chat/completions",
            {"model": "GLM-4V-Plus", "messages": [{"role": "user", "content": "x"}]},
            "Bearer sk-proxy",
        )
    ]


def test_batch_endpoint_is_configurable_for_gateways(tmp_path: Path) -> None:
    """batch.endpoint sets the url of every batch line (/v1/chat/completions for OpenAI-style
    gateways)."""
    cfg = write_surface_config(tmp_path, batch={"endpoint": "/v1/chat/completions"})
    config = load_config(cfg, environ={})
    line = orjson.loads(batch_line("c1", b'{"model":"GLM-4V-Plus"}', config.batch.endpoint))
    assert line["url"] == "/v1/chat/completions" and line["body"]["model"] == "GLM-4V-Plus"
