"""What a chat completion says: the deterministic text per image URL, the URLs and prompt
length read from a request body, and the completion object itself, shared by live chat
answers and batch result lines."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from runner.simulator.state import SimState

_DESCRIPTIONS = (
    "a cat sitting on a sofa",
    "a red bicycle leaning on a wall",
    "a mountain lake at sunrise",
    "a bowl of ramen on a wooden table",
    "a city street at night",
    "two dogs playing in the snow",
    "a lighthouse on a rocky coast",
    "a bookshelf full of old books",
)


def expected_content(urls: str | Sequence[str]) -> str:
    """Deterministic assistant text for an image URL (or several).

    The hash makes the answer unique per URL list, so a test can check that every result
    landed on the item it belongs to, not just that some answer arrived.
    """
    joined = urls if isinstance(urls, str) else "\n".join(urls)
    digest = hashlib.sha256(joined.encode()).hexdigest()
    return f"sim:{digest[:16]} | {_DESCRIPTIONS[int(digest[16], 16) % len(_DESCRIPTIONS)]}"


def extract(body: Mapping[str, Any]) -> tuple[list[str], int]:
    """Image/video URLs of the user messages and the total prompt text length."""
    urls: list[str] = []
    text_len = 0
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            text_len += len(content)
            continue
        if msg.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                text_len += len(part.get("text") or "")
            elif kind in ("image_url", "video_url", "file_url"):
                inner = part.get(kind)
                if isinstance(inner, dict) and isinstance(inner.get("url"), str):
                    urls.append(inner["url"])
    return urls, text_len


def _apply_answer(answer: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Scripted answer fields (url_answers) onto a completion."""
    choice = answer["choices"][0]
    for name in ("content", "reasoning_content"):
        if name in fields:
            choice["message"][name] = fields[name]
    if "finish_reason" in fields:
        choice["finish_reason"] = fields["finish_reason"]
    if "content_filter" in fields:
        answer["content_filter"] = fields["content_filter"]


def build_completion(
    state: SimState,
    body: Mapping[str, Any],
    urls: list[str],
    text_len: int,
    finish_reason: str = "stop",
    content: str | None = None,
) -> dict[str, Any]:
    """The completion object (glm-api.md §2.2) with a fresh id; `content=None` means the
    expected text, after which a url_answers entry for the first URL may override fields."""
    cid = state.next_id()
    settings = state.settings
    prompt_tokens = 1000 * len(urls) + text_len // 2
    completion_tokens = settings.completion_tokens
    request_id = body.get("request_id")
    answer = {
        "id": cid,
        "request_id": request_id if isinstance(request_id, str) else cid,
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {
                    "role": "assistant",
                    "content": expected_content(urls) if content is None else content,
                },
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if settings.url_answers and urls and urls[0] in settings.url_answers and content is None:
        _apply_answer(answer, settings.url_answers[urls[0]])
    return answer
