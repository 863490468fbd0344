"""The glmrun command: exit codes, one-line errors, options, progress and the example config."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.cli.main import main
from runner.simulator import expected_content
from tests.core.test_config import BROKEN
from tests.support.configs import ENV, KEY_ENV, make_urls, output_of, write_config
from tests.support.records import latest, read_records
from tests.support.runs import glmrun as run_glmrun

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner(env={**ENV, **(env or {})})
    return runner.invoke(main, list(args), catch_exceptions=False)


def glmrun(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """glmrun in a child process with the test key in its environment and no real key."""
    env = {**os.environ, **ENV}
    env.pop("ZHIPUAI_API_KEY", None)
    return run_glmrun(*args, cwd=cwd, env=env)


def assert_one_error_line(stderr: str, *parts: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("glmrun: ")
    assert "Traceback" not in stderr
    for part in parts:
        assert part in lines[0]


@pytest.mark.parametrize(
    ("kwargs", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_config_exits_2_with_one_line(
    tmp_path: Path, kwargs: dict[str, Any], expected: list[str]
) -> None:
    """Every broken config exits 2 with one line on stderr naming the key, and no traceback."""
    path = write_config(tmp_path, **kwargs)
    result = invoke(str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert_one_error_line(result.stderr, *expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{cfg}", "--job", "nope"], "no job named 'nope'"),
        (["{tmp}/missing.yaml"], "config file not found"),
        (["{cfg}", "--limit", "0"], "'--limit': expected a whole number of 1 or more, found '0'"),
        (["{cfg}", "--limit", "abc"], "'--limit': expected a whole number of 1 or more"),
        (["{cfg}", "--limit", "2.5"], "'--limit': expected a whole number of 1 or more"),
    ],
    ids=["unknown-job", "missing-config", "bad-limit", "limit-not-a-number", "limit-fraction"],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    """Usage mistakes exit 2 without a traceback."""
    cfg = write_config(tmp_path)
    result = invoke(*(a.format(cfg=cfg, tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_missing_input_file_exits_2(tmp_path: Path) -> None:
    """An input file that does not exist is one config-error line, exit 2."""
    cfg = write_config(tmp_path, job={"input": "nope.txt"})
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "nope.txt: input file not found")


def _three_jobs_second_missing(tmp_path: Path) -> Path:
    """Jobs a, b, c reading urls.txt, b's input misspelt as url.txt."""
    job = write_config.base["jobs"][0]
    jobs = [
        {**job, "name": name, "input": src, "output": f"out/{name}.jsonl"}
        for name, src in (("a", "urls.txt"), ("b", "url.txt"), ("c", "urls.txt"))
    ]
    return write_config(tmp_path, make_urls(3), jobs=jobs)


@pytest.mark.parametrize("command", [[], ["--dry-run"], ["status"]], ids=["run", "dry", "status"])
def test_a_missing_input_of_a_later_job_stops_the_run_before_any_job_sends(
    tmp_path: Path, command: list[str]
) -> None:
    """With several jobs, a missing input is found before the first job sends (the run used to
    finish job a, then stop at b with exit 2 and never run c); the line names the job and the
    file it probably meant."""
    cfg = _three_jobs_second_missing(tmp_path)
    args = ["status", str(cfg)] if command == ["status"] else [str(cfg), *command]
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert_one_error_line(
        result.stderr, "job b: ", "url.txt: input file not found (did you mean urls.txt?)"
    )
    assert not (tmp_path / "out" / "a.jsonl").exists()


def test_a_csv_input_without_its_url_column_stops_the_run_before_any_job_sends(
    tmp_path: Path,
) -> None:
    """A later job's CSV whose header lacks csv_url_column is found before the first job sends
    (job a ran, then b ended the run with exit 2), naming the job and the columns it has."""
    (tmp_path / "p.csv").write_text("id,image\n1,https://e.test/a.jpg\n")
    job = write_config.base["jobs"][0]
    jobs = [
        {**job, "name": "a", "output": "out/a.jsonl"},
        {**job, "name": "b", "input": "p.csv", "output": "out/b.jsonl"},
    ]
    cfg = write_config(tmp_path, make_urls(3), jobs=jobs)
    result = invoke(str(cfg))
    assert result.exit_code == 2 and result.stdout == ""
    assert_one_error_line(result.stderr, "job b: ", "no column 'url' in the CSV header (id, image)")
    assert not (tmp_path / "out" / "a.jsonl").exists()


def test_unknown_simulator_knob_exits_2(tmp_path: Path) -> None:
    """A misspelt simulator knob is a config error, not a crash."""
    cfg = write_config(tmp_path, simulator={"latency_mean": 1})
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr,
        "simulator.latency_mean: unknown simulator setting (did you mean latency_mean_s?)",
    )


def test_simulator_knob_of_the_wrong_type_names_it(tmp_path: Path) -> None:
    """A knob's value of the wrong type: the key path and what it takes, as for other keys."""
    cfg = write_config(tmp_path, simulator={"latency_mean_s": "fast"})
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr, "simulator.latency_mean_s: expected a number, found 'fast'"
    )


@pytest.mark.parametrize(
    ("knob", "value", "expected"),
    [
        ("url_faults", "x", "expected a mapping of URL to a list of faults, found 'x'"),
        ("url_faults", {"u": "500"}, "expected a mapping of URL to a list of faults"),
        ("limit_schedule", "x", "expected a list of [seconds, limit] pairs, found 'x'"),
        ("url_answers", {"u": "x"}, "expected a mapping of URL to an answer's fields"),
        ("batch_line_faults", 3, "expected a mapping of URL to a fault, found 3"),
    ],
)
def test_a_structured_simulator_knob_of_the_wrong_shape_says_what_it_takes(
    tmp_path: Path, knob: str, value: object, expected: str
) -> None:
    """Not Python's words (``'str' object has no attribute 'items'``), nor a traceback (a
    ``url_answers`` entry that is no mapping): what the knob takes."""
    cfg = write_config(tmp_path, simulator={knob: value})
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, f"simulator.{knob}: {expected}")


def test_run_is_the_default_command(tmp_path: Path) -> None:
    """`glmrun CONFIG` and `glmrun run CONFIG` do the same; a rerun skips everything."""
    urls = make_urls(20)
    cfg = write_config(tmp_path, urls)
    first = invoke(str(cfg))
    assert first.exit_code == 0, first.stderr
    assert "t: ok 20, errors 0" in first.stdout
    second = invoke("run", str(cfg))
    assert second.exit_code == 0
    assert second.stdout == "t: nothing to do — 20 done\n"
    assert len(read_records(output_of(tmp_path))) == 20


def test_dry_run_counts_and_sends_nothing(tmp_path: Path) -> None:
    """--dry-run prints pending / done / invalid / duplicate counts and touches no network or
    output."""
    urls = make_urls(10)
    cfg = write_config(tmp_path, urls[:3])
    assert invoke(str(cfg), "-q").exit_code == 0
    before = output_of(tmp_path).read_bytes()
    # A real base URL on a closed port: any request would fail the run.
    write_config(
        tmp_path,
        [*urls, "ftp://x/y.jpg", urls[4]],
        api={"base_url": "http://127.0.0.1:9/api/paas/v4"},
    )
    result = invoke(str(cfg), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "t: 7 pending, 3 done (0 as errors), 1 invalid, 1 duplicate line"
        " -> realtime (mode: realtime)"
    )
    assert result.stdout.splitlines()[1] == (
        "  invalid line 11: scheme ftp: is not allowed; expected an http:// or https:// URL"
    )
    assert output_of(tmp_path).read_bytes() == before


def test_dry_run_lists_only_the_invalid_lines_a_run_would_record(tmp_path: Path) -> None:
    """After a run recorded line 2's invalid_input, --dry-run said "0 invalid" and listed it
    anyway; it lists only lines no run has recorded yet (the header counts the recorded one in
    "done (1 as errors)"), and a shard only its own."""
    urls = make_urls(4)
    cfg = write_config(tmp_path, [urls[0], "ftp://x/y.jpg", urls[1]])
    assert invoke(str(cfg), "-q").exit_code == 1
    write_config(tmp_path, [urls[0], "ftp://x/y.jpg", urls[1], "gopher://x/z.jpg", *urls[2:]])
    lines = invoke(str(cfg), "--dry-run").stdout.splitlines()
    assert lines[0].startswith("t: 2 pending, 3 done (1 as errors), 1 invalid,")
    assert [line for line in lines if "invalid line" in line] == [
        "  invalid line 4: scheme gopher: is not allowed; expected an http:// or https:// URL"
    ]
    listed = []
    for shard in ("0/2", "1/2"):
        out = invoke(str(cfg), "--dry-run", "--shard", shard).stdout
        listed += [line for line in out.splitlines() if "invalid line" in line]
    assert listed == [
        "  invalid line 4: scheme gopher: is not allowed; expected an http:// or https:// URL"
    ]


def test_one_duplicate_line_is_singular_in_the_summary() -> None:
    """``1 duplicate lines`` was printed by the summary and --dry-run alike."""
    from runner.app.summary import summary_lines
    from runner.core.stats import JobStats

    one = JobStats("t", total=2, ok=2, duplicates=1)
    assert summary_lines(one)[0] == "t: ok 2, errors 0, 1 duplicate line — 2/2 done"
    two = JobStats("t", total=2, ok=2, duplicates=2)
    assert summary_lines(two)[0] == "t: ok 2, errors 0, 2 duplicate lines — 2/2 done"


def test_job_option_runs_one_job(tmp_path: Path) -> None:
    """--job NAME runs only that job."""
    job_a = {"name": "a", "input": "urls.txt", "output": "out/a.jsonl", "model": "m", "prompt": "p"}
    job_b = {**job_a, "name": "b", "output": "out/b.jsonl"}
    cfg = write_config(tmp_path, make_urls(5), jobs=[job_a, job_b])
    result = invoke(str(cfg), "--job", "b")
    assert result.exit_code == 0, result.stderr
    assert len(read_records(tmp_path / "out" / "b.jsonl")) == 5
    assert not (tmp_path / "out" / "a.jsonl").exists()
    assert "b: ok 5" in result.stdout and "a: " not in result.stdout


@pytest.mark.parametrize("command", [["run"], ["status"], ["export"], ["batches", "list"]])
def test_job_given_twice_is_refused_not_cut_to_the_last(tmp_path: Path, command: list[str]) -> None:
    """``--job a --job b`` is refused (exit 2, naming both) before anything runs: click would
    keep only the last, so a person who listed three jobs would see one run and the others
    silently left pending."""
    job_a = {"name": "a", "input": "urls.txt", "output": "out/a.jsonl", "model": "m", "prompt": "p"}
    job_b = {**job_a, "name": "b", "output": "out/b.jsonl"}
    cfg = write_config(tmp_path, make_urls(5), jobs=[job_a, job_b])
    result = invoke(*command, str(cfg), "--job", "a", "--job", "b")
    assert result.exit_code == 2, result.stderr
    assert "given 2 times (a, b)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "a.jsonl").exists()
    assert not (tmp_path / "out" / "b.jsonl").exists()


def test_limit_sends_at_most_n_new_urls(tmp_path: Path) -> None:
    """--limit N sends N new URLs; the next run without it does the rest."""
    urls = make_urls(12)
    cfg = write_config(tmp_path, urls)
    result = invoke(str(cfg), "--limit", "5", "-q")
    assert result.exit_code == 0
    assert {r["url"] for r in read_records(output_of(tmp_path))} == set(urls[:5])
    assert invoke(str(cfg), "-q").exit_code == 0
    final = latest(read_records(output_of(tmp_path)))
    assert set(final) == set(urls) and len(read_records(output_of(tmp_path))) == 12


def test_some_errors_exit_1(tmp_path: Path) -> None:
    """A URL recorded as an error (scripted 1301) makes the run exit 1; the others are ok."""
    urls = make_urls(8)
    cfg = write_config(
        tmp_path, urls, simulator={"latency_mean_s": 0.001, "url_faults": {urls[3]: ["1301"]}}
    )
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 1, result.stderr
    assert "t: ok 7, errors 1" in result.stdout
    final = latest(read_records(output_of(tmp_path)))
    assert (
        final[urls[3]]["error"]["code"] == "1301" and final[urls[3]]["error"]["retryable"] is False
    )
    assert sum(r["status"] == "ok" for r in final.values()) == 7


def test_invalid_input_exits_1(tmp_path: Path) -> None:
    """An invalid input line is recorded as invalid_input and the run exits 1."""
    cfg = write_config(tmp_path, [*make_urls(3), "mailto:someone@example.com"])
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 1
    assert "errors 1 (1 invalid line)" in result.stdout
    assert "  invalid_input ×1: line 4" in result.stdout.splitlines()


def test_fatal_code_exits_3_with_one_line(tmp_path: Path) -> None:
    """Arrears (1113 as HTTP 429) stop the run: exit 3, one stderr line naming the code, in-hand
    results saved."""
    urls = make_urls(40)
    cfg = write_config(
        tmp_path,
        urls,
        limits={"concurrency": 4},
        simulator={"latency_mean_s": 0.01, "url_faults": {urls[10]: ["1113"]}},
    )
    result = invoke(str(cfg), "-q")
    assert result.exit_code == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("glmrun: the API refused the run (code 1113")
    assert "arrears" in lines[-1]
    records = read_records(output_of(tmp_path))
    assert records and all(r["status"] == "ok" for r in records)
    assert urls[10] not in {r["url"] for r in records}
    assert ENV[KEY_ENV] not in result.stderr


def test_non_tty_progress_line(tmp_path: Path) -> None:
    """Without a TTY a plain progress line appears every run.progress_interval_s, then the
    summary."""
    cfg = write_config(
        tmp_path,
        make_urls(120),
        limits={"concurrency": 4},
        run={"progress_interval_s": 0.05},
        simulator={"latency_mean_s": 0.01},
    )
    proc = glmrun(str(cfg))
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("t: ")]
    assert progress and len(progress) == len(proc.stderr.splitlines()), proc.stderr
    assert "/120 " in progress[0] and "in flight " in progress[0]
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    assert proc.stdout.startswith("t: ok 120, errors 0")


def test_example_config_end_to_end(tmp_path: Path) -> None:
    """`glmrun config/example.yaml` on a temp copy exits 0 with a summary and 400 matching ok
    records."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    proc = glmrun("config/example.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.splitlines()
    assert summary[0] == "describe: ok 400, errors 0 — 400/400 done"
    assert summary[1].startswith("  requests ") and "items/s" in summary[1]
    assert summary[2].startswith("  tokens ") and summary[2].endswith(" CNY")
    assert len(summary) == 3
    final = latest(read_records(tmp_path / "out" / "example.jsonl"))
    assert len(final) == 400
    assert all(
        r["status"] == "ok" and r["content"] == expected_content(u) for u, r in final.items()
    )
    assert "https://mpas.playinjoy.com/202508/b3dfdd2d-eef9-43f4-a447-8ba246c6612f.jpg" in final


def test_verbose_logs_each_retry_and_quiet_logs_nothing(tmp_path: Path) -> None:
    """-v logs one debug line per retry with its code; -q keeps stderr empty on a clean run."""
    urls = make_urls(4)
    cfg = write_config(
        tmp_path, urls, simulator={"latency_mean_s": 0.001, "url_faults": {urls[0]: ["500", "429"]}}
    )
    result = invoke(str(cfg), "-v")
    assert result.exit_code == 0, result.stderr
    retries = [
        line for line in result.stderr.splitlines() if line.startswith("glmrun: debug: retry ")
    ]
    assert len(retries) == 2
    assert "code=500" in retries[0] and "code=1302" in retries[1] and f"url={urls[0]}" in retries[0]
    output_of(tmp_path).unlink()
    quiet = invoke(str(cfg), "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_an_output_gone_while_its_index_remembers_it_is_not_started_over(
    tmp_path: Path,
) -> None:
    """An output moved away (a rotation, an archive) or deleted by mistake: its resume index
    still lists what was recorded in it, and a run that started over would send, and pay
    for, every one of those URLs again. The run, bench and --dry-run say so (exit 2, nothing
    sent) and status shows it; deleting the index too starts over, quietly (the index is a
    cache: deleting it alone costs one slower run)."""
    urls = make_urls(5)
    cfg = write_config(tmp_path, urls)
    assert invoke(str(cfg)).exit_code == 0
    assert invoke(str(cfg)).exit_code == 0  # a rerun's scan of the output writes the index
    index = tmp_path / "out" / "t.jsonl.resume-index"
    assert index.exists()
    out = tmp_path / "out" / "t.jsonl"
    out.rename(tmp_path / "t-archived.jsonl")
    refused = invoke(str(cfg))
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"glmrun: {out} is gone, but t.jsonl.resume-index beside ")
    assert "lists 5 URLs recorded in it: a run now would send, and pay for," in refused.stderr
    assert f"to start over on purpose, delete {index}" in refused.stderr
    assert not out.exists()  # nothing sent, nothing written
    assert invoke("bench", str(cfg)).exit_code == 2
    dry = invoke(str(cfg), "--dry-run")
    assert dry.exit_code == 0 and f"  a run is refused: {out} is gone, but " in dry.stdout
    status = invoke("status", str(cfg))
    assert f"  a run is refused: {out} is gone, but " in status.stdout
    out.write_bytes(b"")  # emptied: the same
    assert "t.jsonl is empty, but " in invoke(str(cfg)).stderr
    index.unlink()  # starting over on purpose
    again = invoke(str(cfg))
    assert again.exit_code == 0 and again.stderr == "", again.stderr
    assert set(latest(read_records(out))) == set(urls)


def test_a_shard_output_gone_while_its_index_remembers_it_is_not_started_over(
    tmp_path: Path,
) -> None:
    """The same for a shard's file: a run of the whole job would send its URLs again."""
    cfg = write_config(tmp_path, make_urls(40))
    for _ in range(2):
        for i in range(2):
            assert invoke(str(cfg), "--shard", f"{i}/2").exit_code == 0
    shard = tmp_path / "out" / "t.shard-1-of-2.jsonl"
    assert (tmp_path / "out" / "t.shard-1-of-2.jsonl.resume-index").exists()
    shard.unlink()
    refused = invoke(str(cfg))
    assert refused.exit_code == 2, refused.stderr
    assert f"glmrun: {shard} is gone, but t.shard-1-of-2.jsonl.resume-index" in refused.stderr


def test_a_dry_run_says_when_another_run_holds_the_output(tmp_path: Path) -> None:
    """--dry-run while a run holds the output's lock: its counts are moving and a run now would
    not start; it said nothing of it (status did)."""
    from runner.io.store import RunLock

    cfg = write_config(tmp_path, make_urls(3))
    output_of(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    with RunLock(output_of(tmp_path)):
        dry = invoke(str(cfg), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert (
        f"  a run now would wait: {output_of(tmp_path)} is in use by another glmrun run (pid "
        in (dry.stdout)
    )
    assert "it exits 75, or waits with --wait-lock" in dry.stdout
    assert "a run now would wait" not in invoke(str(cfg), "--dry-run").stdout


def test_a_batch_job_is_told_its_batches_can_be_collected_again(tmp_path: Path) -> None:
    """The refusal over a gone output says, for a job in mode batch or auto, that deleting the
    index does not mean paying for all of it: batches the account still holds are collected
    again, free (a realtime job's line does not say so: nothing of it can be fetched again)."""
    cfg = write_config(tmp_path, make_urls(150))
    assert invoke(str(cfg)).exit_code == 0
    assert invoke(str(cfg)).exit_code == 0  # a rerun's scan of the output writes the index
    output_of(tmp_path).unlink()
    assert "collected again, free" not in invoke(str(cfg)).stderr
    batch = write_config(tmp_path, make_urls(150), job={"mode": "batch"})
    refused = invoke(str(batch))
    assert refused.exit_code == 2
    assert refused.stderr.rstrip().endswith(
        "(a batch job's lines in batches the account still holds are then collected again, "
        "free: only the rest is sent again)"
    ), refused.stderr


def test_a_count_option_takes_a_whole_number_of_one_or_more() -> None:
    """``--limit``, ``--sample`` and the like: digits (with _ separators) pass as ints; the
    rest is one clear usage error (click's IntRange said "'abc' is not a valid integer
    range")."""
    import click

    from runner.cli.common import COUNT

    assert COUNT.convert("1_000", None, None) == 1000 and COUNT.convert(7, None, None) == 7
    for bad in ("abc", "0", "-3", "2.5", "", True):
        with pytest.raises(click.BadParameter, match="expected a whole number of 1 or more"):
            COUNT.convert(bad, None, None)
