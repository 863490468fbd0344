"""The style holds by itself: ``ruff check`` and ``ruff format --check`` are clean (rules in
pyproject.toml: pyflakes, pycodestyle, isort, bugbear, pyupgrade, simplify)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["runner", "tests", "benchmarks"]


@pytest.mark.parametrize(
    "args", [["check", "--no-cache"], ["format", "--check", "--no-cache"]], ids=["check", "format"]
)
def test_ruff_is_clean(args: list[str]) -> None:
    """ruff reports nothing on runner/, tests/ and benchmarks/."""
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e '.[test]' brings it)")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *args, *TREES],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
