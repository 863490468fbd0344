"""A ``--log-format json`` log as a cron operator alerts on it: the last line of an error is
``level: error``; exit 75 ("come back later") is not, so a run every ten minutes while batches
run does not fire an alert each time; a config warning is one event name with its text as the
message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from runner.cli.main import main
from runner.io.store import RunLock
from tests.support.configs import ENV, output_of, write_config


def _events(*args: str) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner(env=ENV).invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, [json.loads(line) for line in result.stderr.splitlines()]


def test_no_wait_with_batches_running_ends_with_an_info_line(tmp_path: Path) -> None:
    """--no-wait while batches run: exit 75 and a last line at level info, event 'come back
    later', with the message a person reads."""
    config = write_config(
        tmp_path,
        job={"mode": "batch"},
        batch={"poll_interval_s": 0.01},
        simulator={"batch_in_progress_s": 600},
    )
    code, events = _events(str(config), "--no-wait", "--log-format", "json")
    assert code == 75
    last = events[-1]
    assert (last["event"], last["level"], last["exit_code"]) == ("come back later", "info", 75)
    assert (
        "1 batch still running; 0/10 lines of the running batch done; run the same"
        in (last["message"])
    )
    assert not [e for e in events if e["level"] == "error"]


def test_a_held_lock_ends_with_a_warning_line(tmp_path: Path) -> None:
    """A second cron run while the first holds the output's lock: exit 75 and a warning line
    naming the holder, no error."""
    config = write_config(tmp_path)
    output_of(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    with RunLock(output_of(tmp_path)):
        code, events = _events(str(config), "--log-format", "json")
    assert code == 75
    last = events[-1]
    assert (last["event"], last["level"], last["exit_code"]) == ("come back later", "warning", 75)
    assert "is in use by another glmrun run" in last["message"]


def test_a_failing_run_still_ends_with_an_error_line(tmp_path: Path) -> None:
    """A missing input (exit 2) keeps event and level 'error'."""
    config = write_config(tmp_path)
    (tmp_path / "urls.txt").unlink()
    code, events = _events(str(config), "--log-format", "json")
    assert code == 2
    assert (events[-1]["event"], events[-1]["level"]) == ("error", "error")


def test_a_usage_error_in_a_json_log_is_one_json_line(tmp_path: Path) -> None:
    """A scheduler's bad GLMRUN_SHARD (or a bad option) with --log-format json: one error event
    naming the option, exit 2; without it, click's usage text as before."""
    config = str(write_config(tmp_path))
    runner = CliRunner(env={**ENV, "GLMRUN_SHARD": "9/4"})
    for args in (["--log-format", "json"], ["--log-format=json"]):
        result = runner.invoke(main, ["run", config, *args], prog_name="glmrun")
        assert result.exit_code == 2
        (line,) = result.stderr.splitlines()
        event = json.loads(line)
        assert (event["event"], event["level"], event["exit_code"]) == ("error", "error", 2)
        assert event["message"].startswith("glmrun run: Invalid value for '--shard'")
        assert "found '9/4'" in event["message"]
    text = runner.invoke(main, ["run", config], prog_name="glmrun")
    assert text.exit_code == 2 and text.stderr.startswith("Usage: glmrun run")
    assert not output_of(tmp_path).exists()


def test_a_config_warning_is_one_event_with_its_text_as_message(tmp_path: Path) -> None:
    """A misspelt param: the JSON event is 'config warning' (one name to match), its text the
    message; the run goes on."""
    config = write_config(tmp_path, job={"params": {"temprature": 0.5}})
    code, events = _events(str(config), "--log-format", "json")
    assert code == 0
    (warning,) = [e for e in events if e["level"] == "warning"]
    assert warning["event"] == "config warning"
    assert "params.temprature: not a known GLM vision parameter" in warning["message"]
