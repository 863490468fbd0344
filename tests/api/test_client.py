"""GlmClient.chat over aioresponses: URL, auth header, body bytes, every failure -> ApiFailure."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from runner.api.glm import GlmClient, parse_retry_after
from runner.config import Secret
from runner.core.payloads import ChatBodyTemplate
from runner.errors import ApiFailure

BASE = "https://proxy.example.test/api/paas/v4/"
CHAT = "https://proxy.example.test/api/paas/v4/chat/completions"
KEY = "sk-test-0123456789"
BODY = ChatBodyTemplate("glm-4v-flash", "describe", {"temperature": 0.5}).render(
    "https://img.example.test/a.jpg", "rid-1"
)
ANSWER = {
    "id": "42",
    "model": "glm-4v-flash",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a cat"}}
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}


@pytest.fixture
async def client() -> AsyncIterator[GlmClient]:
    async with GlmClient(BASE, Secret(KEY), timeout_s=5) as c:
        yield c


async def fail_with(client: GlmClient) -> ApiFailure:
    with pytest.raises(ApiFailure) as info:
        await client.chat(BODY)
    failure = info.value
    assert KEY not in str(failure) and KEY not in repr(failure)
    return failure


async def test_chat_sends_exact_url_auth_and_body(client: GlmClient, mock: Any) -> None:
    """chat() POSTs the given bytes with Bearer auth and returns the answer.

    The URL is exactly {base_url}/chat/completions.
    """
    mock.post(CHAT, payload=ANSWER)
    assert await client.chat(BODY) == ANSWER
    (call,) = mock.requests[("POST", URL(CHAT))]
    assert call.kwargs["data"] == BODY
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("status", "body", "code", "message_part"),
    [
        (
            429,
            {"error": {"code": "1302", "message": "High concurrency"}},
            "1302",
            "High concurrency",
        ),
        (429, {"error": {"code": 1113, "message": "arrears"}}, "1113", "arrears"),
        (
            400,
            {"error": {"message": "bad", "type": "invalid_request_error", "code": "1214"}},
            "1214",
            "bad",
        ),
        (401, {"code": "1000", "message": "auth failed"}, "1000", "auth failed"),
        (500, None, None, "HTTP 500"),
        (502, b"<html>Bad Gateway</html>", None, "Bad Gateway"),
        (503, {"error": "overloaded"}, None, "overloaded"),
    ],
    ids=[
        "code-string",
        "code-int",
        "openai-envelope",
        "bare-object",
        "no-body",
        "non-json-body",
        "error-not-object",
    ],
)
async def test_error_statuses_map_to_api_failure(
    client: GlmClient, mock: Any, status: int, body: Any, code: str | None, message_part: str
) -> None:
    """A non-200 answer becomes ApiFailure(status, business code as a string, message)."""
    if body is None:
        mock.post(CHAT, status=status, body=b"")
    elif isinstance(body, bytes):
        mock.post(CHAT, status=status, body=body)
    else:
        mock.post(CHAT, status=status, body=orjson.dumps(body))
    failure = await fail_with(client)
    assert (failure.status, failure.code, failure.kind) == (status, code, None)
    assert failure.message.startswith(f"HTTP {status}: ")
    assert message_part in failure.message


@pytest.mark.parametrize(
    ("payload", "code", "kind"),
    [
        (b'{"choices": [', None, "bad_json"),
        (b"[1, 2]", None, "bad_json"),
        (orjson.dumps({"id": "1", "choices": []}), None, "no_choices"),
        (orjson.dumps({"error": {"code": "1301", "message": "unsafe"}}), "1301", None),
        (
            orjson.dumps(
                {**ANSWER, "choices": [{"finish_reason": "network_error", "message": {}}]}
            ),
            None,
            "finish_network_error",
        ),
        (
            orjson.dumps({**ANSWER, "choices": [{"finish_reason": "sensitive", "message": {}}]}),
            None,
            "finish_sensitive",
        ),
    ],
    ids=[
        "truncated-json",
        "json-not-object",
        "no-choices",
        "error-object-in-200",
        "finish-network-error",
        "finish-sensitive",
    ],
)
async def test_bad_200_answers(
    client: GlmClient, mock: Any, payload: bytes, code: str | None, kind: str | None
) -> None:
    """A 200 that is not a usable completion is an ApiFailure: status 200 and its kind or code."""
    mock.post(CHAT, status=200, body=payload)
    failure = await fail_with(client)
    assert (failure.status, failure.code, failure.kind) == (200, code, kind)


async def test_retry_after_seconds(client: GlmClient, mock: Any) -> None:
    """Retry-After in seconds is passed on as retry_after_s."""
    mock.post(
        CHAT,
        status=429,
        body=b'{"error":{"code":"1302","message":"x"}}',
        headers={"Retry-After": "7"},
    )
    assert (await fail_with(client)).retry_after_s == 7.0


async def test_retry_after_http_date(client: GlmClient, mock: Any) -> None:
    """Retry-After as an HTTP date becomes the seconds until then."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    mock.post(CHAT, status=503, body=b"", headers={"Retry-After": when})
    retry_after = (await fail_with(client)).retry_after_s
    assert retry_after is not None and 27 <= retry_after <= 31


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
    ids=["absent", "empty", "seconds", "negative", "garbled", "past-date"],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """parse_retry_after never raises: garbage is None, the past is 0."""
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError("read timeout"), "timeout"),
        (aiohttp.ClientConnectionError("refused"), "connection"),
        (aiohttp.ServerDisconnectedError(), "connection"),
        (aiohttp.ClientPayloadError("cut"), "connection"),
    ],
    ids=["timeout", "server-timeout", "connection-refused", "disconnected", "payload-cut"],
)
async def test_transport_errors(
    client: GlmClient, mock: Any, exception: Exception, kind: str
) -> None:
    """Timeouts and connection errors become ApiFailure with no status and the cause chained."""
    mock.post(CHAT, exception=exception)
    failure = await fail_with(client)
    assert (failure.status, failure.code, failure.kind) == (None, None, kind)
    assert failure.__cause__ is exception


def test_a_choice_whose_message_is_not_an_object_is_a_retryable_bad_answer() -> None:
    """choices[0].message as a string must not crash the record builder.

    It is a bad answer, and retried.
    """
    from runner.api.glm import parse_chat_response
    from runner.errors import ApiFailure

    try:
        parse_chat_response(b'{"choices": [{"message": "oops", "finish_reason": "stop"}]}')
    except ApiFailure as exc:
        assert exc.kind == "bad_json"
    else:
        raise AssertionError("expected ApiFailure")
