"""The runner package type-checks under ``mypy --strict`` (config: pyproject.toml [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_runner_passes_mypy_strict(tmp_path: Path) -> None:
    """``python -m mypy runner`` with the project's strict config reports no errors."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]' brings it)")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy_cache"), "runner"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
