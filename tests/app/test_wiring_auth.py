"""Every command gets its client from runner.app.wiring, so ``api.auth: jwt`` reaches them all."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner

from runner.app.bench import bench
from runner.cli.main import main
from runner.config import load_config
from tests.support.configs import write_surface_config
from tests.support.records import read_records

KEY = "my-key-id.s3cr3t-part"
URLS = [f"https://e.org/{i}.jpg" for i in range(6)]


def jwt_config(tmp_path: Path) -> Path:
    return write_surface_config(tmp_path, URLS, api={"auth": "jwt"}, simulator={"require_jwt": KEY})


async def test_bench_signs_its_requests_with_jwt(tmp_path: Path) -> None:
    """bench with auth: jwt against a simulator that only accepts JWTs: every answer is ok."""
    config = load_config(jwt_config(tmp_path), environ={"ZHIPUAI_API_KEY": KEY})
    out = io.StringIO()
    levels = await bench(config, sample=3, levels=[1, 2], out=out)
    assert [lv.ok for lv in levels] == [3, 3] and all(lv.errors == 0 for lv in levels)
    records = read_records(tmp_path / "out.jsonl")
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)


def test_batches_list_remote_signs_with_jwt(tmp_path: Path) -> None:
    """batches list --remote with auth: jwt lists the account's batches instead of failing 401."""
    cfg = jwt_config(tmp_path)
    result = CliRunner().invoke(
        main,
        ["batches", "list", str(cfg), "--remote"],
        env={"ZHIPUAI_API_KEY": KEY},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
