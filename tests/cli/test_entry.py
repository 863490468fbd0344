"""The ``glmrun`` process ends without the interpreter's teardown (``runner.cli.main.entry``):
what it printed to a pipe, its records and its exit code are those of a normal exit."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import orjson
import pytest

from runner.cli import main as cli_main
from tests.support.configs import ENV, make_urls, output_of, write_config
from tests.support.records import read_records
from tests.support.runs import glmrun


def env() -> dict[str, str]:
    return {**os.environ, **ENV}


def test_a_run_prints_its_summary_to_a_pipe_and_exits_0(tmp_path: Path) -> None:
    """stdout is a pipe (block-buffered): the summary is there, every record is written."""
    cfg = write_config(tmp_path, make_urls(5))
    proc = glmrun("run", str(cfg), cwd=tmp_path, env=env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("t: ok 5, errors 0 — 5/5 done\n"), proc.stdout
    assert len(read_records(output_of(tmp_path))) == 5


def test_error_records_exit_1_and_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [*make_urls(2), "ftp://example.test/x.jpg"])
    proc = glmrun("run", str(cfg), cwd=tmp_path, env=env())
    assert proc.returncode == 1 and "invalid_input ×1: line 3" in proc.stdout, proc.stdout
    proc = glmrun("run", str(tmp_path / "missing.yaml"), cwd=tmp_path, env=env())
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"glmrun: {tmp_path / 'missing.yaml'}: config file not found"
    ]


def test_json_logs_reach_a_pipe_whole(tmp_path: Path) -> None:
    """--log-format json: the last event (run finished) is on stderr, complete."""
    cfg = write_config(tmp_path, make_urls(3))
    proc = glmrun("run", "--log-format", "json", str(cfg), cwd=tmp_path, env=env())
    assert proc.returncode == 0
    assert (
        proc.stderr.rstrip("\n").splitlines()[-1].endswith('"event":"run finished","exit_code":0}')
    ), proc.stderr


def test_an_export_to_a_pipe_is_flushed_before_the_exit(tmp_path: Path) -> None:
    """``export`` streams into stdout's binary buffer without flushing it: the exit does, so
    a pipe (block-buffered) gets every record."""
    cfg = write_config(tmp_path, make_urls(4))
    assert glmrun("run", str(cfg), cwd=tmp_path, env=env()).returncode == 0
    proc = glmrun("export", str(cfg), cwd=tmp_path, env=env())
    assert proc.returncode == 0, proc.stderr
    assert sorted(orjson.loads(line)["url"] for line in proc.stdout.splitlines()) == make_urls(4)


class Exited(Exception):
    pass


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), ("a message", 1)], ids=str)
def test_entry_flushes_the_streams_and_keeps_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, code: object, status: int
) -> None:
    """In-process, with os._exit caught: the logs and what was printed are flushed first,
    and the status is the one ``sys.exit`` would give (a message: printed, 1)."""
    out, err = io.StringIO(), io.StringIO()
    flushed: list[str] = []
    monkeypatch.setattr(out, "flush", lambda: flushed.append("out"))
    monkeypatch.setattr(err, "flush", lambda: flushed.append("err"))
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)

    def fake_main() -> None:
        print("summary")
        raise SystemExit(code)

    def fake_exit(n: int) -> None:
        raise Exited(n)

    monkeypatch.setattr(cli_main, "main", fake_main)
    monkeypatch.setattr(cli_main.logging, "shutdown", lambda: flushed.append("logs"))
    monkeypatch.setattr(cli_main.os, "_exit", fake_exit)
    with pytest.raises(Exited) as exited:
        cli_main.entry()
    assert exited.value.args == (status,)
    assert flushed == ["logs", "out", "err"] and out.getvalue() == "summary\n"
    assert err.getvalue() == ("a message\n" if isinstance(code, str) else "")


def test_entry_exits_the_usual_way_while_a_thread_would_be_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-daemon thread still running: no os._exit (the usual exit waits for it)."""
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()

    def fake_main() -> None:
        raise SystemExit(4)

    def fake_exit(n: int) -> None:
        raise Exited(n)

    monkeypatch.setattr(cli_main, "main", fake_main)
    monkeypatch.setattr(cli_main.os, "_exit", fake_exit)
    try:
        with pytest.raises(SystemExit) as exited:
            cli_main.entry()
        assert exited.value.code == 4
    finally:
        release.set()
        worker.join()


def test_glmrun_alone_prints_its_usage_not_a_traceback(tmp_path: Path) -> None:
    """``glmrun`` with no word at all (the first thing a newcomer types) raised a ValueError
    from the look for ``--log-format json`` in an empty command line; it prints the usage and
    the commands, exit 2, like any other usage error."""
    proc = glmrun(cwd=tmp_path, env=env())
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("Usage: ") and "Commands:" in proc.stderr
