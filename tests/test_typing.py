"""The runner package type-checks under ``mypy --strict`` (config: pyproject.toml [tool.mypy])."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.runs import python_module

ROOT = Path(__file__).resolve().parents[1]


def test_runner_passes_mypy_strict(tmp_path: Path) -> None:
    """``python -m mypy runner`` with the project's strict config reports no errors."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]' brings it)")
    cache = str(tmp_path / "mypy_cache")
    proc = python_module("mypy", "--cache-dir", cache, "runner", cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
