"""The simulator over real sockets: shapes per glm-api.md, faults, limits, batch lifecycle."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from runner.simulator import (
    API_PREFIX,
    Simulator,
    expected_content,
    settings_from_dict,
)
from tests.support.sim import MakeSim

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    """A clock the test advances by hand, so batch phases pass without sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def make_sim(start_sim: MakeSim) -> MakeSim:
    """Start simulators with no latency (``clock=``, ``state_dir=`` pass); closed after the test."""
    return functools.partial(start_sim, latency_mean_s=0.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def chat_body(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "glm-4v-plus-0111",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "Describe the picture."},
                ],
            }
        ],
        **extra,
    }


async def post_chat(
    session: aiohttp.ClientSession, sim: Simulator, body: dict[str, Any], **kw: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with session.post(f"{sim.base_url}/chat/completions", json=body, **kw) as resp:
        raw = await resp.read()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = raw
        return resp.status, data, resp.headers


def batch_line(custom_id: str, url: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v4/chat/completions",
        "body": chat_body(url, max_tokens=100),
    }


async def upload(
    session: aiohttp.ClientSession,
    sim: Simulator,
    content: bytes,
    filename: str = "in.jsonl",
    purpose: str = "batch",
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("purpose", purpose)
    form.add_field("file", content, filename=filename, content_type="application/octet-stream")
    async with session.post(f"{sim.base_url}/files", data=form) as resp:
        return resp.status, await resp.json()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def read_lines(session: aiohttp.ClientSession, sim: Simulator, file_id: str) -> list[Any]:
    async with session.get(f"{sim.base_url}/files/{file_id}/content") as resp:
        assert resp.status == 200
        return [orjson.loads(line) for line in (await resp.read()).splitlines() if line]


async def create_batch(
    session: aiohttp.ClientSession, sim: Simulator, lines: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    content = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    status, file_obj = await upload(session, sim, content)
    assert status == 200, file_obj
    body = {
        "input_file_id": file_obj["id"],
        "endpoint": "/v4/chat/completions",
        "completion_window": "24h",
        "auto_delete_input_file": False,
        "metadata": {"job": "t"},
        **extra,
    }
    async with session.post(f"{sim.base_url}/batches", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def retrieve(session: aiohttp.ClientSession, sim: Simulator, batch_id: str) -> Any:
    return await get_json(session, f"{sim.base_url}/batches/{batch_id}")


URLS = [f"https://img.example/{i}.jpg" for i in range(10)]


# -- chat -------------------------------------------------------------------------------


async def test_chat_answer_shape(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """A plain chat answer has the §2.2 fields and types and the URL's expected content."""
    sim = await make_sim()
    status, data, _ = await post_chat(session, sim, chat_body(URLS[0]))
    assert status == 200
    assert isinstance(data["id"], str) and data["request_id"] == data["id"]
    assert isinstance(data["created"], int)
    assert data["model"] == "glm-4v-plus-0111"
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": expected_content(URLS[0])}
    usage = data["usage"]
    assert all(isinstance(usage[k], int) for k in ("prompt_tokens", "completion_tokens"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] >= 1000
    assert sim.stats.chat_ok == 1 and sim.stats.per_url[URLS[0]] == 1


async def test_request_id_echoed_and_ids_unique(
    make_sim: MakeSim, session: aiohttp.ClientSession
) -> None:
    """The body's request_id comes back and every answer gets its own id."""
    sim = await make_sim()
    _, a, _ = await post_chat(session, sim, chat_body(URLS[0], request_id="u-1-a1"))
    _, b, _ = await post_chat(session, sim, chat_body(URLS[0]))
    assert a["request_id"] == "u-1-a1"
    assert a["id"] != b["id"]


def test_expected_content_is_unique_per_url() -> None:
    """expected_content carries a URL hash, so different URLs never share an answer."""
    contents = {expected_content(u) for u in URLS}
    assert len(contents) == len(URLS)
    assert expected_content(URLS[0]) == expected_content([URLS[0]])
    assert expected_content(URLS[:2]) not in contents


async def test_missing_model_is_1214(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """A body without model or messages gets HTTP 400 with business code 1214."""
    sim = await make_sim()
    status, data, _ = await post_chat(session, sim, {"messages": chat_body("x")["messages"]})
    assert status == 400 and data["error"]["code"] == "1214"
    status, data, _ = await post_chat(session, sim, {"model": "m", "messages": []})
    assert status == 400 and data["error"]["code"] == "1214"


async def test_require_key(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """With require_key set, a wrong bearer gets 401 code 1000 and the right one passes."""
    sim = await make_sim(require_key="k-123")
    status, data, _ = await post_chat(
        session, sim, chat_body("x"), headers={"Authorization": "Bearer nope"}
    )
    assert status == 401 and data["error"]["code"] == "1000"
    status, _, _ = await post_chat(
        session, sim, chat_body("x"), headers={"Authorization": "Bearer k-123"}
    )
    assert status == 200


async def test_in_flight_limit(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """Above max_in_flight the answer is 429/1302 and admitted concurrency never exceeds it."""
    sim = await make_sim(max_in_flight=8, latency_mean_s=0.05)
    results = await asyncio.gather(
        *(post_chat(session, sim, chat_body(f"u{i}")) for i in range(50))
    )
    statuses = [r[0] for r in results]
    throttled = [r[1] for r in results if r[0] == 429]
    assert statuses.count(200) >= 8 and throttled
    assert all(t["error"]["code"] == "1302" for t in throttled)
    assert sim.stats.max_in_flight_seen <= 8
    assert sim.stats.throttled == len(throttled)
    assert sim.stats.in_flight == 0


async def test_limit_schedule_follows_clock(
    make_sim: MakeSim, session: aiohttp.ClientSession
) -> None:
    """limit_schedule switches the hidden limit as the simulator clock passes each step."""
    clock = FakeClock()
    sim = await make_sim(clock=clock, limit_schedule=[(0, 4), (10, 0), (20, None)])
    assert sim.current_limit() == 4
    assert (await post_chat(session, sim, chat_body("a")))[0] == 200
    clock.advance(10)
    assert sim.current_limit() == 0
    assert (await post_chat(session, sim, chat_body("a")))[0] == 429
    clock.advance(10)
    assert sim.current_limit() is None
    assert (await post_chat(session, sim, chat_body("a")))[0] == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("500", 500, "500"),
        ("429", 429, "1302"),
        ("1301", 400, "1301"),
        ("1113", 429, "1113"),
        ("1261", 400, "1261"),
        ("1210", 400, "1210"),
        ("401", 401, "1000"),
    ],
    ids=["500", "429", "1301", "1113", "1261", "1210", "401"],
)
async def test_scripted_error_faults(
    make_sim: MakeSim, session: aiohttp.ClientSession, fault: str, status: int, code: str
) -> None:
    """Each scripted error fault answers once with its status and code, then the URL works."""
    sim = await make_sim(url_faults={"u": [fault]})
    got_status, data, _ = await post_chat(session, sim, chat_body("u"))
    assert (got_status, data["error"]["code"]) == (status, code)
    assert isinstance(data["error"]["message"], str)
    got_status, data, _ = await post_chat(session, sim, chat_body("u"))
    assert got_status == 200
    assert data["choices"][0]["message"]["content"] == expected_content("u")


@pytest.mark.parametrize("finish", ["sensitive", "network_error", "length"])
async def test_scripted_finish_reasons(
    make_sim: MakeSim, session: aiohttp.ClientSession, finish: str
) -> None:
    """Scripted finish-reason faults are 200 answers with that finish_reason."""
    sim = await make_sim(url_faults={"u": [finish]})
    status, data, _ = await post_chat(session, sim, chat_body("u"))
    assert status == 200 and data["choices"][0]["finish_reason"] == finish


async def test_scripted_bad_answers(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """badjson gives a truncated non-JSON 200, nochoices a JSON 200 without choices."""
    sim = await make_sim(url_faults={"u": ["badjson", "nochoices"]})
    status, data, _ = await post_chat(session, sim, chat_body("u"))
    assert status == 200 and isinstance(data, bytes)
    status, data, _ = await post_chat(session, sim, chat_body("u"))
    assert status == 200 and "choices" not in data and "id" in data


async def test_scripted_drop_and_hang(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """drop closes the connection unanswered; hang holds it until the client times out."""
    sim = await make_sim(url_faults={"u": ["drop", "hang"]})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_chat(session, sim, chat_body("u"))
    with pytest.raises(TimeoutError):
        await post_chat(session, sim, chat_body("u"), timeout=aiohttp.ClientTimeout(total=0.1))
    assert sim.stats.per_url["u"] == 2


async def test_random_faults(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """error_500_rate=1 always gives 500/code 500 and drop_rate=1 always disconnects."""
    sim = await make_sim(error_500_rate=1.0)
    for _ in range(3):
        status, data, _ = await post_chat(session, sim, chat_body("u"))
        assert status == 500 and data["error"]["code"] == "500"
    sim.settings.error_500_rate = 0.0
    sim.settings.drop_rate = 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_chat(session, sim, chat_body("u"))


async def test_retry_after_header(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """With retry_after_s set, 429 answers carry a Retry-After header."""
    sim = await make_sim(error_429_rate=1.0, retry_after_s=2)
    status, data, headers = await post_chat(session, sim, chat_body("u"))
    assert status == 429 and data["error"]["code"] == "1302"
    assert headers["Retry-After"] == "2"


async def test_stream(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """stream=true yields SSE chunks whose deltas join to the content, then [DONE]."""
    sim = await make_sim()
    async with session.post(
        f"{sim.base_url}/chat/completions", json=chat_body("u", stream=True)
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await resp.read()).decode()
    events = [e[len("data: ") :] for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == expected_content("u")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] > 0


# -- files ------------------------------------------------------------------------------


async def test_files_roundtrip(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """Upload, list, download and delete a batch file; unknown ids give 404."""
    sim = await make_sim()
    content = orjson.dumps(batch_line("c-000001", "u")) + b"\n"
    status, f = await upload(session, sim, content)
    assert status == 200
    assert f["object"] == "file" and f["bytes"] == len(content) and f["purpose"] == "batch"
    assert f["filename"] == "in.jsonl" and isinstance(f["created_at"], int)
    listed = await get_json(session, f"{sim.base_url}/files")
    assert [x["id"] for x in listed["data"]] == [f["id"]] and listed["has_more"] is False
    async with session.get(f"{sim.base_url}/files/{f['id']}/content") as resp:
        assert await resp.read() == content
    async with session.delete(f"{sim.base_url}/files/{f['id']}") as resp:
        assert await resp.json() == {"id": f["id"], "object": "file", "deleted": True}
    async with session.get(f"{sim.base_url}/files/{f['id']}/content") as resp:
        assert resp.status == 404 and "error" in await resp.json()
    assert sim.stats.snapshot()["files_uploaded"] == 1
    assert sim.stats.files_deleted == 1 and sim.stats.batch_lines_received == 1


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("in.txt", b'{"custom_id":"c-000001","body":{}}\n'),
        ("in.jsonl", b'{"custom_id":"c-000001","body":{}}\n{not json\n'),
        ("in.jsonl", b'{"body":{}}\n'),
        ("in.jsonl", b'{"custom_id":"c1xxxx","body":{}}\n{"custom_id":"c1xxxx","body":{}}\n'),
    ],
    ids=["not-jsonl", "bad-json", "no-custom-id", "duplicate-custom-id"],
)
async def test_bad_batch_upload(
    make_sim: MakeSim, session: aiohttp.ClientSession, filename: str, content: bytes
) -> None:
    """A bad purpose=batch upload is rejected with HTTP 400 code 1210."""
    sim = await make_sim()
    status, data = await upload(session, sim, content, filename=filename)
    assert status == 400 and data["error"]["code"] == "1210"
    assert sim.stats.files_uploaded == 0


# -- batches ----------------------------------------------------------------------------


async def test_batch_lifecycle_completed(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """A batch walks validating → in_progress → finalizing → completed on the fake clock."""
    clock = FakeClock()
    sim = await make_sim(
        clock=clock, batch_validating_s=10, batch_in_progress_s=100, batch_finalizing_s=10
    )
    lines = [batch_line(f"c-{i:06d}", u) for i, u in enumerate(URLS)]
    batch = await create_batch(session, sim, lines)
    assert batch["status"] == "validating" and batch["object"] == "batch"
    assert batch["request_counts"] == {"total": 10, "completed": 0, "failed": 0}
    assert batch["metadata"] == {"job": "t"} and batch["output_file_id"] is None
    clock.advance(60)
    mid = await retrieve(session, sim, batch["id"])
    assert mid["status"] == "in_progress" and mid["request_counts"]["completed"] == 5
    assert mid["in_progress_at"] == batch["created_at"] + 10
    clock.advance(55)
    assert (await retrieve(session, sim, batch["id"]))["status"] == "finalizing"
    clock.advance(10)
    done = await retrieve(session, sim, batch["id"])
    assert done["status"] == "completed" and done["error_file_id"] is None
    assert done["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    assert isinstance(done["completed_at"], int)
    out = await read_lines(session, sim, done["output_file_id"])
    by_id = {line["custom_id"]: line for line in out}
    assert len(out) == 10 and set(by_id) == {line["custom_id"] for line in lines}
    for i, url in enumerate(URLS):
        line = by_id[f"c-{i:06d}"]
        assert line["id"] == batch["id"] and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["choices"][0]["message"]["content"] == expected_content(url)
        assert body["model"] == "glm-4v-plus-0111"
    assert [line["custom_id"] for line in out] != sorted(by_id), "output should be shuffled"
    assert sim.stats.batches_created == 1 and sim.stats.batch_lines_received == 10


@pytest.mark.parametrize("envelope", ["zhipu", "openai"])
async def test_batch_line_faults(
    make_sim: MakeSim, session: aiohttp.ClientSession, envelope: str
) -> None:
    """Line faults land in the error file, in neither file, or twice in the output file."""
    clock = FakeClock()
    faults = {URLS[0]: "500", URLS[1]: "1301", URLS[2]: "missing", URLS[3]: "duplicate"}
    sim = await make_sim(clock=clock, batch_line_faults=faults, error_envelope=envelope)
    batch = await create_batch(
        session, sim, [batch_line(f"c-{i:06d}", u) for i, u in enumerate(URLS[:5])]
    )
    clock.advance(1)
    done = await retrieve(session, sim, batch["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 5, "completed": 2, "failed": 2}
    out = [line["custom_id"] for line in await read_lines(session, sim, done["output_file_id"])]
    assert sorted(out) == ["c-000003", "c-000003", "c-000004"]
    errors = {e["custom_id"]: e for e in await read_lines(session, sim, done["error_file_id"])}
    assert set(errors) == {"c-000000", "c-000001"}
    if envelope == "zhipu":
        assert errors["c-000000"]["response"]["status_code"] == 500
        assert errors["c-000001"]["response"]["body"]["error"]["code"] == "1301"
    else:
        assert errors["c-000000"]["response"] is None
        assert errors["c-000001"]["error"]["code"] == "1301"


async def test_batch_flat_counts_and_failed(
    make_sim: MakeSim, session: aiohttp.ClientSession
) -> None:
    """Flat request_counts sit at top level; a failed batch has errors and no files."""
    clock = FakeClock()
    sim = await make_sim(clock=clock, request_counts_shape="flat", batch_final_status="failed")
    batch = await create_batch(session, sim, [batch_line("c-000001", "u")])
    assert "request_counts" not in batch and batch["total"] == 1
    clock.advance(1)
    done = await retrieve(session, sim, batch["id"])
    assert done["status"] == "failed" and isinstance(done["failed_at"], int)
    assert done["output_file_id"] is None and done["error_file_id"] is None
    assert done["errors"]["object"] == "list" and done["errors"]["data"][0]["line"] == 1


async def test_batch_expired_partial(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """An expired batch has results for the first partial fraction of lines only."""
    clock = FakeClock()
    sim = await make_sim(clock=clock, batch_final_status="expired", batch_partial_fraction=0.3)
    batch = await create_batch(
        session, sim, [batch_line(f"c-{i:06d}", u) for i, u in enumerate(URLS)]
    )
    clock.advance(1)
    done = await retrieve(session, sim, batch["id"])
    assert done["status"] == "expired" and isinstance(done["expired_at"], int)
    out = await read_lines(session, sim, done["output_file_id"])
    assert sorted(line["custom_id"] for line in out) == ["c-000000", "c-000001", "c-000002"]
    assert done["request_counts"]["completed"] == 3


async def test_batch_cancel(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """Cancel shows cancelling, then cancelled with partial results after finalizing_s."""
    clock = FakeClock()
    sim = await make_sim(
        clock=clock, batch_partial_fraction=0.5, batch_in_progress_s=100, batch_finalizing_s=5
    )
    batch = await create_batch(
        session, sim, [batch_line(f"c-{i:06d}", u) for i, u in enumerate(URLS[:4])]
    )
    clock.advance(20)
    async with session.post(f"{sim.base_url}/batches/{batch['id']}/cancel") as resp:
        cancelling = await resp.json()
    assert cancelling["status"] == "cancelling" and cancelling["output_file_id"] is None
    clock.advance(5)
    done = await retrieve(session, sim, batch["id"])
    assert done["status"] == "cancelled" and isinstance(done["cancelled_at"], int)
    out = await read_lines(session, sim, done["output_file_id"])
    assert sorted(line["custom_id"] for line in out) == ["c-000000", "c-000001"]
    assert sim.stats.batches_cancelled == 1


async def test_batch_auto_delete_input(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """auto_delete_input_file (the API default) removes the input file once the batch ends."""
    clock = FakeClock()
    sim = await make_sim(clock=clock)
    batch = await create_batch(
        session, sim, [batch_line("c-000001", "u")], auto_delete_input_file=True
    )
    clock.advance(1)
    assert (await retrieve(session, sim, batch["id"]))["status"] == "completed"
    async with session.get(f"{sim.base_url}/files/{batch['input_file_id']}/content") as resp:
        assert resp.status == 404


async def test_batch_list_paging(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """GET /batches pages newest first with after/limit/has_more/first_id/last_id."""
    sim = await make_sim()
    ids = [
        (await create_batch(session, sim, [batch_line("c-000001", "u")]))["id"] for _ in range(5)
    ]
    newest_first = ids[::-1]
    page1 = await get_json(session, f"{sim.base_url}/batches?limit=2")
    assert [b["id"] for b in page1["data"]] == newest_first[:2]
    assert page1["has_more"] is True and page1["first_id"] == newest_first[0]
    page2 = await get_json(session, f"{sim.base_url}/batches?limit=2&after={page1['last_id']}")
    assert [b["id"] for b in page2["data"]] == newest_first[2:4]
    page3 = await get_json(session, f"{sim.base_url}/batches?limit=2&after={page2['last_id']}")
    assert [b["id"] for b in page3["data"]] == newest_first[4:] and page3["has_more"] is False
    everything = await get_json(session, f"{sim.base_url}/batches")
    assert len(everything["data"]) == 5 and everything["object"] == "list"
    async with session.get(f"{sim.base_url}/batches?limit=101") as resp:
        assert resp.status == 400
    async with session.get(f"{sim.base_url}/batches/batch_1") as resp:
        assert resp.status == 404 and "error" in await resp.json()


async def test_state_dir_persists(
    make_sim: MakeSim, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A second simulator on the same state_dir sees and finishes the first one's batch."""
    clock = FakeClock()
    first = await make_sim(clock=clock, state_dir=tmp_path)
    batch = await create_batch(session, first, [batch_line("c-000001", URLS[0])])
    await first.close()
    clock.advance(1)
    second = await make_sim(clock=clock, state_dir=tmp_path)
    done = await retrieve(session, second, batch["id"])
    assert done["status"] == "completed" and done["metadata"] == {"job": "t"}
    out = await read_lines(session, second, done["output_file_id"])
    content = out[0]["response"]["body"]["choices"][0]["message"]["content"]
    assert content == expected_content(URLS[0])
    third = await make_sim(clock=clock, state_dir=tmp_path)
    assert (await retrieve(session, third, batch["id"]))["output_file_id"] == done["output_file_id"]


# -- control and config -----------------------------------------------------------------


async def test_control_endpoints(make_sim: MakeSim, session: aiohttp.ClientSession) -> None:
    """/_sim/stats reports counters, /_sim/settings merges knobs, /_sim/reset zeroes stats."""
    sim = await make_sim()
    await post_chat(session, sim, chat_body("u"))
    root = sim.base_url.removesuffix(API_PREFIX)
    stats = await get_json(session, f"{root}/_sim/stats")
    assert stats["chat_requests"] == 1 and stats["per_url"] == {"u": 1}
    async with session.post(f"{root}/_sim/settings", json={"error_500_rate": 1.0}) as resp:
        assert resp.status == 200 and (await resp.json())["error_500_rate"] == 1.0
    assert (await post_chat(session, sim, chat_body("u")))[0] == 500
    async with session.post(f"{root}/_sim/settings", json={"no_such_knob": 1}) as resp:
        assert resp.status == 400 and "no_such_knob" in (await resp.json())["error"]["message"]
    async with session.post(f"{root}/_sim/reset") as resp:
        assert resp.status == 200
    assert (await get_json(session, f"{root}/_sim/stats"))["chat_requests"] == 0


def test_settings_from_dict() -> None:
    """settings_from_dict converts JSON shapes and names an unknown key or fault."""
    s = settings_from_dict({"limit_schedule": [[0, 16], [10, None]], "url_faults": {"u": ["500"]}})
    assert s.limit_schedule == [(0.0, 16), (10.0, None)] and s.url_faults == {"u": ["500"]}
    with pytest.raises(ValueError, match="latency_men_s"):
        settings_from_dict({"latency_men_s": 1})
    with pytest.raises(ValueError, match="explode"):
        settings_from_dict({"url_faults": {"u": ["explode"]}})
    with pytest.raises(ValueError, match="max_in_flight"):
        settings_from_dict({"max_in_flight": "abc"})
    assert settings_from_dict({"max_in_flight": "4", "retry_after_s": None}).max_in_flight == 4


def test_serve_standalone() -> None:
    """serve() prints its listening line and exits cleanly on SIGTERM."""
    code = "from runner.simulator import serve, SimSettings; serve('127.0.0.1', 0, SimSettings())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        assert line.rstrip().endswith(API_PREFIX)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
