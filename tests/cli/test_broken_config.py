"""Nasty configs at the command line: exit 2, one line on stderr, never a traceback."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import main

GOOD_JOB = (
    "jobs:\n  - {name: a, input: in.txt, output: out.jsonl, model: glm-4v-flash, prompt: p}\n"
)


def _text(body: str) -> Callable[[Path], Path]:
    return _bytes(body.encode())


def _bytes(body: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "c.yaml"
        path.write_bytes(body)
        return path

    return make


def _directory(tmp: Path) -> Path:
    (tmp / "conf.d").mkdir()
    return tmp / "conf.d"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain" / "c.yaml"


CASES = [
    ("yaml-list", _text("- jobs\n- api\n"), "top level: expected a mapping, found a list"),
    ("yaml-scalar", _text("just a string\n"), "expected a mapping"),
    ("empty", _text(""), "the config is empty"),
    ("only-comments", _text("# nothing here\n"), "the config is empty"),
    ("binary", _bytes(bytes(range(256)) * 4), "the file is not UTF-8 (byte 128); save it as"),
    ("nul-bytes", _bytes(b"jobs: []\x00\x00\n"), "invalid YAML"),
    ("utf16", _bytes(GOOD_JOB.encode("utf-16")), "the file is UTF-16 (it starts with a UTF-16"),
    ("tabs", _text("api:\n\tbase_url: simulator\n"), "invalid YAML"),
    ("unclosed", _text("api: {base_url: simulator\n"), "invalid YAML"),
    ("directory", _directory, "conf.d: a folder, not a config file"),
    ("missing", lambda tmp: tmp / "nope.yaml", "config file not found"),
    ("parent-is-a-file", _under_a_file, "cannot read config"),
    ("jobs-a-mapping", _text("jobs: {name: a}\n"), "jobs: expected a list"),
    ("jobs-empty", _text("jobs: []\n"), "jobs: expected at least one job"),
    ("job-missing-key", _text("jobs:\n  - {name: a, input: in.txt}\n"), "missing required key"),
    ("typo-key", _text("limits: {concurency: 4}\n" + GOOD_JOB), "did you mean concurrency?"),
    (
        "grace-too-long",
        _text("run: {grace_s: 60}\n" + GOOD_JOB),
        "run.grace_s: expected at most 10",
    ),
    ("negative-timeout", _text("api: {timeout_s: -1}\n" + GOOD_JOB), "api.timeout_s"),
    ("bool-as-int", _text("limits: {concurrency: yes}\n" + GOOD_JOB), "limits.concurrency"),
    ("huge-int", _text("limits: {concurrency: 1e999}\n" + GOOD_JOB), "limits.concurrency"),
    (
        "anchors-bomb",
        _text("a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n" + GOOD_JOB),
        "unknown key",
    ),
    (
        "python-tag",
        _text("api: !!python/object/apply:os.system ['true']\n" + GOOD_JOB),
        "invalid YAML",
    ),
    (
        "no-api-key",
        _text(
            "api: {base_url: 'https://open.bigmodel.cn/api/paas/v4', "
            "api_key_env: GLMRUN_TEST_UNSET_KEY}\n" + GOOD_JOB
        ),
        "GLMRUN_TEST_UNSET_KEY is not set",
    ),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    """Each broken config fails before anything is sent, with one glmrun: line naming it."""
    path = make(tmp_path)
    result = CliRunner().invoke(main, [str(path)], env={"GLMRUN_TEST_UNSET_KEY": None})
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glmrun: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert str(path.name) in lines[0] or "conf.d" in lines[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_exits_2(tmp_path: Path) -> None:
    """A config without read permission is one line and exit 2."""
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_JOB)
    path.chmod(0)
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 2 and "cannot read config" in result.stderr


def test_status_of_a_broken_config_exits_2_too(tmp_path: Path) -> None:
    """glmrun status reports config errors the same way as run."""
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    result = CliRunner().invoke(main, ["status", str(path)])
    assert result.exit_code == 2 and result.stderr.startswith("glmrun: ")


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: None, "in.txt: input file not found (a job's input is relative to the config"),
        (lambda tmp: (tmp / "in.txt").mkdir(), "in.txt: the input is a folder; name a file"),
        # Windows PowerShell's > writes UTF-16: every line would be an invalid_input record
        (
            lambda tmp: (tmp / "in.txt").write_bytes("https://e.test/a.jpg\r\n".encode("utf-16")),
            "in.txt: the file is UTF-16 (it starts with a UTF-16 byte order mark, as Windows",
        ),
    ],
    ids=["missing", "a-folder", "utf16"],
)
@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_an_input_that_is_not_a_file_exits_2(
    tmp_path: Path, make_input: Callable[[Path], None], message: str, mode: str
) -> None:
    """A missing input, a folder named as input, or a UTF-16 one is one line saying what to
    fix, on the streamed (realtime) and the counted (batch) route alike; no record written."""
    make_input(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text("api: {base_url: simulator}\n" + GOOD_JOB.replace("prompt: p", f"mode: {mode}"))
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not list(tmp_path.rglob("*.jsonl"))


def test_an_output_that_is_a_folder_exits_2_naming_a_file_to_use(tmp_path: Path) -> None:
    """`output: results` where results/ is a folder: a config error that says what to write."""
    (tmp_path / "in.txt").write_text("https://e.org/a.jpg\n")
    (tmp_path / "results").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text("api: {base_url: simulator}\n" + GOOD_JOB.replace("out.jsonl", "results"))
    for command in ([str(path)], ["status", str(path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
        assert result.stderr == (
            f"glmrun: {path}: jobs[0].output: {tmp_path / 'results'} is a folder; name a file "
            f"in it, such as {tmp_path / 'results' / 'a'}.jsonl\n"
        )


def test_an_output_under_a_file_exits_2_before_any_command_starts(tmp_path: Path) -> None:
    """`output: in.txt/out/a.jsonl` (a file where its folder should be): run, --dry-run,
    status and export say so in one line and exit 2, instead of exit 1 over a lock file."""
    (tmp_path / "in.txt").write_text("https://e.org/a.jpg\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        "api: {base_url: simulator}\n" + GOOD_JOB.replace("out.jsonl", "in.txt/out/a.jsonl")
    )
    commands = ([str(path)], [str(path), "--dry-run"], ["status", str(path)], ["export", str(path)])
    for command in commands:
        result = CliRunner().invoke(main, [*command])
        assert result.exit_code == 2, (command, result.stdout, result.stderr, result.exception)
        assert result.stderr == (
            f"glmrun: {path}: jobs[0].output: {tmp_path / 'in.txt'} is a file, so the output's "
            f"folder {tmp_path / 'in.txt' / 'out'} cannot be made; name an output in a folder\n"
        )
    assert (tmp_path / "in.txt").read_text() == "https://e.org/a.jpg\n"


def test_an_output_folder_without_write_permission_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output's folder cannot be written (EACCES; faked, since the tests may run as root):
    one line naming the folder and what to do, exit 2, nothing sent."""
    import runner.io.store as store

    real_open = os.open

    def refuse(file: str, flags: int, mode: int = 0o777) -> int:
        if str(file).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(file, flags, mode)

    monkeypatch.setattr(store.os, "open", refuse)
    (tmp_path / "in.txt").write_text("https://e.org/a.jpg\n")
    path = tmp_path / "c.yaml"
    path.write_text("api: {base_url: simulator}\n" + GOOD_JOB)
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr == (
        f"glmrun: {tmp_path}: cannot write in the output's folder (Permission denied); "
        "make it writable or choose another output\n"
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_a_misspelt_simulator_knob_fails_the_dry_run_as_it_fails_the_run(tmp_path: Path) -> None:
    """``simulator: {max_inflight: 3}`` with ``base_url: simulator``: ``--dry-run`` said all was
    well and the run then stopped on it; both now fail with the same line."""
    (tmp_path / "in.txt").write_text("https://e.org/a.jpg\n")
    path = tmp_path / "c.yaml"
    path.write_text("api: {base_url: simulator}\nsimulator: {max_inflight: 3}\n" + GOOD_JOB)
    for args in ([str(path), "--dry-run"], [str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stderr == (
            f"glmrun: {path}: simulator.max_inflight: unknown simulator setting "
            "(did you mean max_in_flight?)\n"
        ), args
