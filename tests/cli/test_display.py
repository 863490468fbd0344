"""What a person sees: the live display fits the terminal, and the default, -q, -v and JSON
outputs of a run, a no-op rerun, a failing run and a fatal error, line by line."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from runner import logs
from runner.app.display import Display, LiveView, batch_event_line, fit_line, progress_text
from runner.cli import common
from runner.core.stats import JobStats
from runner.errors import ConfigError
from runner.logs import FIELD_INDENT, TextFormatter, console_handler, terminal_lines
from tests.cli.test_cli import invoke
from tests.support.configs import make_urls, write_config


def busy_stats(name: str = "describe") -> JobStats:
    s = JobStats(
        name,
        total=2151,
        ok=800,
        errors=13,
        skipped=849,
        requests=900,
        retries=20,
        in_flight=16,
        concurrency=16,
        prompt_tokens=123456,
        completion_tokens=3456,
    )
    s.error_codes = {"1301": 10, "429": 3}
    s.usage_by_route = {"realtime": [123456, 3456]}
    s.started -= 10
    return s


class Price:
    input_per_1k = 0.004
    output_per_1k = 0.004
    batch_discount = 0.5


BATCHES = [
    {
        "batch_id": "batch_1234567890abcdef",
        "state": "in_progress",
        "completed": 500,
        "total": 1000,
        "polled_at": 1000.0,
    },
    {"batch_id": None, "state": "built", "chunk": 2, "lines": 5000},
]


@pytest.mark.parametrize("width", [40, 60, 80, 120], ids=lambda w: f"{w}cols")
@pytest.mark.parametrize("name", ["describe", "a-very-long-job-name-that-goes-on-and-on-forever"])
def test_live_display_never_wider_than_the_terminal(width: int, name: str) -> None:
    """Rendered by rich at N columns, every line of the display fits in N (fields are dropped,
    nothing wraps), and the overall done/total with earlier runs is kept while it fits."""
    view = LiveView(busy_stats(name), Price(), "CNY", batches=lambda: BATCHES, clock=lambda: 1003.0)
    console = Console(record=True, width=width, force_terminal=True, color_system=None)
    console.print(view)
    lines = console.export_text().splitlines()
    assert len(lines) == 3  # the job, then the two open batches; no wrapped continuation
    # two columns left for the "^C" a terminal echoes there: a wrapped echo left a stale frame
    assert all(len(line) <= width - 2 for line in lines), lines
    if name == "describe":
        assert "1,662/3,000" in lines[0] and "/s" in lines[0]
        assert "batch_1234567890abcdef in_progress" in lines[1]
    if name == "describe" and width >= 80:
        assert "eta " in lines[0] and "err 13" in lines[0] and "CNY" in lines[0]
        assert "polled 3s ago" in lines[1]
        assert lines[2] == "  chunk 2 (5,000 requests) not submitted yet"  # which chunk
    if name == "describe" and width >= 120:
        assert "(849 done before)" in lines[0] and "█" in lines[0]
        assert "in flight 16/16 " in lines[0]  # requests out, out of the limit: one field


def test_an_auto_run_keeps_its_moving_limit_on_a_narrow_line() -> None:
    """At 80 columns a priced run with a fixed limit drops ``in flight N/M`` first; with
    ``concurrency: auto`` the limit moves with the account, so the bar and the earlier runs'
    count go before it (the total still counts them)."""
    fixed, auto = busy_stats(), busy_stats()
    auto.note_limit(24, now=0.0)
    auto.in_flight = 22
    lines = {}
    for name, s in (("fixed", fixed), ("auto", auto)):
        console = Console(record=True, width=80, force_terminal=True, color_system=None)
        console.print(LiveView(s, Price(), "CNY"))
        lines[name] = console.export_text().splitlines()[0]
    assert "in flight" not in lines["fixed"] and "(849 done before)" in lines["fixed"]
    assert "in flight 22/24" in lines["auto"] and "CNY" in lines["auto"], lines["auto"]
    assert "1,662/3,000" in lines["auto"] and "err 13" in lines["auto"]
    assert len(lines["auto"]) <= 78


async def test_a_second_signal_erases_every_line_of_the_live_frame() -> None:
    """The codes a second signal writes erase each line of the frame drawn last (the job and
    its open batches: three here) and show the cursor; nothing once the display is down."""
    out = io.StringIO()
    con = Console(file=out, width=80, force_terminal=True, color_system=None)
    display = Display(busy_stats(), "live", batches=lambda: BATCHES, con=con)
    async with display:
        display._live.refresh()  # type: ignore[union-attr]
        codes = display.frame_gone()
    assert codes == "\r\x1b[2K" + "\x1b[1A\x1b[2K" * 2 + "\x1b[?25h"
    assert display.frame_gone() == ""


def test_eta_is_blank_until_there_is_a_rate() -> None:
    """Nothing done yet: no 'eta 00:00', just no ETA."""
    s = JobStats("describe", total=100)
    assert "eta" not in fit_line_for(s, 120)


def test_a_batch_job_shows_no_rate_or_eta() -> None:
    """A batch job's records come a batch at a time: no '0.1/s eta 5h37m' while its batches
    are nearly done; the per-batch lines carry the progress."""
    s = JobStats("describe", total=2000, skipped=1, route="batch")
    s.started -= 10
    s.ok = 1
    for line in (fit_line_for(s, 120), progress_text(s)):
        assert "/s" not in line and "eta" not in line, line
        assert "2/2,001" in line


def fit_line_for(s: JobStats, width: int) -> str:
    return LiveView(s).lines(width)[0]


def test_fit_line_drops_the_least_useful_fields_first() -> None:
    """Rank 0 fields stay; higher ranks go first; the bar takes what room is left."""
    parts = [(0, "job"), (5, ""), (0, "1/2"), (1, "rate"), (9, "extra")]
    assert fit_line(parts, 12) == "job 1/2 rate"
    assert fit_line(parts, 30).startswith("job {BAR:")


@contextlib.contextmanager
def logging_to(console: Console, name: str) -> Iterator[logging.Logger]:
    """A logger whose events go through the terminal handler to ``console``."""
    handler = console_handler(console)
    log = logging.getLogger(name)
    log.addHandler(handler)
    try:
        yield log
    finally:
        log.removeHandler(handler)


def test_log_lines_print_above_the_live_display_whole() -> None:
    """A warning logged while the display is up is printed as a whole line above it."""
    console = Console(record=True, width=60, force_terminal=True, color_system=None)
    with logging_to(console, "runner.test_display") as log:

        async def go() -> None:
            async with Display(busy_stats(), "live", con=console):
                log.warning("stopping: SIGINT; in-flight requests get 10s")

        import asyncio

        asyncio.run(go())
    text = console.export_text()
    # whole, above the display; wider than the 60 columns, so wrapped at a space, indented
    assert "glmrun: warning: stopping: SIGINT; in-flight requests get\n    10s\n" in text
    assert "in flight 16/16glmrun" not in text


def warning_record(msg: str, **fields: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": msg, "levelno": logging.WARNING})
    record.levelname = "WARNING"
    record.__dict__.update(fields)
    return record


def test_a_warning_wider_than_the_terminal_puts_its_fields_below_it_none_cut() -> None:
    record = warning_record(
        "batch call failed",
        job="describe",
        code=500,
        error="control-plane fault (simulated)",
        retry_in_s=2.5,
        file="/home/someone/projects/captions/out/describe.jsonl",
    )
    one_line = TextFormatter().format(record)
    assert len(one_line) > 80
    lines = terminal_lines(record, 80)
    assert lines[0] == "glmrun: warning: batch call failed"
    assert all(line.startswith(FIELD_INDENT) and len(line) <= 80 for line in lines[1:])
    # every field whole on one line, in order, nothing lost or added
    assert " ".join(line.strip() for line in lines) == one_line
    assert len(lines) == 3  # packed: as many fields to a line as fit


@pytest.mark.parametrize("width", range(30, 121, 7))
def test_no_laid_out_line_is_wider_than_the_terminal(width: int) -> None:
    record = warning_record(
        "batch lines did not run",
        job="describe",
        batch_id="batch_1796043139326584581",
        status="expired",
        lines=1200,
        on_failure="realtime",
        reason="no result in the expired batch",
    )
    fields = [
        "job=describe",
        "batch_id=batch_1796043139326584581",
        "status=expired",
        "lines=1200",
        "on_failure=realtime",
        'reason="no result in the expired batch"',
    ]
    lines = terminal_lines(record, width)
    assert all(len(line) <= width or " " not in line.strip() for line in lines)  # or one word
    assert "".join("".join(lines).split()) == "".join(TextFormatter().format(record).split())
    for line in lines[1:]:
        assert line.startswith(FIELD_INDENT)
        if not any(field in line for field in fields):  # a piece of a field: it is too wide
            assert any(len(field) > width - len(FIELD_INDENT) for field in fields)


def test_a_warning_that_fits_stays_one_line_and_a_field_too_wide_is_wrapped_alone() -> None:
    short = warning_record("repaired a torn last line", bytes_removed=12)
    assert terminal_lines(short, 80) == [TextFormatter().format(short)]
    wide = warning_record(
        "api not reachable; trying again",
        attempt=1,
        why="Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed]",
        delay_s=1.0,
    )
    assert terminal_lines(wide, 60) == [
        "glmrun: warning: api not reachable; trying again",
        FIELD_INDENT + "attempt=1",
        FIELD_INDENT + 'why="Cannot connect to host 127.0.0.1:9 ssl:default',
        FIELD_INDENT * 2 + '[Connect call failed]"',
        FIELD_INDENT + "delay_s=1.0",
    ]


def test_the_terminal_handler_lays_a_long_warning_out_for_its_width() -> None:
    console = Console(record=True, width=60, force_terminal=True, color_system=None)
    with logging_to(console, "runner.test_display.wide") as log:
        log.warning(
            "api not reachable; trying again",
            extra={
                "attempt": 3,
                "delay_s": 4.0,
                "why": "Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed]",
            },
        )
    text = console.export_text()
    assert text.splitlines()[0] == "glmrun: warning: api not reachable; trying again"
    assert all(len(line) <= 60 for line in text.splitlines()[:2])
    assert "\n    why=" in text


def test_progress_line_without_a_tty_is_plain() -> None:
    """The cron progress line: every field, no bar, no escape codes."""
    line = progress_text(busy_stats(), Price(), "CNY")
    assert line.startswith("describe: 1,662/3,000 (849 done before) 55% ")
    assert "\x1b" not in line and "█" not in line and "err 13 (1301×10 429×3)" in line


def test_the_percentage_reaches_100_only_when_every_item_is_done() -> None:
    """899 of 900 done (the last one waiting for its retry) is 99%, not a rounded 100%."""
    stats = JobStats("describe", total=900, ok=899)
    assert " 99% " in progress_text(stats)
    stats.ok = 900
    assert " 100% " in progress_text(stats)


def test_batch_events_become_one_line_each() -> None:
    """run --no-wait says per batch what it submitted or collected, not the chunk state."""
    assert (
        batch_event_line("batch submitted", {"job": "d", "batch_id": "b1", "lines": 1000})
        == "d: submitted b1 (1,000 lines)"
    )
    assert batch_event_line("batch submitted", {"job": "d", "batch_id": "b2", "lines": 1}) == (
        "d: submitted b2 (1 line)"  # a rebatch of one line said "(1 lines)"
    )
    line = batch_event_line(
        "batch collected",
        {"job": "d", "batch_id": "b1", "status": "completed", "ok": 990, "failed": 10},
    )
    assert line == "d: collected b1 (completed): 990 ok, 10 permanent errors"
    assert batch_event_line("batch chunk", {"job": "d"}) is None


# --- a run's outputs, line by line (CliRunner: no TTY, so progress lines, not the live view) ---

TIME = r"\d+\.\ds, [\d,]+\.\d items/s"


def test_default_output_is_the_summary_only(tmp_path: Path) -> None:
    """Default verbosity: nothing on stderr (no INFO events), a short summary on stdout."""
    cfg = write_config(tmp_path, make_urls(20))
    result = invoke(str(cfg))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "t: ok 20, errors 0 — 20/20 done"
    assert re.fullmatch(rf"  requests 20 · via realtime · {TIME}", lines[1]), lines[1]
    assert lines[2] == "  tokens 20,200 in / 400 out"
    assert len(lines) == 3


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    """-q: a clean run prints nothing at all."""
    cfg = write_config(tmp_path, make_urls(5))
    result = invoke(str(cfg), "-q")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_verbose_shows_the_info_events(tmp_path: Path) -> None:
    """-v: the run's story as INFO event lines on stderr, then the same summary on stdout."""
    cfg = write_config(tmp_path, make_urls(5))
    result = invoke(str(cfg), "-v")
    assert result.exit_code == 0
    events = [line.split(" ")[1] for line in result.stderr.splitlines()]
    assert events[0] == "run" and "plan" in events and "job" in events
    assert result.stderr.splitlines()[-1].startswith("glmrun: run finished exit_code=0")
    assert result.stdout.startswith("t: ok 5, errors 0 — 5/5 done\n")


def test_json_logs_keep_every_event(tmp_path: Path) -> None:
    """--log-format json: every stderr line is a JSON event, INFO included."""
    cfg = write_config(tmp_path, make_urls(5))
    result = invoke(str(cfg), "--log-format", "json")
    assert result.exit_code == 0
    names = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert names == ["run started", "plan", "job finished", "run finished"]
    finished = json.loads(result.stderr.splitlines()[2])
    assert finished["ok"] == 5 and finished["error_codes"] == {}


def test_noop_rerun_is_one_line_per_job(tmp_path: Path) -> None:
    """A rerun with nothing to do: one line, naming the permanent errors from before; exit 0."""
    urls = make_urls(6)
    cfg = write_config(tmp_path, urls, simulator={"url_faults": {urls[2]: ["1301"]}})
    assert invoke(str(cfg)).exit_code == 1
    again = invoke(str(cfg))
    assert again.exit_code == 0
    assert again.stdout == (  # and where to see them
        "t: nothing to do — 6 done (1 with permanent errors: glmrun status --errors)\n"
    )
    assert again.stderr == ""
    assert invoke(str(cfg), "-q").stdout == ""


def test_an_input_without_items_says_so(tmp_path: Path) -> None:
    """Blank lines and comments only: not '0 done' but what is wrong; a shard that owns none
    of the items keeps the plain line (the input has items, for other shards)."""
    cfg = write_config(tmp_path, input_bytes=b"\n# todo: add URLs\n  \n")
    result = invoke(str(cfg))
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "t: nothing to do — urls.txt has no items (blank and # lines are skipped)\n"
    )
    shard = invoke(str(cfg), "--shard", "1/2").stdout
    assert shard == "t shard 1/2: nothing to do — 0 done\n"  # named by its shard


def test_failing_run_lists_errors_by_code_with_urls(tmp_path: Path) -> None:
    """A run that writes error records: exit 1 and a summary naming each code's URLs."""
    urls = make_urls(8)
    faults = {urls[1]: ["1301"], urls[5]: ["1301"], urls[6]: ["1210"]}
    cfg = write_config(tmp_path, [*urls, "not a url"], simulator={"url_faults": faults})
    result = invoke(str(cfg))
    assert result.exit_code == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "t: ok 5, errors 4 (1 invalid line) — 9/9 done"
    assert lines[1] == f"  1301 (unsafe content) ×2: {urls[1]}, {urls[5]}"  # what 1301 is
    rest = {f"  1210 (invalid parameters) ×1: {urls[6]}", "  invalid_input ×1: line 9"}
    assert {lines[2], lines[3]} == rest
    assert lines[4].startswith("  requests 8 · via realtime")  # 5 ok + 3 errors, no retry
    assert len(lines) == 6
    quiet = invoke(str(cfg), "-q")  # nothing new now: the rerun is a no-op, and quiet
    assert (quiet.exit_code, quiet.stdout) == (0, "")


def test_the_summary_says_how_many_errors_the_next_run_retries(tmp_path: Path) -> None:
    """Errors whose attempts ran out on a transient failure are 'done' for this run only: the
    head line says the next run sends them again (it read '— 9/9 done', and a rerun then sent
    them); a permanent error and an invalid line are not counted there."""
    urls = make_urls(8)
    faults = {urls[1]: ["500"] * 5, urls[2]: ["429"] * 5, urls[5]: ["1301"]}
    cfg = write_config(tmp_path, [*urls, "not a url"], simulator={"url_faults": faults})
    result = invoke(str(cfg))
    assert result.exit_code == 1
    head = result.stdout.splitlines()[0]
    assert head == "t: ok 5, errors 4 (1 invalid line, 2 retried by the next run) — 9/9 done"
    rerun = invoke(str(cfg))
    assert "skipped 7 done before — 9/9 done" in rerun.stdout.splitlines()[0]  # sent the 2


def test_fatal_error_is_exactly_one_line(tmp_path: Path) -> None:
    """A missing input file: one line on stderr, nothing on stdout, at every verbosity but -v."""
    cfg = write_config(tmp_path, make_urls(3))
    (tmp_path / "urls.txt").unlink()
    for args in ((), ("-q",)):
        result = invoke(str(cfg), *args)
        assert result.exit_code != 0
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("glmrun: ") and "urls.txt" in line
    (line,) = invoke(str(cfg), "--log-format", "json").stderr.splitlines()[-1:]
    assert json.loads(line)["event"] == "error"


def test_api_stop_is_exactly_one_line(tmp_path: Path) -> None:
    """Arrears (1113) stop the run: exit 3 and one stderr line, no 'error: api stopped' event
    before it (that event is INFO, for machine logs)."""
    urls = make_urls(12)
    cfg = write_config(tmp_path, urls, simulator={"url_faults": {urls[5]: ["1113"]}})
    result = invoke(str(cfg))
    assert result.exit_code == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith("glmrun: the API refused the run (code 1113")
    events = invoke(str(cfg), "--log-format", "json").stderr.splitlines()
    assert any(json.loads(e)["event"] == "api stopped the run" for e in events)


def test_summary_stays_short_with_many_error_codes() -> None:
    """Five error codes: three listed with examples, the rest counted on the third line; the
    summary stays within six lines and cost has the currency's fixed decimals."""
    from runner.app.summary import summary_lines

    s = busy_stats()
    s.error_codes = {"1301": 5, "1210": 4, "500": 3, "1214": 2, "local_file": 1}
    s.error_examples = {
        code: [f"https://x/{code}/{i}.jpg" for i in range(3)] for code in s.error_codes
    }
    lines = summary_lines(s, price=Price(), currency="CNY")
    assert len(lines) <= 6
    assert (
        lines[1] == "  1301 (unsafe content) ×5: https://x/1301/0.jpg, https://x/1301/1.jpg, "
        "https://x/1301/2.jpg, … 2 more"
    )
    assert lines[3].endswith("; 3 more in 2 other codes: glmrun status --errors")
    del s.error_codes["local_file"]  # one code past three is named, not "1 other codes"
    lines = summary_lines(s, price=Price(), currency="CNY")
    assert lines[3].endswith("; 2 more with code 1214: glmrun status --errors")
    assert lines[-1] == "  tokens 123,456 in / 3,456 out · 0.5076 CNY"  # 126,912 x 0.004 / 1k


def test_ctrl_c_before_the_run_starts_is_exit_130_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the command still imports or loads its config: one line and exit 130,
    not click's 'Aborted!' with exit 1 (which cron would take for new error records)."""
    import runner.cli.run

    def interrupted(path: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.cli.run, "load", interrupted)
    cfg = write_config(tmp_path, make_urls(2))
    result = invoke(str(cfg))
    assert result.exit_code == 130
    assert result.stderr == (
        "glmrun: interrupted by SIGINT; results so far are saved, run again to resume\n"
    )


def test_status_names_a_chunk_that_has_no_batch_yet() -> None:
    """``glmrun status``: a built or uploaded chunk is named by its number and size, a
    submitted one by its batch id."""
    from runner.app.status import batch_row

    built = {"batch_id": None, "state": "uploaded", "chunk": 3, "lines": 5000}
    assert batch_row(built) == "chunk 3 (5,000 requests), no batch yet: uploaded"
    running = {"batch_id": "batch_1", "state": "in_progress", "chunk": 1, "lines": 10}
    running |= {"completed": 4, "total": 10, "failed": 1}
    assert batch_row(running) == "batch batch_1: in_progress, 4/10 done, 1 failed"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_summary_lines_wrap_at_spaces_on_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 60 columns the summary breaks between words, continuation indented, instead of the
    terminal cutting '74.9 it|ems/s'; a line of ' · ' parts breaks between them where it can,
    keeping '74.9 items/s' (and 'mostly 24') whole; piped, every line stays whole."""
    import os

    from runner.app.summary import for_terminal

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((60, 24)))
    lines = [
        "describe-products: ok 1,999, errors 2 (1 invalid line) — 2,001/2,001 done",
        "  requests 2,045, retries 45 · via realtime · 26.7s, 74.9 items/s",
        "  tokens 1,000 in / 20 out",
    ]
    assert for_terminal(lines, Tty()) == [
        "describe-products: ok 1,999, errors 2 (1 invalid line) —",
        "    2,001/2,001 done",
        "  requests 2,045, retries 45 · via realtime ·",
        "      26.7s, 74.9 items/s",
        "  tokens 1,000 in / 20 out",
    ]
    assert for_terminal(lines, io.StringIO()) == lines
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((80, 24)))
    auto = (
        "  requests 20,539, retries 539 (355 throttled) · concurrency auto 20–26, mostly 24"
        " · via realtime · 33.4s, 599.2 items/s"
    )
    assert for_terminal([auto], Tty()) == [
        "  requests 20,539, retries 539 (355 throttled) ·",
        "      concurrency auto 20–26, mostly 24 · via realtime · 33.4s, 599.2 items/s",
    ]


def test_a_count_of_more_examples_is_not_cut_after_its_ellipsis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'… 1 more' after a code's examples stays together at 80 columns: a line that ends in
    '…' and one that starts with '1 more' read as two unrelated things."""
    import os

    from runner.app.summary import for_terminal

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((80, 24)))
    line = (
        "  500 (server error) ×4: https://img.example.com/p/70.jpg, "
        "https://img.example.com/p/6563.jpg, https://img.example.com/p/9515.jpg, … 1 more"
    )
    assert for_terminal([line], Tty()) == [
        "  500 (server error) ×4: https://img.example.com/p/70.jpg,",
        "      https://img.example.com/p/6563.jpg, https://img.example.com/p/9515.jpg,",
        "      … 1 more",
    ]


def test_a_fatal_line_breaks_at_words_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last 'glmrun: ...' line (an interrupted batch run's runs to 300 characters) breaks
    between words at a terminal, continuation indented, instead of 'sti|ll running'; piped,
    it stays one line (cron logs, tests)."""
    import os

    from runner.cli.common import fail
    from runner.errors import GlmrunError

    message = "interrupted by SIGINT; describe: 3 batches still running." + " word" * 30
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((60, 24)))
    for stream, one_line in ((Tty(), False), (io.StringIO(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        with pytest.raises(SystemExit):
            fail(GlmrunError(message))
        lines = stream.getvalue().splitlines()
        if one_line:
            assert lines == [f"glmrun: {message}"]
        else:
            assert len(lines) > 2 and all(len(line) <= 60 for line in lines), lines
            assert all(line.startswith("    ") for line in lines[1:]), lines
            assert " ".join(line.strip() for line in lines) == f"glmrun: {message}"


def test_a_summary_line_broken_at_its_dots_leaves_no_dot_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen at 80 columns: the first piece fitted until its closing ' ·' was added, and the
    wrap put that dot on a line of its own."""
    from runner.app.summary import for_terminal

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((80, 24)))
    line = (
        "  requests 1,520, retries 20 (20 throttled) · concurrency auto 21–24, mostly 24 · "
        "via realtime · 19.9s, 75.4 items/s"
    )
    lines = for_terminal([line], Tty())
    assert all(line.strip() != "·" and len(line) <= 80 for line in lines), lines
    assert lines == [
        "  requests 1,520, retries 20 (20 throttled) ·",
        "      concurrency auto 21–24, mostly 24 · via realtime · 19.9s, 75.4 items/s",
    ]


def test_dry_run_and_summary_fit_a_narrow_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--dry-run's long estimate line and a run's summary, printed to a 44-column terminal:
    no line is wider than 44, and no word is cut."""
    import asyncio
    import os

    from runner.app.dry_run import dry_run
    from runner.app.orchestrate import RunOptions, run
    from runner.config import load_config
    from tests.support.configs import ENV

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((44, 24)))
    cfg = load_config(write_config(tmp_path, [*make_urls(5), "ftp://x/a.jpg"]), environ=ENV)
    out = Tty()
    dry_run(cfg.jobs[0], cfg, None, out)
    asyncio.run(run(cfg, RunOptions(display="quiet"), out=out))
    lines = out.getvalue().splitlines()
    assert len(lines) > 6 and all(len(line) <= 44 for line in lines), lines
    assert any(line.startswith("    ") for line in lines)  # a wrapped continuation


def test_status_fits_a_narrow_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """glmrun status (and --errors, whose lines carry the API's message) at 44 columns: no line
    wider, continuations indented."""
    import os

    urls = make_urls(4)
    cfg = write_config(tmp_path, urls, simulator={"url_faults": {urls[1]: ["1301"]}})
    assert invoke(str(cfg)).exit_code == 1
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((44, 24)))
    monkeypatch.setattr("runner.cli.status._stdout", Tty)  # CliRunner's stdout is no terminal
    lines = invoke("status", str(cfg), "--errors").stdout.splitlines()
    assert len(lines) > 4 and all(len(line) <= 44 for line in lines), lines
    assert any("System detected" in line for line in lines)


def test_status_counts_batches_and_chunks_not_yet_submitted_apart() -> None:
    """One batch on the account and two chunks built but not submitted (max_queued held them)
    are not "batches 3 open": the head line counts each as what it is."""
    from runner.app.status import JobStatus, format_status

    running = {"batch_id": "batch_1", "state": "in_progress", "chunk": 0, "lines": 10}
    built = [{"batch_id": None, "state": "built", "chunk": i, "lines": 10} for i in (1, 2)]
    done = {"batch_id": "batch_0", "state": "collected", "chunk": 9, "finished": True}
    s = JobStatus("describe", "out.jsonl", pending=30, batches=[running, *built, done])
    head = format_status(s).splitlines()[0]
    assert "; batches 1 open, 2 chunks not submitted / 4 tracked -> pending" in head
    one = JobStatus("describe", "out.jsonl", pending=10, batches=[built[0]])
    assert "; batches 0 open, 1 chunk not submitted / 1 tracked" in format_status(one)


ERROR_LINE = (
    "glmrun: cannot reach the API at http://127.0.0.1:9/api/paas/v4 after 3 tries: Cannot "
    "connect to host 127.0.0.1:9; nothing was sent or recorded; check api.base_url"
)


def test_the_last_error_line_is_wrapped_for_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((60, 24)))
    monkeypatch.setattr(logs.sys, "stderr", Tty())
    lines = logs.for_stderr(ERROR_LINE).splitlines()
    assert len(lines) == 4 and all(len(line) <= 60 for line in lines)
    assert lines[0].startswith("glmrun: cannot reach the API")
    assert all(line.startswith(FIELD_INDENT) for line in lines[1:])
    assert " ".join(line.strip() for line in lines) == ERROR_LINE
    monkeypatch.setattr(logs, "_JSON_LINES", True)  # a JSON event stays one line
    assert logs.for_stderr(ERROR_LINE) == ERROR_LINE
    monkeypatch.setattr(logs, "_JSON_LINES", False)
    monkeypatch.setattr(logs.sys, "stderr", io.StringIO())  # a file or a pipe: one line
    assert logs.for_stderr(ERROR_LINE) == ERROR_LINE


def test_the_cli_writes_its_last_error_line_laid_out_for_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common, "for_stderr", lambda line: "[laid out] " + line)
    with pytest.raises(SystemExit) as exit_:
        common.fail(ConfigError("c.yaml: jobs[0].input: file not found"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "[laid out] glmrun: c.yaml: jobs[0].input: file not found\n"


def test_error_examples_show_the_start_of_a_huge_line_or_url(tmp_path: Path) -> None:
    """A 20,000-character input line (invalid) and a 3,000-character URL (refused, 1301) are
    shown by their first 200 characters in the summary and in status --errors: whole, they
    filled the terminal; the records keep them whole."""
    huge = "https://img.example.test/" + "a" * 20_000 + ".jpg"
    signed = "https://img.example.test/s.jpg?sig=" + "b" * 3_000
    cfg = write_config(
        tmp_path, [*make_urls(2), huge, signed], simulator={"url_faults": {signed: ["1301"]}}
    )
    run = invoke(str(cfg))
    status = invoke("status", str(cfg), "--errors")
    assert run.exit_code == 1 and status.exit_code == 0, (run.stdout, status.stdout)
    assert "b" * 150 in run.stdout and "a" * 150 in status.stdout  # the summary says "line 3"
    for text in (run.stdout, status.stdout):
        assert "b" * 150 in text, text
        assert max(len(line) for line in text.splitlines()) < 300, text
    records = [json.loads(line) for line in (tmp_path / "out" / "t.jsonl").read_text().splitlines()]
    assert signed in {r["url"] for r in records}


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock list is Linux's")
def test_status_says_when_a_run_is_writing_the_output_now(tmp_path: Path) -> None:
    """status in a second pane during a run said '-> pending' with moving counts and nothing
    of the run; it names the run holding the output's lock (read from the kernel's list, the
    lock never taken), and says nothing once the run is gone."""
    from runner.io.store import RunLock

    cfg = write_config(tmp_path)
    assert invoke(str(cfg), "--limit", "3").exit_code == 0
    lock = RunLock(tmp_path / "out" / "t.jsonl")
    lock.acquire()
    try:
        during = invoke("status", str(cfg))
        as_json = json.loads(invoke("status", str(cfg), "--json").stdout)
    finally:
        lock.release()
    after = invoke("status", str(cfg))
    assert re.search(
        r"\n  a run is writing it now \(pid \d+, since [\d:]+, \d+s ago\)\n", during.stdout
    )
    assert during.exit_code == 75 and as_json["running"][0].startswith("pid ")
    assert "writing it now" not in after.stdout and after.exit_code == 75


def test_retryable_codes_that_ran_out_of_attempts_are_named_in_the_summary() -> None:
    """'500 ×396' alone sent a newcomer to the docs; the codes a run retries until max_attempts
    are named like the permanent ones."""
    from runner.app.summary import error_lines

    s = busy_stats()
    s.error_codes = {"500": 3, "1234": 2, "1230": 1}
    s.error_examples = {"500": ["https://x/1.jpg"], "1234": ["https://x/2.jpg"], "1230": ["u"]}
    lines = error_lines(s)
    assert lines[0].startswith("  500 (server error) ×3: https://x/1.jpg"), lines
    assert lines[1].startswith("  1234 (network error) ×2"), lines
    assert lines[2].startswith("  1230 (API processing error) ×1"), lines


def test_live_display_counts_the_open_batches_it_does_not_list() -> None:
    """A job with a dozen open chunks lists the first four and counts the rest by state on one
    line, instead of showing five and nothing to say there are more."""
    rows = [
        {"batch_id": f"batch_{i}", "state": "in_progress", "completed": 1, "total": 8000}
        for i in range(6)
    ] + [{"batch_id": None, "state": "built", "chunk": 6 + i, "lines": 8000} for i in range(7)]
    view = LiveView(busy_stats(), batches=lambda: rows, clock=lambda: 1003.0)
    lines = view.lines(78)
    assert len(lines) == 6, lines
    assert [line.split()[0] for line in lines[1:5]] == [f"batch_{i}" for i in range(4)]
    assert lines[5] == "  … 9 more (2 in_progress, 7 not submitted yet)"
    assert len(LiveView(busy_stats(), batches=lambda: rows[:5]).lines(78)) == 6  # five: all listed


def test_collected_line_says_errors_for_good_and_how_lines_went_again() -> None:
    """The collected line's count of error records is 'permanent errors', not 'failed' (the
    API's failed count, which batches list shows, also holds the lines sent again: '2 failed'
    there beside '18 failed' read as lines lost), and it names the path the rest took."""
    fields = {"job": "d", "batch_id": "b1", "status": "completed", "ok": 981, "failed": 2}
    line = batch_event_line("batch collected", {**fields, "resent": 17, "on_failure": "realtime"})
    assert (
        line == "d: collected b1 (completed): 981 ok, 2 permanent errors, 17 sent again by realtime"
    )
    line = batch_event_line(
        "batch collected", {**fields, "failed": 0, "resent": 17, "on_failure": "rebatch"}
    )
    assert line == "d: collected b1 (completed): 981 ok, 17 sent again in a new batch"


def test_the_plain_progress_line_of_a_batch_job_counts_its_batches() -> None:
    """Without a terminal (cron, a pipe) a batch job's progress line counts its open batches
    by state and the lines they have done; it said '0/100,000 0% 0.0000 CNY' for hours."""
    rows = [
        {"batch_id": f"b{i}", "state": "in_progress", "completed": 1000, "failed": 5, "total": 8000}
        for i in range(6)
    ] + [{"batch_id": None, "state": "built", "chunk": 6 + i, "lines": 8000} for i in range(7)]
    out = io.StringIO()
    Display(
        JobStats("big", route="batch", total=100_000), "lines", batches=lambda: rows, stream=out
    ).show()
    assert out.getvalue() == (
        "big: 0/100,000 0% · batches 6 in_progress, 7 not submitted yet; 6,030/48,000 lines done\n"
    )


def test_a_long_batch_line_wraps_at_spaces_above_the_live_display() -> None:
    """At 80 columns the 'found … from an earlier run' line wraps between words, the rest
    indented as a warning's is (rich folded it at column 0, mid-sentence)."""
    console = Console(record=True, width=80, force_terminal=True, color_system=None)
    display = Display(JobStats("describe", route="batch"), "live", con=console)
    line = (
        "describe: found 1 batch (10,000 lines) and 1 chunk not yet submitted (10,000 lines) "
        "from an earlier run; collecting and submitting them, not sending their lines again"
    )
    display.echo(line)
    shown = console.export_text().splitlines()
    assert shown[0].endswith("(10,000") and len(shown) == 3, shown
    assert all(row.startswith(FIELD_INDENT) for row in shown[1:]), shown
    assert " ".join(row.strip() for row in shown) == line


def test_the_stop_warning_leaves_room_for_the_terminals_caret_c() -> None:
    """At 80 columns the warning a Ctrl-C prints wraps two columns short, so with the '^C' the
    terminal echoes before it no row passes 80 (its first row was 79: 'perio' / 'd')."""
    console = Console(record=True, width=80, force_terminal=True, color_system=None)
    with logging_to(console, "runner.test_display") as log:
        log.warning(
            "stopping: no new requests; in-flight ones get the grace period "
            "(a second signal stops at once)",
            extra={"signal": "SIGINT", "grace_s": 10.0},
        )
    rows = console.export_text().splitlines()
    assert rows[0] == "glmrun: warning: stopping: no new requests; in-flight ones get the grace"
    assert all(len("^C" + row) <= 80 for row in rows), rows
