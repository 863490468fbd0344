"""Shared helpers for the API-surface tests: write a config, run it on the simulator, read records."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import orjson
import yaml

from runner.app.orchestrate import RunOptions, RunResult, run
from runner.config import load_config

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154789c6338c1c50500027a00dd"
    "6727427d0000000049454e44ae426082"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_config(tmp_path: Path, job: dict[str, Any] | None = None, **top: Any) -> Path:
    """A simulator config with one job (fast retries); ``job`` and ``top`` override defaults."""
    data: dict[str, Any] = {
        "api": {"base_url": "simulator"},
        "retry": {"max_attempts": 3, "base_delay_s": 0.001, "max_delay_s": 0.01},
        "simulator": {"latency_mean_s": 0.0},
        "run": {"progress_interval_s": 60},
        "jobs": [
            {
                "name": "t",
                "input": "in.txt",
                "output": "out.jsonl",
                "model": "glm-4v-plus-0111",
                "prompt": "Describe.",
                **(job or {}),
            }
        ],
    }
    for key, value in top.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


async def run_config(
    path: Path, environ: dict[str, str] | None = None, **options: Any
) -> tuple[RunResult, str]:
    out = io.StringIO()
    result = await run(
        load_config(path, environ=environ or {}), RunOptions(tty=False, **options), out=out
    )
    return result, out.getvalue()


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r.get("key", r["url"]): r for r in records}
