"""``run --shard`` / ``GLMRUN_SHARD``: a bad value is a usage error before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import main
from tests.support.configs import write_config


@pytest.mark.parametrize(
    ("args", "environ"),
    [(["--shard", "4/4"], {}), ([], {"GLMRUN_SHARD": "x/4"}), (["--shard", "1"], {})],
    ids=["out-of-range", "env-malformed", "no-n"],
)
def test_a_bad_shard_is_a_usage_error(tmp_path: Path, args: list[str], environ: dict) -> None:
    """--shard / GLMRUN_SHARD out of range or malformed: exit 2 before anything runs."""
    config = write_config(tmp_path)
    result = CliRunner().invoke(main, ["run", str(config), *args], env=environ)
    assert result.exit_code == 2, result.output
    assert "--shard" in result.output and not (tmp_path / "out").exists()
