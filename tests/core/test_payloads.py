"""The pre-serialised chat body template and request ids."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from runner.core.payloads import ChatBodyTemplate, batch_line, build_chat_body, request_id

URLS = [
    "https://img.example.test/a.jpg",
    'https://img.example.test/q"uote\\back.jpg?a=1&b=<2>',
    "https://img.example.test/图片/猫.jpg",
    "https://img.example.test/\u2028line-sep.jpg",
]
BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("no-params", "describe", {}),
    ("params", "请描述这张图片中的主要内容和场景", {"temperature": 0.5, "max_tokens": 1024}),
    (
        "nested-params",
        'say "hi"\n',
        {"thinking": {"type": "enabled"}, "stop": ["x"], "do_sample": False},
    ),
]


@pytest.mark.parametrize(("prompt", "params"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
@pytest.mark.parametrize(
    "rid", [None, "glmrun-00ff-abc123-a1"], ids=["no-request-id", "request-id"]
)
def test_template_bytes_equal_orjson_of_dict(
    prompt: str, params: dict[str, Any], rid: str | None
) -> None:
    """render() gives byte for byte what orjson.dumps of the dict body gives."""
    template = ChatBodyTemplate("glm-4v-flash", prompt, params)
    for url in URLS:
        assert template.render(url, rid) == orjson.dumps(
            build_chat_body("glm-4v-flash", prompt, params, url, rid)
        )


def test_body_shape() -> None:
    """The body is {model, messages: [user: image_url then text], ...params, request_id}."""
    body = orjson.loads(ChatBodyTemplate("m", "p", {"temperature": 0.1}).render(URLS[0], "rid"))
    assert body == {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": URLS[0]}},
                    {"type": "text", "text": "p"},
                ],
            }
        ],
        "temperature": 0.1,
        "request_id": "rid",
    }


def test_request_id_fresh_per_attempt_and_run() -> None:
    """request_id differs by attempt and by run, so a retry never repeats one (code 1231)."""
    ids = {request_id(123, run, attempt) for run in ("aaaaaa", "bbbbbb") for attempt in range(1, 6)}
    assert len(ids) == 10


def test_batch_line_is_json() -> None:
    """A batch line splices the body in and parses as the documented object."""
    body = ChatBodyTemplate("m", "p", {}).render(URLS[1])
    line = batch_line("c1", body)
    assert line.endswith(b"\n")
    assert orjson.loads(line) == {
        "custom_id": "c1",
        "method": "POST",
        "url": "/v4/chat/completions",
        "body": orjson.loads(body),
    }
