"""Bugs found by the adversarial review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from runner.app import RunOptions, run
from runner.config import load_config
from runner.errors import ComeBackLater

ENV = {"ZHIPUAI_API_KEY": "k"}


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def test_no_wait_batch_of_one_job_is_collected_by_a_run_of_all_jobs(tmp_path: Path) -> None:
    """A batch left running by `--job b --no-wait` is collected (not lost and paid again) by a later run without --job."""
    (tmp_path / "urls.txt").write_text("".join(f"https://img.example/{i}.jpg\n" for i in range(5)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "api: {base_url: simulator}\n"
        "retry: {max_attempts: 2, base_delay_s: 0.01, max_delay_s: 0.02}\n"
        "batch: {poll_interval_s: 0.02}\n"
        "simulator: {latency_mean_s: 0.0, batch_validating_s: 0.0, batch_in_progress_s: 0.2, batch_finalizing_s: 0.0}\n"
        "jobs:\n"
        "  - {name: a, input: urls.txt, output: rt/a.jsonl, model: glm-4v-flash, prompt: hi, mode: realtime}\n"
        "  - {name: b, input: urls.txt, output: bt/b.jsonl, model: glm-4v-flash, prompt: hi, mode: batch}\n"
    )
    config = load_config(cfg, environ=ENV)
    with pytest.raises(ComeBackLater):
        await run(config, RunOptions(job="b", no_wait=True, tty=False), out=io.StringIO())
    result = await run(config, RunOptions(tty=False), out=io.StringIO())
    records = _records(tmp_path / "bt" / "b.jsonl")
    assert sorted(r["url"] for r in records) == sorted(f"https://img.example/{i}.jpg" for i in range(5))
    assert {r["via"] for r in records} == {"batch"}
    assert result.exit_code == 0
