"""Engine behaviour the simulator cannot script: 1231 and per-attempt request_ids (via
aioresponses)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from yarl import URL

from runner.api.glm import GlmClient
from runner.clock import FakeClock
from runner.config import load_config
from runner.core.plan import iter_pending
from runner.core.stats import JobStats
from runner.engine.realtime import RealtimeDeps, RealtimeEngine
from runner.engine.throttle import Throttle
from runner.errors import ApiStopped
from runner.io.inputs import read_items
from runner.io.store import ResultWriter, load_resume_index
from tests.support.configs import ENV, write_config
from tests.support.records import read_records

BASE = "https://api.example.test/api/paas/v4"
CHAT = BASE + "/chat/completions"
IMG = "https://img.example.test/a.jpg"
ANSWER = {
    "id": "9",
    "model": "glm-4v-flash",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a cat"}}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}


async def run_one(tmp_path: Path) -> tuple[list[dict[str, Any]], list[float], ApiStopped | None]:
    """Run the engine on one URL against the mocked API; return records, backoffs, the stop."""
    config = load_config(write_config(tmp_path, [IMG], api={"base_url": BASE}), environ=ENV)
    job = config.jobs[0]
    clock = FakeClock()
    async with GlmClient(BASE, config.api_key) as client:
        writer = ResultWriter(job.output_path)
        deps = RealtimeDeps(
            client=client,
            writer=writer,
            throttle=Throttle(2),
            retry=config.retry,
            stats=JobStats("t"),
            sleep=clock.sleep,
            rng=random.Random(0),
        )
        stopped = None
        try:
            await RealtimeEngine(job, deps).run(
                iter_pending(read_items(job.input_path), load_resume_index(job.output_path))
            )
        except ApiStopped as exc:
            stopped = exc
        finally:
            writer.close()
    return read_records(job.output_path), clock.sleeps, stopped


async def test_1231_retried_with_a_fresh_request_id(tmp_path: Path, mock: Any) -> None:
    """A duplicate-request_id answer (1231) is retried, and every attempt carries a new
    request_id."""
    mock.post(
        CHAT, status=400, body=b'{"error":{"code":"1231","message":"You already have a request"}}'
    )
    mock.post(CHAT, status=500, body=b"")
    mock.post(CHAT, payload=ANSWER)
    records, sleeps, stopped = await run_one(tmp_path)
    assert stopped is None
    assert [r["status"] for r in records] == ["ok"] and records[0]["attempts"] == 3
    assert len(sleeps) == 2
    calls = mock.requests[("POST", URL(CHAT))]
    bodies = [orjson.loads(call.kwargs["data"]) for call in calls]
    ids = [b["request_id"] for b in bodies]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(b["messages"][0]["content"][0]["image_url"]["url"] == IMG for b in bodies)
    assert all(
        call.kwargs["headers"]["Authorization"] == f"Bearer {ENV['GLMRUN_TEST_KEY']}"
        for call in calls
    )


async def test_proxy_429_arrears_without_code_is_not_retried(tmp_path: Path, mock: Any) -> None:
    """A proxy's 429 that dropped the code but says arrears stops at once, with no record and no
    retry."""
    mock.post(CHAT, status=429, body=b'{"error":{"message":"account in arrears","type":"x"}}')
    records, sleeps, stopped = await run_one(tmp_path)
    assert stopped is not None and stopped.code == "1113" and stopped.exit_code == 3
    assert records == [] and sleeps == []
    assert len(mock.requests[("POST", URL(CHAT))]) == 1
