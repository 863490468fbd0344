"""Failures a person can find and exit codes cron can trust: status --errors, export --status,
--columns checks, cron exit codes, typo catching, dry-run without a key, the batch view."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import orjson
import pytest

from runner.app.summary import job_exit_code, most_serious
from runner.core.batch_states import Chunk, Running
from runner.core.stats import JobStats
from runner.io.batch_state import JobState, save_state, tracked_batches
from tests.cli.test_cli import invoke
from tests.support.configs import (
    KEY_ENV,
    make_urls,
    output_of,
    write_batch_config,
    write_config,
)


def several_codes(tmp_path: Path) -> tuple[Path, list[str]]:
    """An output with ok records, 1301 ×3, 1210 ×1, a retryable 500, an invalid line, and a key
    whose error was later fixed (ok wins)."""
    urls = make_urls(8)
    cfg = write_config(tmp_path, [*urls, "not a url"])
    out = output_of(tmp_path)
    out.parent.mkdir(parents=True)

    def err(url: str, code: str, retryable: bool = False) -> dict[str, object]:
        return {
            "url": url,
            "status": "error",
            "error": {"code": code, "message": f"failed with {code}", "retryable": retryable},
        }

    rows = [
        {"url": urls[0], "status": "ok", "content": "a"},
        err(urls[1], "1301"),
        err(urls[2], "1301"),
        err(urls[3], "1301"),
        err(urls[4], "1210"),
        err(urls[5], "500", retryable=True),
        err(urls[6], "1301"),
        {"url": urls[6], "status": "ok", "content": "fixed later"},
        err("not a url", "invalid_input"),
        {"url": urls[7], "status": "ok", "content": "b"},
    ]
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return cfg, urls


def test_status_errors_groups_by_code_with_examples(tmp_path: Path) -> None:
    """status --errors: per code the count, permanent or retried, and examples with line numbers."""
    cfg, urls = several_codes(tmp_path)
    result = invoke("status", str(cfg), "--errors", "--limit", "2")
    lines = result.stdout.splitlines()
    at = lines.index("t: 6 keys with errors")
    assert "glmrun status --errors" not in result.stdout  # no hint to run what ran
    assert invoke("status", str(cfg)).stdout.endswith("  errors by code: glmrun status --errors\n")
    assert lines[at + 1 :] == [
        "  1301 ×3 (permanent)",
        f"    line 2: {urls[1]} — failed with 1301",
        f"    line 3: {urls[2]} — failed with 1301",
        "    … 1 more (--limit N shows more)",
        "  1210 ×1 (permanent)",
        f"    line 5: {urls[4]} — failed with 1210",
        "  500 ×1 (retried by the next run)",
        f"    line 6: {urls[5]} — failed with 500",
        "  invalid_input ×1 (never sent; a run sends the line once it is valid)",
        "    line 9: not a url — not a URL; expected an http:// or https:// URL",  # today's reason
    ]
    as_json = invoke("status", str(cfg), "--errors", "--json").stdout.splitlines()[-1]
    groups = {g["code"]: g for g in json.loads(as_json)["errors"]}
    assert groups["1301"]["count"] == 3 and len(groups["1301"]["examples"]) == 3
    assert groups["500"]["retryable"] is True and groups["1210"]["retryable"] is False


def test_export_status_filters_on_the_latest_record(tmp_path: Path) -> None:
    """export --status error / ok: keys whose latest record has that status, nothing else."""
    cfg, urls = several_codes(tmp_path)
    errors = [
        json.loads(x) for x in invoke("export", str(cfg), "--status", "error").stdout.splitlines()
    ]
    assert sorted(r["url"] for r in errors) == sorted(
        [urls[1], urls[2], urls[3], urls[4], urls[5], "not a url"]
    )
    ok = invoke("export", str(cfg), "--status", "ok", "--format", "csv", "--columns", "url,content")
    rows = list(csv.reader(io.StringIO(ok.stdout)))
    assert rows == [["url", "content"], [urls[0], "a"], [urls[6], "fixed later"], [urls[7], "b"]]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("url,nope.x", "--columns: unknown field 'nope.x'"),
        (
            "usage.promt_tokens",
            "unknown field 'usage.promt_tokens' (did you mean 'usage.prompt_tokens'?)",
        ),
        ("url,stauts", "unknown field 'stauts' (did you mean 'status'?)"),
        ("prompt_tokens", "unknown field 'prompt_tokens' (did you mean 'usage.prompt_tokens'?)"),
        ("code", "unknown field 'code' (did you mean 'error.code'?)"),
        ("usage.promt_tokens.x", "(did you mean 'usage.prompt_tokens'?)"),
    ],
    ids=["unknown", "sub-typo", "top-typo", "bare-sub", "bare-error-sub", "deeper"],
)
def test_export_unknown_column_is_an_error(tmp_path: Path, columns: str, message: str) -> None:
    """An unknown --columns path is exit 2 with one line, not a silently empty column; the
    suggestion is a whole path that works when pasted back (it said 'prompt_tokens', which is
    refused in turn, for usage.promt_tokens)."""
    cfg, _ = several_codes(tmp_path)
    result = invoke("export", str(cfg), "--columns", columns)
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert message in line


# --- exit codes for cron ---


def test_old_permanent_errors_exit_0_with_a_line_saying_so(tmp_path: Path) -> None:
    """New error records exit 1; a later run that writes none exits 0 and says the old errors
    exist; --strict restores exit 1 for them."""
    urls = make_urls(6)
    cfg = write_config(tmp_path, urls, simulator={"url_faults": {urls[2]: ["1301"]}})
    assert invoke(str(cfg), "--limit", "3").exit_code == 1  # wrote the 1301 record
    later = invoke(str(cfg))  # sends the other 3: all ok
    assert later.exit_code == 0
    assert (
        "  1 item has permanent errors from earlier runs: glmrun status --errors"
        in later.stdout.splitlines()
    )
    assert invoke(str(cfg), "--strict").exit_code == 1
    assert invoke(str(cfg)).exit_code == 0


def test_several_jobs_the_most_serious_code_wins(tmp_path: Path) -> None:
    """Job a writes an error (1), job b is clean (0): the run exits 1 after running both."""
    urls = make_urls(4)
    job_a = {
        "name": "a",
        "input": "urls.txt",
        "output": "out/a.jsonl",
        "model": "glm-4v-flash",
        "prompt": "p",
    }
    job_b = {**job_a, "name": "b", "output": "out/b.jsonl", "prompt": "q"}
    cfg = write_config(
        tmp_path, urls, jobs=[job_a, job_b], simulator={"url_faults": {urls[0]: ["1301"]}}
    )
    result = invoke(str(cfg))
    assert result.exit_code == 1
    heads = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert heads == ["a: ok 3, errors 1 — 4/4 done", "b: ok 4, errors 0 — 4/4 done"]


@pytest.mark.parametrize(
    ("codes", "expected"),
    [([0, 75], 75), ([75, 1], 1), ([1, 2], 2), ([3, 1, 75], 3), ([0, 0], 0), ([], 0)],
    ids=["75>0", "1>75", "2>1", "3>1>75", "all-0", "none"],
)
def test_most_serious_code(codes: list[int], expected: int) -> None:
    """2/3 over 1 over 75 over 0."""
    assert most_serious(codes) == expected


def test_job_exit_code_rules() -> None:
    """1 only for this run's errors (or --strict with older ones); 75 for work left pending."""
    assert job_exit_code(JobStats("j", errors=1)) == 1
    assert job_exit_code(JobStats("j", failed_before=2)) == 0
    assert job_exit_code(JobStats("j", failed_before=2), strict=True) == 1
    assert job_exit_code(JobStats("j", left_pending=3)) == 75


# --- typos ---


def test_unknown_model_with_zhipu_base_url_is_a_config_error(tmp_path: Path) -> None:
    """glm-4v-flsh against Zhipu's own endpoint: exit 2 with a did-you-mean, nothing sent."""
    cfg = write_config(
        tmp_path,
        make_urls(2),
        api={"base_url": "https://open.bigmodel.cn/api/paas/v4"},
        job={"model": "glm-4v-flsh"},
    )
    result = invoke(str(cfg))
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        "jobs[0].model: unknown model 'glm-4v-flsh' (did you mean 'glm-4v-flash'?)"
    )


def test_model_names_match_case_insensitively_and_proxies_get_a_warning(tmp_path: Path) -> None:
    """GLM-4V-Plus is fine on Zhipu's endpoint; an unknown name on a proxy is one warning."""
    base = {"api": {"base_url": "https://open.bigmodel.cn/api/paas/v4"}}
    cfg = write_config(tmp_path, make_urls(2), job={"model": "GLM-4V-Plus"}, **base)
    ok = invoke(str(cfg), "--dry-run")
    assert ok.exit_code == 0 and ok.stderr == ""
    cfg = write_config(
        tmp_path,
        make_urls(2),
        api={"base_url": "https://proxy.example.com/v1"},
        job={"model": "glm-4v-plsu"},
    )
    warned = invoke(str(cfg), "--dry-run")
    assert warned.exit_code == 0
    (line,) = warned.stderr.splitlines()
    assert "unknown model 'glm-4v-plsu' (did you mean 'glm-4v-plus'?)" in line


def test_params_typo_gets_a_did_you_mean(tmp_path: Path) -> None:
    """params: {temprature: 0.3} warns with the parameter it probably meant."""
    cfg = write_config(tmp_path, make_urls(2), job={"params": {"temprature": 0.3}})
    result = invoke(str(cfg), "--dry-run")
    (line,) = result.stderr.splitlines()
    assert (
        "params.temprature: not a known GLM vision parameter (did you mean 'temperature'?)" in line
    )


def test_command_typo(tmp_path: Path) -> None:
    """glmrun stauts cfg.yaml: no such command, did you mean status (exit 2); a real file
    whose name looks like a command is still a config."""
    cfg = write_config(tmp_path, make_urls(2))
    result = invoke("stauts", str(cfg))
    assert result.exit_code == 2
    assert result.stderr == "glmrun: No such command 'stauts'. Did you mean 'status'?\n"


def test_dry_run_needs_no_key_and_lists_invalid_lines(tmp_path: Path) -> None:
    """--dry-run sends nothing, so an unset key variable is no error; invalid lines are listed."""
    cfg = write_config(tmp_path, [*make_urls(3), "ftp://x/y.jpg", "not a url"])
    result = invoke(str(cfg), "--dry-run", env={KEY_ENV: ""})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[1]
        == "  invalid line 4: scheme ftp: is not allowed; expected an http:// or https:// URL"
    )
    assert lines[2].startswith("  invalid line 5: ")


# --- the batch view ---


def test_status_shows_a_cancel_at_once_and_when_it_was_polled(tmp_path: Path) -> None:
    """A cancel shows as 'cancelling' before the next poll; each batch says when it was polled."""
    cfg = write_config(tmp_path, make_urls(2))
    state = tmp_path / "out" / ".glmrun" / "t" / "state.json"
    chunk = Chunk(0, "chunk-00000.jsonl", "chunk-00000.ids", 2, 100)
    running = Running(chunk, "f1", "batch_1", "validating")
    save_state(state, JobState("t", "tag", "h", [running]))
    before = invoke("status", str(cfg)).stdout
    assert "batch batch_1: validating; polled " in before
    save_state(
        state,
        JobState(
            "t", "tag", "h", [Running(chunk, "f1", "batch_1", "validating", cancel_requested=True)]
        ),
    )
    after = invoke("status", str(cfg)).stdout
    assert "batch batch_1: cancelling; polled " in after
    listed = invoke("batches", "list", str(cfg)).stdout.splitlines()
    assert "cancelling" in listed[1] and listed[2].startswith("t: running batches last polled ")
    from runner.config.load import load_config

    (b,) = tracked_batches(load_config(cfg, environ={KEY_ENV: "k"}).jobs[0])
    assert b["state"] == "cancelling" and b["polled_at"] == pytest.approx(state.stat().st_mtime)


def test_an_unreadable_state_file_is_one_line_for_every_batch_command(tmp_path: Path) -> None:
    """A corrupt state.json: run and status said so in one line (exit 1), while ``batches
    list`` and ``batches show`` died with a traceback of that same message."""
    cfg = write_batch_config(tmp_path, make_urls(2), simulator={"batch_in_progress_s": 600})
    assert invoke(str(cfg), "--no-wait").exit_code == 75
    listed = invoke("batches", "list", str(cfg), "--json")
    batch_id = orjson.loads(listed.stdout)["batch_id"]
    (tmp_path / "out" / ".glmrun" / "j" / "state.json").write_text("{bad")
    for args in (
        [str(cfg)],
        ["status", str(cfg)],
        ["batches", "list", str(cfg)],
        ["batches", "list", str(cfg), "--json"],
        ["batches", "show", batch_id, "-c", str(cfg)],
    ):
        result = invoke(*args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("glmrun: ") and "state.json" in lines[0], args


def test_dry_run_says_a_run_would_be_refused(tmp_path: Path) -> None:
    """A job renamed while its batches run: status and the run itself said the run is refused,
    --dry-run showed a plan and an estimate as if it would go ahead."""
    cfg = write_batch_config(tmp_path, make_urls(2), simulator={"batch_in_progress_s": 600})
    assert invoke(str(cfg), "--no-wait").exit_code == 75
    write_batch_config(tmp_path, make_urls(2), job={"name": "renamed"})
    refused = invoke(str(cfg))
    assert refused.exit_code == 2 and "under the job name 'j'" in refused.stderr
    dry = invoke(str(cfg), "--dry-run")
    assert dry.exit_code == 0
    lines = dry.stdout.splitlines()
    assert lines[1] == "  a run is refused: " + refused.stderr.strip().removeprefix("glmrun: ")
