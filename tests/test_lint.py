"""The style holds by itself: ``ruff check`` and ``ruff format --check`` are clean (rules in
pyproject.toml: pyflakes, pycodestyle, isort, bugbear, pyupgrade, simplify)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.runs import python_module

ROOT = Path(__file__).resolve().parents[1]
TREES = ["runner", "tests", "benchmarks"]


@pytest.mark.parametrize(
    "args", [["check", "--no-cache"], ["format", "--check", "--no-cache"]], ids=["check", "format"]
)
def test_ruff_is_clean(args: list[str]) -> None:
    """ruff reports nothing on runner/, tests/ and benchmarks/."""
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e '.[test]' brings it)")
    proc = python_module("ruff", *args, *TREES, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
