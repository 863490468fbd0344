"""SIGINT / SIGTERM against a real run: grace period, exit code, a valid file, nothing lost."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from runner.simulator import expected_content
from tests.support.records import latest, read_records

from .procs import (
    SimProcess,
    env,
    run,
    simulator,
    start_run,
    wait_for_lines,
    write_batch_job,
    write_job,
)


def _urls(tag: str, n: int = 300) -> list[str]:
    return [f"https://img.example.com/{tag}/{i}.jpg" for i in range(n)]


def _hang(urls: list[str]) -> str:
    """A --set knob: each of ``urls`` hangs on its first request only."""
    return "url_faults=" + json.dumps({u: ["hang"] for u in urls})


def _wait_for_requests(sim: SimProcess, urls: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not set(urls) <= set(sim.stats()["per_url"]):
        assert time.monotonic() < deadline, "the run never sent those URLs"
        time.sleep(0.01)


def test_sigint_lets_in_flight_finish_writes_everything_and_exits_130(tmp_path: Path) -> None:
    """After SIGINT every request the simulator answered has its record, the summary is
    printed, the file ends with a newline, and the exit code is 130."""
    urls = _urls("int")
    with simulator("latency_mean_s=0.05") as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        out = tmp_path / "out" / "j.jsonl"
        proc = start_run(config)
        wait_for_lines(out, 40, proc)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
        assert proc.returncode == 130, stderr
        assert elapsed < 2 + 1  # grace_s = 2 in the test config
        assert "j: ok " in stdout and "interrupted by SIGINT" in stderr
        # what to expect, and how not to wait for it
        assert "grace period (a second signal stops at once) signal=SIGINT grace_s=2" in stderr
        records = read_records(out)
        assert (
            len(records) == sim.stats()["chat_requests"] < len(urls)
        )  # in-flight ones were written
        rerun = run(config)
        assert rerun.returncode == 0, rerun.stderr
        final = latest(read_records(out))
        assert set(final) == set(urls)
        assert all(r["content"] == expected_content(u) for u, r in final.items())
        assert sim.stats()["chat_requests"] == len(urls)


def test_sigterm_cancels_hung_requests_after_grace_and_exits_143(tmp_path: Path) -> None:
    """Requests that never answer are cancelled when grace_s runs out; exit 143 within grace
    plus shutdown, every line parses, and the rerun finishes the rest."""
    urls = _urls("term", 200)
    hung = urls[10:13]
    with simulator("latency_mean_s=0.02", _hang(hung)) as sim:
        config = write_job(
            tmp_path, sim.base_url, urls, run={"grace_s": 0.5}, api={"timeout_s": 30}
        )
        out = tmp_path / "out" / "j.jsonl"
        proc = start_run(config)
        _wait_for_requests(sim, hung)
        wait_for_lines(out, 10, proc)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
        assert proc.returncode == 143, stderr
        assert 0.4 < elapsed < 0.5 + 1.5, elapsed
        assert "grace period over" in stderr
        read_records(out)
        assert not set(hung) & set(latest(read_records(out)))
        rerun = run(config)
        assert rerun.returncode == 0, rerun.stderr
        final = latest(read_records(out))
        assert set(final) == set(urls) and all(r["status"] == "ok" for r in final.values())
        # re-requests: only what hung (in flight) when the signal came
        assert 3 <= sim.stats()["chat_requests"] - len(urls) <= 8


def test_second_signal_exits_at_once_with_a_valid_file(tmp_path: Path) -> None:
    """A second signal during the grace period exits immediately; the file still parses."""
    urls = _urls("twice", 200)
    hung = urls[10:13]
    with simulator("latency_mean_s=0.02", _hang(hung)) as sim:
        config = write_job(tmp_path, sim.base_url, urls, run={"grace_s": 10}, api={"timeout_s": 30})
        out = tmp_path / "out" / "j.jsonl"
        proc = start_run(config)
        _wait_for_requests(sim, hung)
        wait_for_lines(out, 10, proc)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
        assert time.monotonic() - t0 < 1.0
        assert proc.returncode == 143, stderr
        # what the second signal costs: the hung requests' answers, sent again next time
        assert (
            "glmrun: second SIGINT: exiting at once; answers to requests still in flight are "
            "lost (the next run sends those requests again)\n"
        ) in stderr
        read_records(out)
        rerun = run(config)
        assert rerun.returncode == 0, rerun.stderr
        assert set(latest(read_records(out))) == set(urls)


def _read_pty(fd: int, until: Callable[[bytes], bool], timeout: float = 20) -> bytes:
    """What the terminal got so far, read until ``until(data)`` or the child closed it."""
    data = b""
    deadline = time.monotonic() + timeout
    while not until(data) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            data += chunk
    return data


def _controlled_by_the_pty() -> None:
    """In the child: the pty (its stdin) becomes its controlling terminal, and SIGHUP has its
    default action, as under a login shell, whatever the test runner inherited (a suite run
    under ``nohup`` ignores SIGHUP, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _start_on_a_pty(
    config: Path, *, controlling: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """``glmrun run CONFIG`` on an 80 x 30 pty in a session of its own (with ``controlling``,
    the pty is its controlling terminal: closing the master hangs it up, SIGHUP); the process
    and the master's fd."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(config)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env(TERM="xterm", COLUMNS="80", LINES="30"),
        cwd=config.parent,
        start_new_session=True,
        preexec_fn=_controlled_by_the_pty if controlling else None,
    )
    os.close(slave)
    return proc, master


def test_second_signal_on_a_terminal_erases_the_live_frame_and_shows_the_cursor(
    tmp_path: Path,
) -> None:
    """At a terminal, the second Ctrl-C used to leave the live frame on screen with the
    notice glued onto the terminal's ^C echo, and the shell with no cursor (rich hides it
    while the display runs); now the frame's line is erased first and the cursor shown."""
    urls = _urls("tty", 200)
    hung = urls[10:13]
    with simulator("latency_mean_s=0.02", _hang(hung)) as sim:
        config = write_job(tmp_path, sim.base_url, urls, run={"grace_s": 10}, api={"timeout_s": 30})
        proc, master = _start_on_a_pty(config)
        try:
            _wait_for_requests(sim, hung)
            wait_for_lines(tmp_path / "out" / "j.jsonl", 10, proc)
            frame = _read_pty(master, lambda d: b"\x1b[?25l" in d and b"/200" in d)
            assert b"/200" in frame, frame  # the live display is up, its cursor hidden
            proc.send_signal(signal.SIGINT)
            _read_pty(master, lambda d: b"stopping: no new requests" in d)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 130
            tail = _read_pty(master, lambda d: False, timeout=1)
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
    before, _, _ = tail.partition(b"glmrun: second SIGINT")
    assert b"second SIGINT" in tail, tail
    # the frame's line erased (the ^C echo with it), the cursor shown, then the notice
    assert before.endswith(b"\r\x1b[2K\x1b[?25h"), tail


def test_sigint_while_the_api_accepts_but_never_answers_exits_130_quickly(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: SIGINT ends the run within the
    grace period, with exit 130, no traceback and no record."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # never accept(): connections complete in the backlog, nothing answers
        port = server.getsockname()[1]
        config = write_job(
            tmp_path,
            f"http://127.0.0.1:{port}/api/paas/v4",
            _urls("silent", 20),
            run={"grace_s": 0.5},
            api={"timeout_s": 30},
        )
        proc = start_run(config)
        time.sleep(1.0)
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 130, stderr
        assert time.monotonic() - t0 < 0.5 + 1.0
        assert "Traceback" not in stderr
        out = tmp_path / "out" / "j.jsonl"
        assert not out.exists() or read_records(out) == []


def test_sigint_while_planning_a_big_resume_exits_within_a_second(tmp_path: Path) -> None:
    """Reading a 600,000-line input and its output takes seconds; a signal then still ends
    the run at once (exit 130, nothing sent, no summary) instead of after the planning."""
    n = 600_000
    urls = [f"https://img.example.com/plan/{i:07d}.jpg" for i in range(n)]
    config = write_job(tmp_path, "simulator", urls)  # the embedded one: no reachability probe
    out = tmp_path / "out" / "j.jsonl"
    out.parent.mkdir()
    out.write_text("".join(f'{{"url":"{u}","status":"ok"}}\n' for u in urls[: n - 10]))
    proc = start_run(config, "--log-format", "json")
    assert proc.stderr is not None
    assert "run started" in proc.stderr.readline()
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - t0 < 1.0
    assert "stopped while planning" in stderr
    assert stdout == ""  # no summary of a job never started ('urls.txt has no items')


def test_sigint_while_batches_run_says_they_keep_running_and_how_to_stop_them(
    tmp_path: Path,
) -> None:
    """Ctrl-C while polling a batch: exit 130, the batch is neither cancelled nor resubmitted,
    and the last line says it keeps running (and billing), with the two ways on; the rerun
    collects it and submits the chunk that waited, each once."""
    urls = _urls("batchsig", 20)
    with simulator("batch_in_progress_s=1.5") as sim:
        config = write_batch_job(
            tmp_path, sim.base_url, urls, max_requests_per_file=10, max_queued=10
        )
        proc = start_run(config)
        deadline = time.monotonic() + 20
        while sim.stats()["batches_created"] < 1:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 130, stderr
        assert (
            "stopping: no new requests; in-flight ones get the grace period (a second "
            "signal stops at once)" in stderr
        )  # what Ctrl-C again does
        assert stderr.splitlines()[-1] == (
            "glmrun: interrupted by SIGINT; results so far are saved; j: 1 batch still "
            "running, 1 chunk (10 lines) not submitted yet. Batches keep running (and are "
            "billed) after glmrun exits: run the same command again to collect them, or "
            "`glmrun batches cancel config.yaml` to cancel them"
        )
        again = run(config)
        assert again.returncode == 0, again.stderr
        stats = sim.stats()
    assert stats["batches_created"] == 2 and stats["batches_cancelled"] == 0
    assert sorted(stats["batch_paid"].values()) == [1] * 20
    assert len(latest(read_records(tmp_path / "out" / "j.jsonl"))) == 20


def test_second_signal_notice_is_json_with_json_logs(tmp_path: Path) -> None:
    """--log-format json (cron appends stderr to a .jsonl file): the second signal's notice,
    written from the signal handler, is a JSON event too, so every stderr line parses."""
    urls = _urls("twicejson", 50)
    hung = urls[:3]
    with simulator("latency_mean_s=0.02", _hang(hung)) as sim:
        config = write_job(tmp_path, sim.base_url, urls, run={"grace_s": 10}, api={"timeout_s": 30})
        proc = start_run(config, "--log-format", "json")
        _wait_for_requests(sim, hung)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 143, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    assert events[-1]["event"] == "second signal: exiting at once", stderr
    assert events[-1]["signal"] == "SIGTERM" and events[-1]["exit_code"] == 143
    assert all({"ts", "level", "event"} <= set(e) for e in events)


def test_a_terminal_that_hangs_up_stops_the_run_as_sigterm_does(tmp_path: Path) -> None:
    """An ssh connection that drops hangs up the run's terminal: the kernel sends SIGHUP and
    every later write to the terminal fails. Left to its default, SIGHUP killed the run with
    8 requests in flight, answered and billed but never recorded, and the next run paid for
    them again; now they are written, the run ends 129, and the rerun sends only the rest."""
    urls = _urls("hup", 200)
    out = tmp_path / "out" / "j.jsonl"
    with simulator("latency_mean_s=0.2") as sim:
        config = write_job(
            tmp_path, sim.base_url, urls, limits={"concurrency": 8}, run={"grace_s": 5}
        )
        proc, master = _start_on_a_pty(config, controlling=True)
        try:
            wait_for_lines(out, 16, proc)
            _read_pty(master, lambda d: b"/200" in d)  # the live display is up
        finally:
            os.close(master)  # the terminal hangs up
        try:
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 129
        records = read_records(out)
        assert len(records) == sim.stats()["chat_requests"] < len(urls)  # in flight: written
        rerun = run(config)
        assert rerun.returncode == 0, rerun.stderr
        assert set(latest(read_records(out))) == set(urls)
        assert sim.stats()["chat_requests"] == len(urls)  # nothing paid twice


def test_a_run_under_nohup_keeps_going_through_a_hangup(tmp_path: Path) -> None:
    """``nohup glmrun ...`` asks for the run to outlive its terminal: SIGHUP stays ignored."""
    urls = _urls("nohup", 60)
    out = tmp_path / "out" / "j.jsonl"
    with simulator("latency_mean_s=0.05") as sim:
        config = write_job(tmp_path, sim.base_url, urls, limits={"concurrency": 4})
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=config.parent,
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
        )
        wait_for_lines(out, 10, proc)
        proc.send_signal(signal.SIGHUP)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "interrupted" not in stderr
        assert set(latest(read_records(out))) == set(urls)
        assert sim.stats()["chat_requests"] == len(urls)


def test_a_run_stopped_by_a_signal_ends_its_json_log_with_a_warning(tmp_path: Path) -> None:
    """``systemctl stop`` sends SIGTERM: the run did what it was told, so its JSON log ends with
    event ``interrupted`` at level warning (an alert on ``level: error`` fired at every stop
    and every deploy), still with the exit code."""
    urls = _urls("stopjson", 300)
    with simulator("latency_mean_s=0.05") as sim:
        config = write_job(tmp_path, sim.base_url, urls)
        proc = start_run(config, "--log-format", "json")
        wait_for_lines(tmp_path / "out" / "j.jsonl", 20, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 143, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    last = events[-1]
    assert (last["event"], last["level"], last["exit_code"]) == ("interrupted", "warning", 143)
    assert last["message"].startswith("interrupted by SIGTERM; results so far are saved")
    assert not [e for e in events if e["level"] == "error"], stderr
