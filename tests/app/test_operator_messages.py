"""What an operator reads after the runs cron, batches and shards give: a ``--limit`` run's
summary against the whole job, a shard's lines named by their shard, a ``--no-wait`` run that
tells batches running from chunks waiting for queue room, and a signal that leaves batches
running on the API (and billed) saying so, with the two ways on."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from runner.app.orchestrate import RunOptions, run
from runner.app.summary import still_remote, summary_lines
from runner.config import load_config
from runner.core.batch_states import (
    Built,
    Chunk,
    Collected,
    Counts,
    Creating,
    Ended,
    Running,
    Uploaded,
    Uploading,
    left_behind,
)
from runner.core.shard import parse_shard
from runner.core.stats import JobStats
from runner.errors import ComeBackLater, Interrupted
from runner.io.batch_state import JobState, save_state, state_path
from tests.support.configs import ENV, make_urls, write_batch_config, write_config
from tests.support.runs import run_config


def _chunk(i: int, lines: int = 10) -> Chunk:
    return Chunk(i, f"chunk-{i:05d}.jsonl", f"chunk-{i:05d}.ids", lines, lines * 100)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], ""),
        ([Running(_chunk(0), "f0", "b0", "in_progress")], "1 batch still running"),
        (
            [
                Running(_chunk(0), "f0", "b0", "in_progress"),
                Built(_chunk(1, 1000)),
                Built(_chunk(2, 500)),
            ],
            "1 batch still running, 2 chunks (1,500 lines) not submitted yet",
        ),
        ([Built(_chunk(0, 1000))], "1 chunk (1,000 lines) not submitted yet"),
        (
            [
                Collected(Ended(_chunk(0), "f0", "b0", "completed")),
                Running(_chunk(1), "f", "b", "in_progress"),
            ],
            "1 batch still running",
        ),
        (
            [Uploaded(_chunk(0, 17408), "f0"), Uploading(_chunk(1, 800))],
            "2 chunks (18,208 lines) not submitted yet",
        ),
        ([Creating(_chunk(0), "f0")], "1 batch still running"),
    ],
    ids=[
        "nothing",
        "one-running",
        "running-and-queued",
        "queued-only",
        "collected-not-counted",
        "uploaded-is-no-batch",
        "create-sent-may-be-one",
    ],
)
def test_left_behind_counts_batches_apart_from_unsubmitted_chunks(
    states: list[object], expected: str
) -> None:
    """A chunk waiting for queue room, or uploaded but not yet created (Ctrl-C during the
    upload: it said '1 batch still running ... and billed'), is no batch: it is counted apart,
    with its lines; a chunk whose create was sent may be one, and counts as running."""
    assert left_behind(states) == expected  # type: ignore[arg-type]


async def test_limit_summary_counts_the_whole_job(tmp_path: Path) -> None:
    """``--limit 3`` on 10 URLs: 3/10 done and 7 left for the next run, not "3/3 done"."""
    cfg = write_config(tmp_path, make_urls(10))
    result, out = await run_config(cfg, ENV, limit=3)
    assert result.exit_code == 0
    assert (
        out.splitlines()[0] == "t: ok 3, errors 0 — 3/10 done, 7 left by --limit for the next run"
    )
    _, out = await run_config(cfg, ENV, limit=30)  # a limit above what is left: nothing more
    assert out.splitlines()[0] == "t: ok 7, errors 0, skipped 3 done before — 10/10 done"


async def test_summary_counts_ok_answers_that_are_not_what_was_asked(tmp_path: Path) -> None:
    """Answers cut at max_tokens, or not the JSON ``output.parse: json`` asks for, are ok
    records: the summary says how many and which, instead of 'ok 4, errors 0' alone."""
    urls = make_urls(4)
    answers = {urls[1]: {"content": '{"colour": "red"}'}, urls[3]: {"content": '{"n": 1}'}}
    cfg = write_config(
        tmp_path,
        urls,
        simulator={
            "url_faults": {urls[0]: ["length"], urls[2]: ["length"]},
            "url_answers": answers,
        },
        job={
            "output": {
                "path": "out/t.jsonl",
                "parse": "json",
                "schema": {"type": "object", "required": ["colour"]},
            }
        },
    )
    result, out = await run_config(cfg, ENV)
    assert result.exit_code == 0
    assert out.splitlines()[:4] == [
        "t: ok 4, errors 0 — 4/4 done",
        f"  ok but cut at max_tokens (truncated) ×2: {urls[0]}, {urls[2]}",
        f"  ok but not valid JSON (parse_error) ×2: {urls[0]}, {urls[2]}",
        f"  ok but not the schema (schema_errors) ×1: {urls[3]}",
    ]


async def test_limit_summary_of_a_counted_batch_run(tmp_path: Path) -> None:
    """The counted route (a batch job) says the same: 5/12 done, 7 left by --limit."""
    cfg = write_batch_config(tmp_path, make_urls(12))
    _, out = await run_config(cfg, ENV, limit=5)
    assert (
        out.splitlines()[0] == "j: ok 5, errors 0 — 5/12 done, 7 left by --limit for the next run"
    )


async def test_shard_summaries_name_their_shard(tmp_path: Path) -> None:
    """Four shards' summaries in one log (xargs, Slurm) are told apart by their shard."""
    cfg = write_config(tmp_path, make_urls(12))
    config = load_config(cfg, environ=ENV)
    for i in range(2):
        sharded = config.sharded(parse_shard(f"{i}/2"))
        await run(sharded, RunOptions(tty=False), out=(out := _Lines()))
        assert out.text.startswith(f"t shard {i}/2: ok "), out.text
        await run(sharded, RunOptions(tty=False), out=(again := _Lines()))
        assert again.text.startswith(f"t shard {i}/2: nothing to do — "), again.text


def test_live_line_names_the_shard() -> None:
    """The progress line of a shard run starts with ``job shard I/N``."""
    from runner.app.display import progress_text

    stats = JobStats("describe", shard="2/4", total=10)
    assert progress_text(stats, None, "CNY").startswith("describe shard 2/4: 0/10 ")
    assert summary_lines(JobStats("describe", shard="2/4"))[0].startswith("describe shard 2/4:")


async def test_no_wait_with_a_full_queue_tells_running_from_waiting(tmp_path: Path) -> None:
    """25 URLs in chunks of 10 with room for one batch: 1 running, 2 chunks waiting; the
    message says so, how far the batch is, why the chunks wait (a person told only "run again
    to submit the rest" ran it again at once, and nothing was submitted) and what the next run
    does (it did say "3 batch(es) still running")."""
    cfg = write_batch_config(
        tmp_path,
        make_urls(25),
        simulator={"batch_in_progress_s": 600},
        batch={"max_requests_per_file": 10, "max_queued": 10},
    )
    with pytest.raises(ComeBackLater) as caught:
        await run_config(cfg, ENV, no_wait=True)
    assert str(caught.value) == (
        "j: 1 batch still running, 2 chunks (15 lines) not submitted yet; 0/10 lines of the "
        "running batch done, and the chunks wait for queue room (batch.max_queued: 10 lines in "
        "running batches); run the same command again to collect and submit the rest"
    )


def test_interrupted_batch_run_names_what_the_api_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Ctrl-C a batch job's running batch is still billed: the one line says so and
    names both ways on (collect with the same command, or cancel), the config as typed."""
    cfg = write_batch_config(tmp_path, make_urls(3))
    config = load_config(cfg, environ=ENV)
    job = config.jobs[0]
    state_path(job).parent.mkdir(parents=True)
    save_state(
        state_path(job),
        JobState(
            "j",
            "tag",
            "hash",
            [Running(_chunk(0), "f0", "b0", "in_progress"), Built(_chunk(1, 20))],
        ),
    )
    monkeypatch.chdir(tmp_path)
    stats = [JobStats("j", route="batch")]
    remote = still_remote(config, config.jobs, stats)
    assert str(Interrupted("SIGINT", remote)) == (
        "interrupted by SIGINT; results so far are saved; j: 1 batch still running, 1 chunk "
        "(20 lines) not submitted yet. Batches keep running (and are billed) after glmrun "
        "exits: run the same command again to collect them, or `glmrun batches cancel "
        "config.yaml` to cancel them"
    )
    assert still_remote(config, config.jobs, [JobStats("j")]) == ""  # a realtime run
    assert str(Interrupted("SIGTERM")).endswith("saved, run again to resume")


class _Lines:
    """A text sink for a run's summary."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


async def test_dry_run_counts_have_thousands_separators(tmp_path: Path) -> None:
    """A shard's dry run on 2,400 lines with 1,200 records: every count reads like the
    others (``1,2xx lines for other shards``, ``average of 1,200 records``), not ``1234``,
    and the estimate line names the shard too."""
    urls = make_urls(2400)
    cfg = write_config(tmp_path, urls)
    out_path = tmp_path / "out" / "t.shard-0-of-2.jsonl"
    out_path.parent.mkdir(parents=True)
    usage = {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020}
    out_path.write_bytes(
        b"".join(
            orjson.dumps({"url": u, "status": "ok", "content": "x", "usage": usage}) + b"\n"
            for u in urls[:1200]
        )
    )
    config = load_config(cfg, environ=ENV).sharded(parse_shard("0/2"))
    out = _Lines()
    await run(config, RunOptions(tty=False, dry_run=True), out=out)
    assert re.search(r", 1,\d{3} lines for other shards -> ", out.text), out.text
    assert "average of 1,200 records so far" in out.text, out.text
    assert out.text.splitlines()[1].startswith("t shard 0/2: estimate for "), out.text


def test_a_held_lock_gives_each_command_its_own_way_on(tmp_path: Path) -> None:
    """``run`` may wait (``--wait-lock``); ``bench`` has no such option, so it is not offered;
    ``batches cancel`` behind a run waiting for its batches must stop that run first."""
    from runner.io.store import RunLock
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(3))
    job = load_config(cfg, environ=ENV).jobs[0]
    state_path(job).parent.mkdir(parents=True)
    save_state(state_path(job), JobState("j", "tag", "hash", [Built(_chunk(0, 3))]))
    with RunLock(job.output_path):
        ran = invoke(str(cfg))
        benched = invoke("bench", str(cfg), "--sample", "1", "--concurrency", "1")
        cancelled = invoke("batches", "cancel", str(cfg))
    assert ran.exit_code == benched.exit_code == cancelled.exit_code == 75
    assert ran.stderr.endswith("ago); wait for it, or pass --wait-lock\n"), ran.stderr
    assert benched.stderr.endswith("ago); try again once it has finished\n"), benched.stderr
    assert cancelled.stderr.endswith(
        "ago); stop that run first (its batches keep running), then cancel again\n"
    ), cancelled.stderr


def test_a_batch_with_no_results_under_on_failure_record_says_what_it_recorded(
    tmp_path: Path,
) -> None:
    """A failed batch with ``on_failure: record``: the collected line counts the error records
    it wrote (it said ``0 ok, 0 failed`` over a summary of 6 errors)."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(
        tmp_path,
        make_urls(6),
        simulator={"batch_final_status": "failed"},
        batch={"on_failure": "record"},
    )
    ran = invoke(str(cfg))
    assert ran.exit_code == 1
    collected = [line for line in ran.output.splitlines() if ": collected " in line]
    assert len(collected) == 1 and collected[0].endswith(
        "(failed): 0 ok, 6 recorded as errors the next run retries"
    ), ran.output


def test_batches_without_a_config_here_say_the_default_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``batches list`` / ``show ID`` read ./config.yaml when no config is given; in a folder
    without one they say so and how to name one (``-c`` for show), exit 2."""
    from tests.cli.test_cli import invoke

    monkeypatch.chdir(tmp_path)
    listed = invoke("batches", "list")
    shown = invoke("batches", "show", "batch_1")
    assert listed.exit_code == shown.exit_code == 2
    head = (
        "glmrun: config.yaml: no config file in this folder (the default when no config is given)"
    )
    assert listed.stderr == f"{head}: pass the config's path\n"
    assert shown.stderr == f"{head}: pass -c CONFIG\n"


async def test_a_run_that_collects_batches_shows_no_items_per_second(tmp_path: Path) -> None:
    """Collecting a batch submitted by an earlier --no-wait run takes a moment: "12 items in
    0.1s, 120 items/s" would be no speed anyone got, so a batch run shows its time only."""
    cfg = write_batch_config(tmp_path, make_urls(12))
    _, out = await run_config(cfg, ENV)
    traffic = out.splitlines()[1]
    assert re.fullmatch(r"  batches 1 submitted · via batch · \d+\.\ds", traffic), traffic
    assert "items/s" not in out


@pytest.mark.parametrize(
    ("pending", "why"),
    [
        (3000, "mode: auto, 3,000 pending > batch.threshold 1,000"),
        (1000, "mode: auto, 1,000 pending <= batch.threshold 1,000"),
    ],
    ids=["batch", "realtime"],
)
def test_auto_route_reason_reads_like_the_counts_beside_it(
    tmp_path: Path, pending: int, why: str
) -> None:
    """``--dry-run`` prints ``3,000 pending ... -> batch (why)``: the why says 3,000 too."""
    from runner.core.plan import choose_route

    cfg = write_config(tmp_path, make_urls(1), job={"mode": "auto"})
    config = load_config(cfg, environ=ENV)
    assert choose_route(config.jobs[0], pending, config.batch)[1] == why


@pytest.mark.parametrize(
    ("pending", "limit", "paid", "queued", "sends"),
    [
        (3000, None, 0, 0, 3000),
        (3000, 50, 0, 0, 50),
        (3000, None, 1000, 2000, 2000),
        (3000, 100, 1000, 2000, 2000),
        (3500, 100, 1000, 2000, 2100),
    ],
    ids=["plain", "limit", "tracked", "tracked-limit", "tracked-new-limit"],
)
def test_to_send_counts_what_a_run_would_pay_for(
    pending: int, limit: int | None, paid: int, queued: int, sends: int
) -> None:
    """Built chunks go first whatever --limit says; lines in batches are never paid again."""
    from runner.app.summary import to_send

    assert to_send(pending, limit, paid, queued) == sends


async def test_dry_run_after_a_no_wait_submit_does_not_estimate_the_paid_lines(
    tmp_path: Path,
) -> None:
    """25 URLs, 10 in a running batch, 15 in chunks waiting: the dry run says so and estimates
    the 15 it would submit, not all 25 pending (10 are billed already); --limit 5 the same."""
    cfg = write_batch_config(
        tmp_path,
        make_urls(25),
        simulator={"batch_in_progress_s": 600},
        batch={"max_requests_per_file": 10, "max_queued": 10},
    )
    with pytest.raises(ComeBackLater):
        await run_config(cfg, ENV, no_wait=True)
    for options in ({}, {"limit": 5}):
        _, out = await run_config(cfg, ENV, dry_run=True, **options)
        lines = out.splitlines()
        assert lines[0].startswith("j: 25 pending, 0 done"), out
        assert lines[1] == (
            "  tracked: 1 batch still running, 2 chunks (15 lines) not submitted yet; 10 lines "
            "already in batches"
        )
        assert lines[2].startswith("  10 lines in batches not yet collected, ~"), out
        assert lines[3].startswith("j: estimate for 15 pending: "), out


def test_tracked_lines_counts_every_billed_state_apart_from_the_queued_ones() -> None:
    """A batch being created, running, ended or being collected is billed; built or uploaded
    chunks are not yet; collected ones are no longer tracked; chunks that ended with no batch
    (dropped by a cancel, rejected) never were (they made a dry run say 25,000 lines in
    batches where 10,000 were)."""
    from runner.core.batch_states import Collecting, Creating, Uploaded, tracked_lines

    ended = Ended(_chunk(2, 3), "f2", "b2", "completed")
    states = [
        Creating(_chunk(0, 1), "f0"),
        Running(_chunk(1, 2), "f1", "b1", "in_progress"),
        ended,
        Collecting(Ended(_chunk(3, 4), "f3", "b3", "expired")),
        Collected(ended),
        Built(_chunk(5, 50)),
        Uploaded(_chunk(6, 60), "f6"),
        Ended(_chunk(7, 700), None, None, "cancelled"),  # dropped by a cancel: no batch
        Collecting(Ended(_chunk(8, 800), None, None, "rejected")),
    ]
    assert tracked_lines(states) == (1 + 2 + 3 + 4, 50 + 60)  # type: ignore[arg-type]


def test_simulate_on_a_taken_port_is_one_line_not_a_traceback() -> None:
    """A second ``glmrun simulate`` on the same port (a leftover tmux window) says what is wrong
    and the way out, exit 2; it printed an OSError traceback."""
    import socket

    from tests.cli.test_cli import invoke

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("simulate", "--port", str(port))
    assert result.exit_code == 2
    assert result.stderr == (
        f"glmrun: simulator: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another simulator there? --port 0 picks a free one)\n"
    )


def test_simulate_on_a_port_or_host_that_cannot_be_is_one_line_not_a_traceback() -> None:
    """``--port 99999`` raised OverflowError from bind() with a traceback; a host that
    resolves to nothing said "unknown error -2". Now: click's range error, and the
    resolver's own words; exit 2 both."""
    from tests.cli.test_cli import invoke

    result = invoke("simulate", "--port", "99999")
    assert result.exit_code == 2
    assert "99999 is not in the range 0<=x<=65535" in result.stderr
    result = invoke("simulate", "--host", "no-such-host.invalid", "--port", "0")
    assert result.exit_code == 2
    assert result.stderr.startswith("glmrun: simulator: cannot listen on no-such-host.invalid:0: ")
    assert "unknown error" not in result.stderr and result.stderr.count("\n") == 1


async def test_quiet_no_wait_is_silent_for_cron_and_still_exits_75(tmp_path: Path) -> None:
    """``-q --no-wait`` every ten minutes: batches still running is what was asked, so no line
    (cron mailed it at every run), exit 75; without -q the line is there."""
    cfg = write_batch_config(tmp_path, make_urls(5), simulator={"batch_in_progress_s": 600})
    result, out = await run_config(cfg, ENV, no_wait=True, quiet=True)
    assert (result.exit_code, out) == (75, "")
    with pytest.raises(ComeBackLater, match="1 batch still running"):
        await run_config(cfg, ENV, no_wait=True)


def test_interrupted_with_an_unreadable_state_file_still_ends_in_its_one_line(
    tmp_path: Path,
) -> None:
    """A state file that cannot be read is left out of the interrupted line, not raised
    (which would turn exit 130 into 1 with another message)."""
    cfg = write_batch_config(tmp_path, make_urls(3))
    config = load_config(cfg, environ=ENV)
    path = state_path(config.jobs[0])
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert still_remote(config, config.jobs, [JobStats("j", route="batch")]) == ""


def test_a_corrupt_state_file_says_a_run_without_it_finds_the_batches(tmp_path: Path) -> None:
    """The advice was to let the job's batches finish or cancel them before moving the file
    away, or pay for their lines twice; but a run without a state file looks the job's batches
    up on the account and collects them (``runner.engine.batch.adopt``), among as many as it
    lists."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(3))
    path = state_path(load_config(cfg, environ=ENV).jobs[0])
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    result = invoke("status", str(cfg))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"glmrun: {path}: batch state file is not valid JSON (")
    assert result.stderr.endswith(
        "move it away and run again: a run without it looks for this job's batches among the "
        "account's latest 1,000 (`glmrun batches list --remote`) and collects them instead of "
        "sending their lines again\n"
    )
    from runner.engine.batch.adopt import LIST_PAGES

    assert LIST_PAGES * 100 == 1000


async def test_another_outputs_batches_are_not_this_jobs(tmp_path: Path) -> None:
    """A work folder tracking another output's batches (another config's job of the same
    name): this job's dry run estimates all its pending lines and names no batch of theirs,
    and an interrupted run does not say they are its own."""
    cfg = write_batch_config(tmp_path, make_urls(4))
    config = load_config(cfg, environ=ENV)
    job = config.jobs[0]
    state_path(job).parent.mkdir(parents=True)
    running = [Running(_chunk(0, 3), "f0", "b0", "in_progress")]
    save_state(state_path(job), JobState("j", "tag", "hash", running, output="other.jsonl"))
    _, out = await run_config(cfg, ENV, dry_run=True)
    assert "tracked:" not in out and "j: estimate for 4 pending: " in out, out
    assert still_remote(config, config.jobs, [JobStats("j", route="batch")]) == ""


def test_batches_list_of_real_sized_batches_fits_80_columns(tmp_path: Path) -> None:
    """A job named describe with 10,000-line batches in progress (10 failed), built and
    collected: every row of the table fits 80 columns (a state column, a status column and a
    polled time per row made them 90 wide), the status says built or collected where the chunk
    has no batch or its results are in, and the one poll time is a line under the table."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(3), job={"name": "describe"})
    job = load_config(cfg, environ=ENV).jobs[0]
    counts = Counts(10_000, 9_990, 10)
    chunks = [
        Collected(Ended(_chunk(0, 10_000), "f0", "batch_1796093803777959246", "completed")),
        Running(_chunk(1, 10_000), "f1", "batch_1796093803815808427", "in_progress", counts),
        Built(_chunk(2, 10_000)),
    ]
    state_path(job).parent.mkdir(parents=True)
    save_state(state_path(job), JobState("describe", "tag", "hash", chunks))
    table = invoke("batches", "list", str(cfg)).output.splitlines()
    assert table[0].split() == ["job", "chunk", "status", "batch_id", "done"]
    assert [row.split()[2] for row in table[1:4]] == ["collected", "in_progress", "built"]
    assert table[4].startswith("describe: running batches last polled ") and len(table) == 5
    assert max(map(len, table)) <= 80, table


def test_status_counts_the_open_batches_past_ten(tmp_path: Path) -> None:
    """A job of a dozen chunks: status lists nine and counts the rest by state with where to
    see them all (a million URLs made a hundred lines); --json keeps every row."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(3))
    job = load_config(cfg, environ=ENV).jobs[0]
    chunks: list[object] = [
        Running(_chunk(i, 8000), f"f{i}", f"batch_{i}", "in_progress") for i in range(6)
    ]
    chunks += [Built(_chunk(6 + i, 8000)) for i in range(7)]
    state_path(job).parent.mkdir(parents=True)
    save_state(state_path(job), JobState("j", "tag", "hash", chunks))  # type: ignore[arg-type]
    lines = invoke("status", str(cfg)).output.splitlines()
    rows = [line for line in lines if line.startswith(("  batch ", "  chunk "))]
    assert len(rows) == 9, lines
    assert lines[-1] == "  … 4 more (4 not submitted yet): glmrun batches list", lines
    row = orjson.loads(invoke("status", str(cfg), "--json").output.splitlines()[0])
    assert len(row["batches"]) == 13


def test_a_no_wait_summary_counts_the_batches_left_running(tmp_path: Path) -> None:
    """A --no-wait run's stdout (what a cron mail shows when stderr goes to a log) said only
    ``0/12 done · via batch``; it now counts the batches it left running, on every such run."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(12), simulator={"batch_in_progress_s": 600})
    for _ in range(2):
        result = invoke(str(cfg), "--no-wait")
        assert result.exit_code == 75, result.stderr
        assert "1 batch still running · via batch" in result.stdout.splitlines()[1], result.stdout
