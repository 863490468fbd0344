"""A plain ``glmrun run`` imports only what it uses: start-up time is mostly imports.

The run is a real child process against a standalone simulator, with stderr not a terminal;
the modules it loaded are read from its own ``sys.modules`` as it exits.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.records import read_records

from .procs import REPO, env, simulator, write_job

# Run glmrun as `python -m runner` does, then list every module it loaded (on stderr, last;
# glmrun ends with os._exit, runner.cli.main.entry: the list is printed just before it).
PROBE = """
import os, runpy, sys
sys.argv = ["glmrun", *sys.argv[1:]]
exit_now = os._exit
def report():
    print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr, flush=True)
def exit_after_report(status):
    report()
    exit_now(status)
os._exit = exit_after_report
try:
    runpy.run_module("runner", run_name="__main__", alter_sys=True)
finally:
    report()
"""

# What a realtime run of plain URLs (no rpm, no schema, bearer auth, fresh output) never needs.
UNUSED = [
    "aiofiles",  # local files only
    "aiolimiter",  # limits.rpm only
    "csv",  # CSV inputs only
    "jsonschema",  # a structured output with a schema only
    "jwt",  # api.auth: jwt only
    "numpy",  # an output with records to resume from only
    "runner.core.cost",  # a price or --dry-run only
    "rich",  # a terminal only
    "runner.core.batch_states",  # batch runs only
    "runner.engine.batch",
    "runner.io.batch_state",
    "runner.simulator",  # base_url: simulator only
]


def loaded_modules(config: Path) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "run", str(config), "-q"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("MODULES "), proc.stderr
    return set(last.split()[1:])


def test_a_plain_run_loads_nothing_it_does_not_use(tmp_path: Path) -> None:
    """One URL against a standalone simulator: aiohttp, and none of the optional modules."""
    with simulator("latency_mean_s=0") as sim:
        config = write_job(tmp_path, sim.base_url, ["https://img.example.test/a.jpg"])
        modules = loaded_modules(config)
    assert [r["status"] for r in read_records(tmp_path / "out" / "j.jsonl")] == ["ok"]
    assert "aiohttp" in modules
    assert [name for name in UNUSED if name in modules] == []


def test_a_run_with_rpm_loads_the_limiter(tmp_path: Path) -> None:
    """The probe sees lazy imports happen: ``limits.rpm`` brings aiolimiter in."""
    with simulator("latency_mean_s=0") as sim:
        config = write_job(
            tmp_path, sim.base_url, ["https://img.example.test/a.jpg"], limits={"rpm": 6000}
        )
        modules = loaded_modules(config)
    assert "aiolimiter" in modules
