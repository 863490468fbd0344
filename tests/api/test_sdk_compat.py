"""The official SDKs (openai, zhipuai) parse the simulator's chat, file and batch answers.

Each SDK is synchronous, so its calls run in a worker thread while the simulator serves on
127.0.0.1 in the test's event loop. This keeps the simulator's shapes honest: if an SDK's
models cannot read an answer, the simulator (and glmrun's parsing of it) has drifted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from runner.simulator import Simulator, expected_content
from tests.support.sim import INSTANT_BATCHES, MakeSim

URL = "https://e.org/sdk.jpg"
MESSAGES: list[dict[str, Any]] = [
    {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": URL}},
            {"type": "text", "text": "Describe."},
        ],
    }
]
KEY = "sdkkeyid.sdksecretpart"


def batch_file() -> bytes:
    line = {
        "custom_id": "req-000001",
        "method": "POST",
        "url": "/v4/chat/completions",
        "body": {"model": "glm-4v-plus-0111", "messages": MESSAGES},
    }
    return orjson.dumps(line) + b"\n"


@pytest.fixture
async def sim(start_sim: MakeSim) -> Simulator:
    """A simulator with quick batch phases, closed after the test."""
    return await start_sim(**INSTANT_BATCHES)


async def _wait_batch(get: Any, batch_id: str) -> Any:
    for _ in range(200):
        batch = await asyncio.to_thread(get, batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.01)
    raise AssertionError("batch did not finish")


async def test_openai_sdk_parses_chat_file_and_batch_answers(sim: Simulator) -> None:
    """openai.OpenAI against the simulator: a chat completion, an uploaded file, a batch and its
    output."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=sim.base_url + "/", api_key="sk-test", max_retries=0)
    try:
        chat = await asyncio.to_thread(
            lambda: client.chat.completions.create(model="glm-4v-plus-0111", messages=MESSAGES)
        )
        assert chat.choices[0].message.content == expected_content(URL)
        assert (
            chat.choices[0].finish_reason == "stop"
            and chat.usage is not None
            and chat.usage.prompt_tokens > 0
        )
        uploaded = await asyncio.to_thread(
            lambda: client.files.create(file=("in.jsonl", batch_file()), purpose="batch")
        )
        assert uploaded.id and uploaded.purpose == "batch" and uploaded.bytes == len(batch_file())
        batch = await asyncio.to_thread(
            lambda: client.batches.create(
                input_file_id=uploaded.id, endpoint="/v4/chat/completions", completion_window="24h"
            )
        )  # type: ignore[arg-type]
        assert batch.id and batch.input_file_id == uploaded.id
        done = await _wait_batch(client.batches.retrieve, batch.id)
        assert done.status == "completed" and done.output_file_id
        assert done.request_counts is not None and done.request_counts.completed == 1
        raw = await asyncio.to_thread(lambda: client.files.content(done.output_file_id).read())
        (line,) = [orjson.loads(x) for x in raw.splitlines() if x.strip()]
        assert line["custom_id"] == "req-000001"
        assert line["response"]["body"]["choices"][0]["message"]["content"] == expected_content(URL)
        page = await asyncio.to_thread(lambda: client.batches.list(limit=5))
        assert [b.id for b in page.data] == [batch.id]
    finally:
        client.close()


@pytest.mark.filterwarnings(
    "ignore:The HMAC key is:Warning"
)  # PyJWT >= 2.10 on Zhipu's short secrets
async def test_zhipuai_sdk_parses_chat_file_and_batch_answers_with_its_own_jwt(
    sim: Simulator,
) -> None:
    """zhipuai.ZhipuAI (signing its own JWT) against the simulator: chat, file upload, batch, output
    file."""
    zhipuai = pytest.importorskip("zhipuai")
    sim.settings.require_jwt = (
        KEY  # the simulator checks the SDK's token exactly as it checks glmrun's
    )
    client = zhipuai.ZhipuAI(
        api_key=KEY, base_url=sim.base_url, max_retries=0, disable_token_cache=False
    )
    try:
        chat = await asyncio.to_thread(
            lambda: client.chat.completions.create(model="glm-4v-plus-0111", messages=MESSAGES)
        )
        assert chat.choices[0].message.content == expected_content(URL)
        assert chat.usage.completion_tokens == 20
        uploaded = await asyncio.to_thread(
            lambda: client.files.create(file=("in.jsonl", batch_file()), purpose="batch")
        )
        assert uploaded.id and uploaded.purpose == "batch"
        batch = await asyncio.to_thread(
            lambda: client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v4/chat/completions",
                completion_window="24h",
                metadata={"job": "sdk"},
            )
        )
        done = await _wait_batch(client.batches.retrieve, batch.id)
        assert done.status == "completed" and done.output_file_id
        content = await asyncio.to_thread(lambda: client.files.content(done.output_file_id))
        (line,) = [orjson.loads(x) for x in content.content.splitlines() if x.strip()]
        assert line["response"]["body"]["choices"][0]["message"]["content"] == expected_content(URL)
        assert sim.stats.expired_tokens == 0
    finally:
        if hasattr(client, "close"):
            client.close()
