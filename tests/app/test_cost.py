"""Token usage per job and route, the price table, and the dry-run cost estimate."""

from __future__ import annotations

from pathlib import Path

import orjson

from runner.app.status import collect, format_status
from runner.config import load_config
from runner.core.cost import usage_from_lines
from runner.core.stats import JobStats
from runner.io.jsonl import iter_lines
from tests.support.configs import write_surface_config
from tests.support.records import read_records
from tests.support.runs import run_config

PRICES = {
    "currency": "CNY",
    "prices": {
        "glm-4v-plus-0111": {"input_per_1k": 0.004, "output_per_1k": 0.01, "batch_discount": 0.5}
    },
}
URLS = [f"https://e.org/{i}.jpg" for i in range(10)]


async def test_summary_shows_tokens_and_cost_per_route(tmp_path: Path) -> None:
    """After a run the summary has realtime tokens and their cost from the price table."""
    cfg = write_surface_config(tmp_path, URLS, job={"prompt": "ab"}, cost=PRICES)
    result, out = await run_config(cfg)
    # simulator: 1000 prompt tokens per image + len(text)//2; 20 completion tokens
    assert result.stats[0].usage_by_route == {"realtime": [10 * 1001, 10 * 20]}
    cost = 10010 / 1000 * 0.004 + 200 / 1000 * 0.01
    assert f"  tokens 10,010 in / 200 out · {cost:.4f} CNY" in out.splitlines()
    assert result.stats[0].summary()["tokens_by_route"] == {
        "realtime": {"prompt": 10010, "completion": 200}
    }


async def test_dry_run_estimates_from_a_per_image_guess_when_no_records(tmp_path: Path) -> None:
    """With no records the dry run uses cost.prompt_tokens_per_image and shows realtime vs batch."""
    cfg = write_surface_config(
        tmp_path,
        URLS,
        job={"prompt": ""},
        cost={**PRICES, "prompt_tokens_per_image": 1000, "completion_tokens": 100},
    )
    _, out = await run_config(cfg, dry_run=True)
    rt = 10 * (1000 / 1000 * 0.004 + 100 / 1000 * 0.01)
    assert f"realtime {rt:.4f} CNY vs batch {rt / 2:.4f} CNY" in out
    assert "no records yet" in out and not (tmp_path / "out.jsonl").exists()


async def test_dry_run_estimates_from_the_average_of_records_so_far(tmp_path: Path) -> None:
    """After a partial run the estimate for the rest uses the records' average usage."""
    cfg = write_surface_config(tmp_path, URLS, job={"prompt": ""}, cost=PRICES)
    await run_config(cfg, limit=4)
    _, out = await run_config(cfg, dry_run=True)
    rt = 6 * (1000 / 1000 * 0.004 + 20 / 1000 * 0.01)
    assert "estimate for 6 pending" in out and "average of 4 records so far" in out
    assert f"realtime {rt:.4f} CNY vs batch {rt / 2:.4f} CNY" in out


async def test_dry_run_with_nothing_to_send_gives_no_estimate(tmp_path: Path) -> None:
    """Every URL done: the dry run says a run would send nothing, not an estimate of 0 tokens
    for 0.0000 CNY."""
    cfg = write_surface_config(tmp_path, URLS[:3], job={"prompt": ""}, cost=PRICES)
    await run_config(cfg)
    _, out = await run_config(cfg, dry_run=True)
    assert out.splitlines()[1:] == ["t: a run would send nothing now"], out


async def test_dry_run_without_a_price_says_so(tmp_path: Path) -> None:
    """A model missing from cost.prices gets a token estimate and a note, not an error."""
    _, out = await run_config(write_surface_config(tmp_path, [URLS[0]]), dry_run=True)
    assert "no price for glm-4v-plus-0111 in cost.prices" in out


async def test_status_sums_usage_per_route_from_the_output(tmp_path: Path) -> None:
    """glmrun status shows tokens spent per route (every billed line) with cost."""
    cfg = write_surface_config(tmp_path, URLS[:2], job={"prompt": ""}, cost=PRICES)
    await run_config(cfg)
    with (tmp_path / "out.jsonl").open("ab") as f:
        f.write(
            orjson.dumps(
                {
                    "url": "x",
                    "status": "ok",
                    "via": "batch",
                    "usage": {"prompt_tokens": 500, "completion_tokens": 50},
                }
            )
            + b"\n"
        )
    (status,) = collect(load_config(cfg, environ={}))
    assert status.usage == {
        "realtime": {"prompt": 2000, "completion": 40},
        "batch": {"prompt": 500, "completion": 50},
    }
    assert "tokens: realtime 2,000 in / 40 out" in format_status(
        status
    ) and "batch 500 in / 50 out" in format_status(status)
    totals = usage_from_lines(iter_lines(tmp_path / "out.jsonl"))
    assert totals.by_route["batch"].records == 1 and len(read_records(tmp_path / "out.jsonl")) == 3


def test_add_usage_defaults_to_the_jobs_route() -> None:
    """A batch job's usage without an explicit route counts as batch; realtime fallback passes its
    route."""
    stats = JobStats("j", route="batch")
    stats.add_usage({"prompt_tokens": 10, "completion_tokens": 1})
    stats.add_usage({"prompt_tokens": 5, "completion_tokens": 2}, "realtime")
    assert stats.usage_by_route == {"batch": [10, 1], "realtime": [5, 2]}
    assert (stats.prompt_tokens, stats.completion_tokens) == (15, 3)


async def test_dry_run_guess_counts_the_images_of_each_item(tmp_path: Path) -> None:
    """With no records, items with three images are estimated at three images' worth of prompt
    tokens."""
    rows = [{"images": [f"https://e.org/{i}-{j}.jpg" for j in range(3)]} for i in range(4)]
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    cost = {**PRICES, "prompt_tokens_per_image": 1000, "completion_tokens": 100}
    _, out = await run_config(
        write_surface_config(tmp_path, job={"input": "in.jsonl", "prompt": ""}, cost=cost),
        dry_run=True,
    )
    assert "~12,000 in / 400 out tokens" in out and "3 images x 1,000" in out
