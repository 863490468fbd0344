"""Every fault a long run meets ends in a retry or a clear error record: never a crash,
a hang or a lost URL. Runs the whole app in-process against a simulator on 127.0.0.1."""

from __future__ import annotations

import functools
import io
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from runner.app.orchestrate import RunOptions, RunResult
from runner.app.orchestrate import run as run_app
from runner.config import load_config
from runner.errors import ApiStopped, Unreachable
from runner.simulator import Simulator, expected_content
from tests.support.configs import write_minimal_config
from tests.support.records import latest, read_records
from tests.support.sim import MakeSim

RunJob = Callable[..., Awaitable[tuple[RunResult, dict[str, dict[str, Any]]]]]


# Job f reads urls.txt into out.jsonl; a 0.5 s timeout and 4 quick attempts per URL.
write_config = write_minimal_config.derive(
    api={"timeout_s": 0.5},
    limits={"concurrency": 8},
    retry={"max_attempts": 4, "base_delay_s": 0.001, "max_delay_s": 0.01},
    job={"name": "f", "prompt": "p"},
)


@pytest.fixture
def sim_and_run(tmp_path: Path, start_sim: MakeSim) -> tuple[MakeSim, RunJob]:
    """Start a simulator with given knobs and run the app on a URL list against it."""

    async def run_job(
        sim: Simulator, urls: list[str], **sections: Any
    ) -> tuple[RunResult, dict[str, dict[str, Any]]]:
        api = {"base_url": sim.base_url, **sections.pop("api", {})}
        path = write_config(tmp_path, urls, api=api, **sections)
        config = load_config(path, environ={"ZHIPUAI_API_KEY": "k"})
        result = await run_app(config, RunOptions(tty=False), out=io.StringIO())
        return result, latest(read_records(tmp_path / "out.jsonl"))

    return functools.partial(start_sim, latency_mean_s=0.0), run_job


# (fault script for one URL, expected final status, expected error code or None, attempts)
SCRIPTS = [
    (["500"], "ok", None, 2),
    (["502", "503", "504"], "ok", None, 4),
    (["429"], "ok", None, 2),
    (["429noretry", "429noretry"], "ok", None, 3),
    (["drop"], "ok", None, 2),
    (["hang"], "ok", None, 2),
    (["badjson"], "ok", None, 2),
    (["nochoices"], "ok", None, 2),
    (["error200"], "ok", None, 2),
    (["network_error"], "ok", None, 2),
    (["trickle"], "ok", None, 1),
    (["length"], "ok", None, 1),
    (["sensitive"], "error", "sensitive", 1),
    (["1301"], "error", "1301", 1),
    (["1261"], "error", "1261", 1),
    (["1210"], "error", "1210", 1),
    (["500"] * 4, "error", "500", 4),
    (["502"] * 4, "error", "http_502", 4),
    (["drop"] * 4, "error", "connection_error", 4),
    (["hang"] * 4, "error", "timeout", 4),
]
IDS = ["+".join(sorted(set(s))) + f"x{len(s)}" for s, *_ in SCRIPTS]


async def test_each_scripted_fault_ends_in_a_retry_or_a_clear_error_record(
    sim_and_run: Any,
) -> None:
    """One run with a URL per fault script (and clean URLs around them): every URL has a
    final record, ok ones carry their own content, errors carry the documented code."""
    start, run_job = sim_and_run
    faulty = {
        f"https://img.example.com/fault/{i}-{IDS[i]}.jpg": script
        for i, (script, *_rest) in enumerate(SCRIPTS)
    }
    clean = [f"https://img.example.com/clean/{i}.jpg" for i in range(60)]
    sim = await start(
        url_faults={u: list(s) for u, s in faulty.items()},
        retry_after_s=0.01,
        hang_s=5,
        trickle_s=0.1,
    )
    result, latest = await run_job(sim, [*faulty, *clean])
    assert set(latest) == set(faulty) | set(clean)
    for i, (url, _script) in enumerate(faulty.items()):
        _, status, code, attempts = SCRIPTS[i]
        record = latest[url]
        assert record["status"] == status, (IDS[i], record)
        assert record["attempts"] == attempts, (IDS[i], record)
        if status == "ok":
            assert record["content"] == expected_content(url)
        else:
            assert record["error"]["code"] == code, (IDS[i], record)
            assert record["error"]["retryable"] is (attempts > 1), (IDS[i], record)
            assert record["error"]["message"]
    assert all(latest[u]["status"] == "ok" for u in clean)
    assert result.exit_code == 1  # some URLs ended as errors


async def test_retryable_error_records_are_retried_by_the_next_run(sim_and_run: Any) -> None:
    """A URL that exhausted its attempts on 5xx gets an ok record on the next run."""
    start, run_job = sim_and_run
    url = "https://img.example.com/again.jpg"
    sim = await start(url_faults={url: ["503"] * 5})
    result, latest = await run_job(sim, [url], retry={"max_attempts": 3})
    assert latest[url]["error"]["code"] == "http_503" and result.exit_code == 1
    result, latest = await run_job(sim, [url], retry={"max_attempts": 3})
    assert latest[url]["status"] == "ok" and result.exit_code == 0


async def test_a_trickle_slower_than_the_timeout_is_retried(sim_and_run: Any) -> None:
    """A body that trickles in longer than api.timeout_s times out and is sent again."""
    start, run_job = sim_and_run
    url = "https://img.example.com/slow.jpg"
    sim = await start(url_faults={url: ["trickle"]}, trickle_s=1.0)
    _, latest = await run_job(sim, [url], api={"timeout_s": 0.2})
    assert latest[url]["status"] == "ok" and latest[url]["attempts"] == 2
    assert sim.stats.per_url[url] == 2


async def test_random_fault_storm_loses_no_url(sim_and_run: Any) -> None:
    """500s, 429s, drops, hangs, bad JSON and empty choices at random: each of 300 URLs ends
    with exactly one latest record, ok with its own content or a retryable error."""
    start, run_job = sim_and_run
    urls = [f"https://img.example.com/storm/{i}.jpg" for i in range(300)]
    sim = await start(
        error_500_rate=0.08,
        error_429_rate=0.08,
        drop_rate=0.04,
        hang_rate=0.02,
        hang_s=5,
        bad_json_rate=0.04,
        no_choices_rate=0.04,
        seed=7,
    )
    result, latest = await run_job(sim, urls, api={"timeout_s": 0.3}, retry={"max_attempts": 6})
    assert set(latest) == set(urls)
    ok = [u for u, r in latest.items() if r["status"] == "ok"]
    assert all(latest[u]["content"] == expected_content(u) for u in ok)
    assert all(r["error"]["retryable"] for r in latest.values() if r["status"] == "error")
    assert len(ok) >= 295
    assert result.stats[0].retries > 0


@pytest.mark.parametrize("fault", ["401", "1113"], ids=["auth", "arrears"])
async def test_account_faults_stop_the_run_with_exit_3(sim_and_run: Any, fault: str) -> None:
    """Auth and arrears answers stop the whole run (ApiStopped, exit 3), no record for them."""
    start, run_job = sim_and_run
    urls = [f"https://img.example.com/stop/{i}.jpg" for i in range(20)]
    sim = await start(url_faults={urls[0]: [fault] * 10})
    with pytest.raises(ApiStopped) as info:
        await run_job(sim, urls, limits={"concurrency": 1})
    assert info.value.exit_code == 3


async def test_a_refused_connection_at_start_ends_early_with_exit_75(tmp_path: Path) -> None:
    """Nothing listens on the port: the probe fails three times, Unreachable (exit 75) names
    the URL, and no record is written (the work stays pending)."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_config(
        tmp_path,
        ["https://img.example.com/x.jpg"],
        api={"base_url": f"http://127.0.0.1:{port}/api/paas/v4"},
    )
    config = load_config(path, environ={"ZHIPUAI_API_KEY": "k"})
    with pytest.raises(Unreachable) as info:
        await run_app(config, RunOptions(tty=False), out=io.StringIO())
    assert info.value.exit_code == 75
    assert f"127.0.0.1:{port}" in str(info.value) and "nothing was sent" in str(info.value)
    assert "ClientConnectorError" not in str(info.value)  # aiohttp's words, not its class name
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_bytes() == b""


async def test_url_counts_match_simulator_requests(sim_and_run: Any) -> None:
    """With 502s for some URLs, the simulator saw exactly attempts-per-record requests."""
    start, run_job = sim_and_run
    urls = [f"https://img.example.com/count/{i}.jpg" for i in range(50)]
    sim = await start(url_faults={u: ["502"] for u in urls[:10]})
    _, latest = await run_job(sim, urls)
    assert Counter({u: r["attempts"] for u, r in latest.items()}) == Counter(
        dict(sim.stats.per_url)
    )


async def test_new_simulator_faults_answer_as_documented(start_sim: MakeSim) -> None:
    """502/503/504 are HTML gateway pages, error200 is a 200 with an error object, 429noretry
    has no Retry-After, trickle sends a whole answer slowly."""
    import time

    import aiohttp

    url = "https://img.example.com/shape.jpg"
    faults = ["502", "503", "504", "error200", "429noretry", "trickle"]
    sim = await start_sim(
        latency_mean_s=0.0, url_faults={url: list(faults)}, retry_after_s=5, trickle_s=0.1
    )
    body = {
        "model": "glm-4v-flash",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
        ],
    }
    seen = []
    async with aiohttp.ClientSession() as session:
        for _ in faults:
            t0 = time.monotonic()
            async with session.post(sim.base_url + "/chat/completions", json=body) as resp:
                seen.append(
                    (
                        resp.status,
                        resp.content_type,
                        resp.headers.get("Retry-After"),
                        await resp.read(),
                        time.monotonic() - t0,
                    )
                )
    assert [s[0] for s in seen] == [502, 503, 504, 200, 429, 200]
    assert all(s[1] == "text/html" and b"<html>" in s[3] for s in seen[:3])
    assert orjson.loads(seen[3][3])["error"]["code"] == "1234"
    assert seen[4][2] is None
    answer = orjson.loads(seen[5][3])
    assert (
        answer["choices"][0]["message"]["content"] == expected_content(url) and seen[5][4] >= 0.09
    )
