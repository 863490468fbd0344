"""Test configs on disk: one writer, and the bases the suites share.

Every suite writes its ``config.yaml`` through :class:`ConfigFactory`: a base config, deep-merged
overrides, and (when asked) the job's input file. The bases differ on purpose (job names, output
paths, retry speed) and are data: the shared ones here, the others derived from the minimal one
(``write_minimal_config.derive(...)``) next to the one suite that uses them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from tests.support.sim import INSTANT_BATCHES

KEY_ENV = "GLMRUN_TEST_KEY"
ENV = {KEY_ENV: "test-key-not-secret"}
DELETE = object()  # an override value that removes the key


def make_urls(
    n: int, start: int = 0, prefix: str = "https://img.example.test/p", digits: int = 5
) -> list[str]:
    """``n`` distinct, valid image URLs ``{prefix}/{i}.jpg``, ``i`` zero-padded to ``digits``."""
    return [f"{prefix}/{i:0{digits}d}.jpg" for i in range(start, start + n)]


def merge(base: Any, over: Any) -> Any:
    """Deep-merge ``over`` into a copy of ``base``; DELETE removes a key, lists are replaced."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is DELETE:
            out.pop(key, None)
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class ConfigFactory:
    """``factory(tmp_path, urls, job=..., **sections)`` writes ``tmp_path/config.yaml``.

    ``sections`` deep-merge into ``base`` and ``job`` into its first job. The input file (the
    base job's ``input``, or ``input_name``, which the job then reads) gets ``urls`` one per line,
    or ``input_bytes``; with neither, ``default_urls`` URLs, and none at all when that is 0 (the
    test writes its own input). ``raw`` replaces the config text outright. ``fmt="json"`` writes
    the config as JSON (YAML reads it the same) for tests that edit or parse the file.
    """

    base: Mapping[str, Any]
    default_urls: int = 0
    fmt: Literal["yaml", "json"] = "yaml"

    def __call__(
        self,
        tmp_path: Path,
        urls: Iterable[str] | None = None,
        *,
        job: dict[str, Any] | None = None,
        input_name: str | None = None,
        input_bytes: bytes | None = None,
        raw: str | None = None,
        **sections: Any,
    ) -> Path:
        data = merge(dict(self.base), sections)
        if input_name is not None:
            job = {**(job or {}), "input": input_name}
        if job:
            data["jobs"] = [merge(data["jobs"][0], job), *data["jobs"][1:]]
        path = tmp_path / "config.yaml"
        if raw is not None:
            path.write_text(raw, encoding="utf-8")
        elif self.fmt == "json":
            path.write_bytes(orjson.dumps(data))
        else:
            path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        if urls is None and input_bytes is None and self.default_urls:
            urls = make_urls(self.default_urls)
        if input_bytes is None and urls is not None:
            input_bytes = "".join(f"{u}\n" for u in urls).encode()
        if input_bytes is not None:
            (tmp_path / (input_name or self.base["jobs"][0]["input"])).write_bytes(input_bytes)
        return path

    def derive(
        self,
        *,
        job: dict[str, Any] | None = None,
        default_urls: int | None = None,
        fmt: Literal["yaml", "json"] | None = None,
        **sections: Any,
    ) -> ConfigFactory:
        """A factory for a base that differs from this one by ``sections`` and ``job``."""
        base = merge(dict(self.base), sections)
        if job:
            base["jobs"] = [merge(base["jobs"][0], job), *base["jobs"][1:]]
        return ConfigFactory(
            base,
            self.default_urls if default_urls is None else default_urls,
            fmt or self.fmt,
        )


# The app suites (CLI, engines, config): job t reads urls.txt (10 URLs unless given) into
# out/t.jsonl, the key comes from GLMRUN_TEST_KEY (pass ENV), the simulator answers in 5 ms.
BASE_CONFIG: dict[str, Any] = {
    "api": {"base_url": "simulator", "api_key_env": KEY_ENV, "timeout_s": 5},
    "limits": {"concurrency": 4},
    "retry": {"max_attempts": 5, "base_delay_s": 0.001, "max_delay_s": 0.01},
    "run": {"flush_interval_s": 0.05, "progress_interval_s": 10, "grace_s": 1},
    "simulator": {"latency_mean_s": 0.005},
    "jobs": [
        {
            "name": "t",
            "input": "urls.txt",
            "output": "out/t.jsonl",
            "model": "glm-4v-flash",
            "prompt": "describe the picture",
            "params": {"temperature": 0.5},
        }
    ],
}
write_config = ConfigFactory(BASE_CONFIG, default_urls=10)


def output_of(tmp_path: Path) -> Path:
    """The output file of BASE_CONFIG's job."""
    return tmp_path / "out" / "t.jsonl"


# Everything else at its default: job j reads urls.txt into out.jsonl on glm-4v-flash.
MINIMAL_CONFIG: dict[str, Any] = {
    "api": {"base_url": "simulator"},
    "jobs": [
        {
            "name": "j",
            "input": "urls.txt",
            "output": "out.jsonl",
            "model": "glm-4v-flash",
            "prompt": "hi",
        }
    ],
}
write_minimal_config = ConfigFactory(MINIMAL_CONFIG)

# The API-surface suites (input forms, answers, auth, cost): the test writes in.txt (or names
# another input in ``job``); job t on glm-4v-plus-0111 writes out.jsonl.
write_surface_config = write_minimal_config.derive(
    retry={"max_attempts": 3, "base_delay_s": 0.001, "max_delay_s": 0.01},
    simulator={"latency_mean_s": 0.0},
    run={"progress_interval_s": 60},
    job={"name": "t", "input": "in.txt", "model": "glm-4v-plus-0111", "prompt": "Describe."},
)

# Job j reads urls.txt into out/results.jsonl in batch mode, polling without pause (the driver
# sleeps on the FakeClock of start_batch_sim). Written as JSON, so a test can edit the text.
write_batch_config = write_minimal_config.derive(
    fmt="json",
    limits={"concurrency": 8},
    retry={"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.05},
    batch={"poll_interval_s": 0},
    simulator=INSTANT_BATCHES,
    job={
        "output": "out/results.jsonl",
        "model": "glm-4v-plus-0111",
        "prompt": "Describe.",
        "mode": "batch",
    },
)


def config_sections() -> dict[str, type]:
    """Each top-level section of a config (and ``jobs``' items) and the class that reads it,
    as the README's reference tables list them."""
    from runner.config import schema
    from runner.simulator.settings import SimSettings

    return {
        "api": schema.ApiConfig,
        "limits": schema.LimitsConfig,
        "retry": schema.RetryConfig,
        "batch": schema.BatchConfig,
        "run": schema.RunConfig,
        "local_files": schema.LocalFilesConfig,
        "cost": schema.CostConfig,
        "simulator": SimSettings,
        "jobs": schema.JobConfig,
    }
