"""Config loading: defaults, path resolution, the Secret, and a table of broken configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from runner.config import DEFAULT_BASE_URL, Secret, load_config
from runner.errors import ConfigError
from tests.support.configs import BASE_CONFIG, DELETE, ENV, KEY_ENV, write_config

REAL_URL = {"base_url": "https://open.bigmodel.cn/api/paas/v4"}
JOB = BASE_CONFIG["jobs"][0]

# (id, write_config keyword arguments, substrings the one-line message must contain)
BROKEN: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "unknown-key",
        {"limits": {"concurency": 4}},
        ["limits.concurency", "unknown key", "did you mean concurrency?"],
    ),
    ("unknown-section", {"limit": {"rpm": 5}}, ["limit: unknown key", "did you mean limits?"]),
    ("unknown-job-key", {"job": {"promt": "x"}}, ["jobs[0].promt", "did you mean prompt?"]),
    ("unknown-key-no-match", {"api": {"zzz": 1}}, ["api.zzz", "known keys:"]),
    (
        "wrong-type-int",
        {"limits": {"concurrency": "many"}},
        ["limits.concurrency", "expected", "'many'"],
    ),
    (
        "wrong-type-bool-for-int",
        {"retry": {"max_attempts": True}},
        ["retry.max_attempts", "expected an integer", "boolean"],
    ),
    (
        "wrong-type-float-for-int",
        {"retry": {"max_attempts": 2.5}},
        ["retry.max_attempts", "expected an integer"],
    ),
    ("wrong-type-number", {"api": {"timeout_s": "fast"}}, ["api.timeout_s", "expected a number"]),
    ("wrong-type-string", {"job": {"prompt": 42}}, ["jobs[0].prompt", "expected a string"]),
    ("wrong-type-mapping", {"api": ["simulator"]}, ["api", "expected a mapping", "a list"]),
    ("wrong-type-params", {"job": {"params": [1, 2]}}, ["jobs[0].params", "expected a mapping"]),
    (
        "wrong-literal-mode",
        {"job": {"mode": "realtme"}},
        ["jobs[0].mode", "realtime", "did you mean realtime?"],
    ),
    (
        "wrong-literal-concurrency",
        {"limits": {"concurrency": "atuo"}},
        ["limits.concurrency", "'auto'"],
    ),
    ("negative-concurrency", {"limits": {"concurrency": -1}}, ["limits.concurrency", ">= 1", "-1"]),
    ("zero-concurrency", {"limits": {"concurrency": 0}}, ["limits.concurrency", ">= 1"]),
    ("negative-rpm", {"limits": {"rpm": -5}}, ["limits.rpm", "> 0", "-5"]),
    ("zero-max-attempts", {"retry": {"max_attempts": 0}}, ["retry.max_attempts", "> 0"]),
    ("negative-timeout", {"api": {"timeout_s": -1}}, ["api.timeout_s", "> 0"]),
    ("negative-base-delay", {"retry": {"base_delay_s": -0.5}}, ["retry.base_delay_s", "> 0"]),
    ("negative-flush", {"run": {"flush_interval_s": -1}}, ["run.flush_interval_s", "> 0"]),
    ("grace-too-long", {"run": {"grace_s": 60}}, ["run.grace_s", "at most 10"]),
    ("missing-model", {"job": {"model": DELETE}}, ["jobs[0].model", "missing required key"]),
    ("missing-input", {"job": {"input": DELETE}}, ["jobs[0].input", "missing required key"]),
    ("missing-output", {"job": {"output": DELETE}}, ["jobs[0].output", "missing required key"]),
    ("missing-name", {"job": {"name": DELETE}}, ["jobs[0].name", "missing required key"]),
    ("empty-model", {"job": {"model": "  "}}, ["jobs[0].model", "must not be empty"]),
    ("bad-job-name", {"job": {"name": "a b"}}, ["jobs[0].name", "'a b'"]),
    (
        "duplicate-job-names",
        {"jobs": [JOB, {**JOB, "output": "out/other.jsonl"}]},
        ["jobs[1].name", "duplicate job name 't'"],
    ),
    (
        "duplicate-outputs",
        {"jobs": [JOB, {**JOB, "name": "u"}]},
        ["jobs[1].output", "two jobs write to"],
    ),
    (
        "output-is-the-input",
        {"job": {"output": "./urls.txt"}},
        ["jobs[0].output", "urls.txt is also jobs[0].input", "give it a file of its own"],
    ),
    (
        "output-is-another-jobs-input",
        {"jobs": [JOB, {**JOB, "name": "u", "input": "more.txt", "output": "urls.txt"}]},
        ["jobs[1].output", "is also jobs[0].input"],
    ),
    (
        "output-is-the-config",
        {"job": {"output": "config.yaml"}},
        ["jobs[0].output", "config.yaml is also the config file"],
    ),
    (
        "output-a-folder-with-a-slash",
        {"job": {"output": "results/"}},
        ["jobs[0].output", "results is a folder; name a file in it, such as", "results/t.jsonl"],
    ),
    (
        "api-as-a-string",
        {"raw": "api: simulator\njobs: [{name: a, input: i, output: o, model: m}]\n"},
        ["api: expected a mapping, found 'simulator' (write api: {base_url: simulator})"],
    ),
    (
        "a-dash-before-every-job-key",
        {"raw": "jobs:\n  - name: a\n  - input: in.txt\n  - output: o.jsonl\n  - model: m\n"},
        ["jobs: each '- ' starts a new job", "(name, input, output, model)"],
    ),
    ("empty-jobs", {"jobs": []}, ["jobs", "at least one job"]),
    ("no-jobs", {"jobs": DELETE}, ["jobs", "missing required key"]),
    ("jobs-not-a-list", {"jobs": {"name": "t"}}, ["jobs", "expected a list"]),
    (
        "params-model",
        {"job": {"params": {"model": "glm-4v"}}},
        ["jobs[0].params.model", "remove it from params"],
    ),
    (
        "params-messages",
        {"job": {"params": {"messages": []}}},
        ["jobs[0].params.messages", "remove it from params"],
    ),
    (
        "bad-base-url",
        {"api": {"base_url": "ftp://example.com"}},
        ["api.base_url", "http(s) URL", "ftp://"],
    ),
    (
        "bad-key-env-name",
        {"api": {"api_key_env": "NOT A NAME"}},
        ["api.api_key_env", "name of the environment variable", "not the key itself"],
    ),
    (
        "missing-key-env",
        {"api": {**REAL_URL, "api_key_env": "GLMRUN_TEST_UNSET_KEY"}},
        ["api.api_key_env", "GLMRUN_TEST_UNSET_KEY is not set", "simulator"],
    ),
    (
        "invalid-yaml",
        {"raw": "limits:\n  concurrency: [1, 2\njobs: []\n"},
        ["invalid YAML", "(line 3"],
    ),
    ("invalid-yaml-tab", {"raw": "api:\n\tbase_url: simulator\n"}, ["invalid YAML", "line 2"]),
    ("empty-file", {"raw": ""}, ["config is empty", "jobs"]),
    (
        "yaml-colon-in-a-value",
        {"raw": "jobs:\n  - name: a\n    prompt: Describe: the image\n"},
        ["(line 3, column 21)", "a value containing ': ' needs quotes"],
    ),
    (
        "yaml-indentation",
        {"raw": "api:\n  base_url: simulator\n timeout_s: 5\n"},
        ["(line 3, column 2)", "check this line's indentation"],
    ),
    (
        "yaml-tab-hint",
        {"raw": "api:\n\tbase_url: simulator\n"},
        ["a tab: YAML indents with spaces"],
    ),
    ("yaml-at-sign", {"raw": "api: {api_key_env: @KEY}\n"}, ["starting with @ needs quotes"]),
    ("yaml-open-quote", {"raw": "jobs: [{name: 'a}]\n"}, ["a quote that is never closed"]),
    (
        "yaml-open-brace",
        {"raw": "api: {base_url: simulator\n"},
        ["a { } or [ ] that is not closed"],
    ),
    # a key written in the wrong section: where it goes, not the keys of the section it is in
    (
        "key-in-another-section",
        {"api": {"base_url": "simulator", "concurrency": 8}},
        ["api.concurrency: unknown key (concurrency belongs under limits:)"],
    ),
    (
        "section-key-at-the-top",
        {"raw": "max_attempts: 3\njobs: [{name: a, input: i, output: o, model: m}]\n"},
        ["max_attempts: unknown key (max_attempts belongs under retry:)"],
    ),
    (
        "job-key-at-the-top",
        {"raw": "model: glm-4v\njobs: [{name: a, input: i, output: o, model: m}]\n"},
        ["model: unknown key (model is a key of each job, under jobs:)"],
    ),
    # a key one space off: named as such, not as a colon needing quotes or a missing '- '
    (
        "yaml-key-indented-deeper",
        {"raw": "jobs:\n  - name: a\n    input: x\n     output: y\n"},
        [
            "(line 4, column 12)",
            "(this line is indented more than the keys above it: align output with them)",
        ],
    ),
    (
        "yaml-continued-value-with-colon",  # no key at the start of the line: the colon hint
        {"raw": "jobs:\n  - name: a\n    prompt: Describe\n      the image: now\n"},
        ["(line 4, column 16)", "a value containing ': ' needs quotes"],
    ),
    (
        "yaml-key-indented-less",
        {"raw": "jobs:\n  - name: a\n    input: x\n  output: y\n"},
        [
            "(line 4, column 3)",
            "(this line is indented less than the keys above it: align output with them)",
        ],
    ),
    (
        "yaml-list-indent",
        {"raw": "jobs:\n  - name: a\n   - name: b\n"},
        ["(line 3, column 4)", "a list's items each start with '- ' in one column"],
    ),
    (
        "duplicate-section",
        {"raw": "limits: {concurrency: 4}\napi: {base_url: simulator}\nlimits: {rpm: 5}\n"},
        ["(line 3, column 1)", "'limits' appears twice", "first on line 1"],
    ),
    (
        "duplicate-job-key",
        {"raw": "jobs:\n  - name: a\n    prompt: x\n    prompt: y\n"},
        ["(line 4, column 5)", "'prompt' appears twice", "first on line 3"],
    ),
    (
        "key-env-with-dollar",
        {"api": {"api_key_env": "$ZHIPUAI_API_KEY"}},
        ["api.api_key_env", "without the $: ZHIPUAI_API_KEY"],
    ),
    (
        "base-url-with-space",
        {"api": {"base_url": "https://open.bigmodel.cn/api/paas/v4 "}},
        ["api.base_url", "whitespace"],
    ),
    (
        "base-url-is-the-chat-endpoint",
        {"api": {"base_url": "https://open.bigmodel.cn/api/paas/v4/chat/completions/"}},
        ["api.base_url", "the API root", "write 'https://open.bigmodel.cn/api/paas/v4'"],
    ),
    ("negative-max-wait", {"batch": {"max_wait_s": -5}}, ["batch.max_wait_s", ">= 0", "-5"]),
    (
        "batch-file-over-api-limit",
        {"batch": {"max_bytes_per_file": 200_000_000}},
        ["batch.max_bytes_per_file", "at most 104857600 (100 MB)"],
    ),
    (
        "quoted-integer",
        {"limits": {"concurrency": "8"}},
        ["limits.concurrency", "found '8'", "write 8 without quotes"],
    ),
    (
        "number-yaml-reads-as-text",
        {"raw": "limits: {concurrency: 1e3}\njobs: [{name: a, input: i, output: o, model: m}]\n"},
        ["limits.concurrency", "write 1000 without quotes"],
    ),
    (
        "quoted-float",
        {"retry": {"base_delay_s": "0.5"}},
        ["retry.base_delay_s", "write 0.5 without quotes"],
    ),
    ("top-level-list", {"raw": "- a\n- b\n"}, ["top level", "expected a mapping"]),
]


@pytest.mark.parametrize(
    ("kwargs", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_config_names_the_key(
    tmp_path: Path, kwargs: dict[str, Any], expected: list[str]
) -> None:
    """Every broken config raises one ConfigError line naming the file and the key path."""
    path = write_config(tmp_path, **kwargs)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message
    assert ENV[KEY_ENV] not in message


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    """Omitted sections take the documented defaults; input/output resolve against the config
    folder."""
    path = write_config(
        tmp_path,
        raw="jobs:\n  - {name: j, input: in.txt, output: o/j.jsonl, model: glm-4v-flash,"
        " prompt: p}\n",
    )
    config = load_config(path, environ={"ZHIPUAI_API_KEY": "k"})
    assert config.api.base_url == DEFAULT_BASE_URL
    assert config.api.api_key_env == "ZHIPUAI_API_KEY"
    assert config.api.timeout_s == 60.0
    assert config.limits.concurrency == 16 and config.limits.rpm is None
    assert config.retry.max_attempts == 5
    assert config.run.flush_interval_s == 0.5 and config.run.progress_interval_s == 10.0
    job = config.jobs[0]
    assert job.mode == "realtime" and job.params == {}
    assert job.input_path == tmp_path.resolve() / "in.txt"
    assert job.output_path == tmp_path.resolve() / "o" / "j.jsonl"


def test_tilde_in_input_and_output_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~/in.txt`` and ``~/o/j.jsonl`` mean the home folder, not a folder named ``~``."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    path = write_config(
        tmp_path,
        raw="jobs:\n  - {name: j, input: ~/in.txt, output: ~/o/j.jsonl, model: glm-4v-flash,"
        " prompt: p}\n",
    )
    job = load_config(path, environ={"ZHIPUAI_API_KEY": "k"}).jobs[0]
    assert job.input_path == home / "in.txt"
    assert job.output_path == home / "o" / "j.jsonl"


def test_key_is_a_secret(tmp_path: Path) -> None:
    """The key is read from the named variable and never shows in repr or str of the config."""
    path = write_config(tmp_path, api=REAL_URL)
    config = load_config(path, environ=ENV)
    assert isinstance(config.api_key, Secret)
    assert config.api_key.reveal() == ENV[KEY_ENV]
    assert ENV[KEY_ENV] not in repr(config) and ENV[KEY_ENV] not in str(config.api_key)


def test_simulator_needs_no_key(tmp_path: Path) -> None:
    """With base_url: simulator a missing key variable is fine."""
    config = load_config(write_config(tmp_path), environ={})
    assert config.api.is_simulator and not config.api_key


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ=ENV)


def test_unknown_job_name(tmp_path: Path) -> None:
    """Config.job() on an unknown name lists the jobs there are, and names a close one."""
    config = load_config(write_config(tmp_path), environ=ENV)
    with pytest.raises(ConfigError, match=r"no job named 'x' \(jobs: t\)"):
        config.job("x")
    named = dataclasses.replace(config.jobs[0], name="describe")
    with pytest.raises(ConfigError, match=r"no job named 'describ' \(did you mean describe\? "):
        dataclasses.replace(config, jobs=(named,)).job("describ")


def test_yaml_is_parsed_by_libyaml_when_pyyaml_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C parser reads the same safe types ~20x faster: 8 ms of every start-up otherwise."""
    import yaml

    from runner.config import load

    expected = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert issubclass(load.SAFE_LOADER, expected)
    used: list[str] = []

    class Recording(load.SAFE_LOADER):  # type: ignore[name-defined,misc]
        def __init__(self, stream: str) -> None:
            used.append("yes")
            super().__init__(stream)

    monkeypatch.setattr(load, "SAFE_LOADER", Recording)
    load_config(write_config(tmp_path), environ=ENV)
    assert used == ["yes"]


def test_a_key_pasted_into_api_key_env_is_never_shown(tmp_path: Path) -> None:
    """The key itself written where its variable's name belongs: the message says what to do
    and does not repeat the key (stderr ends up in CI logs)."""
    pasted = "0123456789abcdef0123456789abcdef.SeCrEtPaRt1234"
    path = write_config(tmp_path, api={"api_key_env": pasted})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    assert "export ZHIPUAI_API_KEY=" in str(info.value)
    assert pasted not in str(info.value) and "SeCrEt" not in str(info.value)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"limits": {"rpm": 100.5}}, "limits.rpm: expected an integer, found 100.5"),
        ({"api": {"timeout_s": 0}}, "api.timeout_s: expected a number > 0, found 0"),
        ({"limits": {"rpm": "100.5"}}, "limits.rpm: expected an integer, found '100.5'"),
        ({"retry": {"base_delay_s": "nan"}}, "retry.base_delay_s: expected a number, found 'nan'"),
    ],
    ids=[
        "optional-int-says-no-null",
        "zero-as-written",
        "no-unquote-hint-for-a-fraction",
        "no-unquote-hint-for-nan",
    ],
)
def test_messages_use_the_users_words(
    tmp_path: Path, sections: dict[str, Any], expected: str
) -> None:
    """No 'or null' for a key one simply leaves out, and 0 is shown as 0, not 0.0."""
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, **sections), environ=ENV)
    assert str(info.value).endswith(expected)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    """``<<: *anchor`` with a key written again after it is an override, not a duplicate."""
    raw = (
        "api: {base_url: simulator}\n"
        "jobs:\n"
        "  - &base {name: a, input: in.txt, output: a.jsonl, model: glm-4v-flash}\n"
        "  - {<<: *base, name: b, output: b.jsonl}\n"
    )
    config = load_config(write_config(tmp_path, raw=raw), environ=ENV)
    assert [(j.name, Path(j.output).name) for j in config.jobs] == [
        ("a", "a.jsonl"),
        ("b", "b.jsonl"),
    ]


def test_missing_config_suggests_the_file_that_is_there(tmp_path: Path) -> None:
    """``glmrun config.yml`` beside config.yaml: the message names the file that exists."""
    write_config(tmp_path)
    with pytest.raises(
        ConfigError, match=r"config file not found \(did you mean .*config\.yaml\?\)"
    ):
        load_config(tmp_path / "config.yml", environ=ENV)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "other.yaml", environ=ENV)
    assert "did you mean" not in str(info.value)


def test_warnings_name_the_key_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Warnings use the key paths errors use (``jobs[0].params...``), and an allowed folder
    that does not exist (a typo: every local file would be refused) is one of them."""
    path = write_config(
        tmp_path,
        job={"params": {"temprature": 0.5}},
        local_files={"allowed_dirs": ["imgs", "urls.txt"]},
    )
    with caplog.at_level("WARNING", logger="runner"):
        load_config(path, environ=ENV)
    messages = [r.getMessage() for r in caplog.records]
    assert any(": jobs[0].params.temprature: not a known" in m for m in messages), messages
    assert any(
        m.endswith(
            f"local_files.allowed_dirs[0]: {tmp_path / 'imgs'} does not exist; "
            "local files from it will be refused"
        )
        for m in messages
    ), messages
    assert any("allowed_dirs[1]" in m and "is not a folder" in m for m in messages), messages


def test_a_misspelt_price_row_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A price for 'glm-4v-flsh' while the job runs glm-4v-flash: said at start, since the
    summary would silently show no cost; a row another job uses (glm-4v-plus, close to job w's
    glm-4v-plus-0111) or for a model no job is near says nothing."""
    row = {"input_per_1k": 0.1, "output_per_1k": 0.1}
    jobs = [
        JOB,
        {**JOB, "name": "u", "model": "glm-4v-plus", "output": "out/u.jsonl"},
        {**JOB, "name": "w", "model": "glm-4v-plus-0111", "output": "out/w.jsonl"},
    ]
    prices = {"glm-4v-flsh": row, "glm-4v-plus": row, "glm-4.5v": row}
    path = write_config(tmp_path, jobs=jobs, cost={"prices": prices})
    with caplog.at_level("WARNING", logger="runner"):
        load_config(path, environ=ENV)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "cost.prices.glm-4v-flsh: no job uses this model (did you mean glm-4v-flash?); "
        "glm-4v-flash has no price, so its cost is not shown"
    ]


def test_a_field_plain_urls_do_not_have_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`{title}` in the prompt of a job reading one URL per line would be sent as written in
    every request: said at start, naming the key; fields a text item has, JSON braces, and
    a CSV job's columns say nothing."""
    jobs = [
        {**JOB, "prompt": 'Is this a {title}? Answer {"yes": true} for {url}, line {line_no}'},
        {**JOB, "name": "c", "input": "p.csv", "output": "out/c.jsonl", "prompt": "A {title}?"},
        {
            **JOB,
            "name": "m",
            "output": "out/m.jsonl",
            "prompt": "ok",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi {name}"}]}],
        },
    ]
    path = write_config(tmp_path, jobs=jobs)
    with caplog.at_level("WARNING", logger="runner"):
        load_config(path, environ=ENV)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "jobs[0].prompt: {title} is no field of a plain-text input (it has url, key, id, "
        "line_no), so it is sent as written",
        "jobs[2].messages[0].content[0].text: {name} is no field of a plain-text input (it has "
        "url, key, id, line_no), so it is sent as written",
    ]


def test_a_field_the_csv_has_no_column_for_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`{titel}` where the CSV has `title` would be sent as written in every request: said at
    start with the columns and the close one; columns, text fields and JSON braces are fine."""
    (tmp_path / "p.csv").write_text("sku,image,title\nA1,https://e.org/a.jpg,shoe\n")
    job = {**JOB, "input": "p.csv", "csv_url_column": "image"}
    jobs = [
        {**job, "prompt": 'A {titel} ({sku}) at {url}, line {line_no}? {"yes": true}'},
        {**job, "name": "c", "output": "out/c.jsonl", "prompt": "{title}", "system": "{colour}"},
    ]
    path = write_config(tmp_path, jobs=jobs)
    with caplog.at_level("WARNING", logger="runner"):
        load_config(path, environ=ENV)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "jobs[0].prompt: {titel} is no column of p.csv (its columns: sku, image, title; did you "
        "mean {title}?), so it is sent as written",
        "jobs[1].system: {colour} is no column of p.csv (its columns: sku, image, title), so it "
        "is sent as written",
    ]


@pytest.mark.parametrize(
    ("content", "refused"),
    [
        (b"1\n2\n3\n", True),
        (b"url,status\nhttps://e.org/a.jpg,ok\n", True),
        (b"", False),
        (b'{"url": "https://e.org/a.jpg", "status": "ok"}\nnot json\n', False),
        (b'{"url": "https://e.org/a.jpg", "sta', False),  # the first record, torn by a kill
        (b"\n\n" + b'{"url": "a", "status": "ok"}\n', False),
    ],
    ids=["numbers", "a-csv", "empty", "records-then-garbage", "torn-first-record", "blank-first"],
)
def test_an_output_that_is_not_glmruns_is_refused(
    tmp_path: Path, content: bytes, refused: bool
) -> None:
    """An existing file whose first line is no record (a CSV, a list) would get records
    appended: a config error naming it; a glmrun output, even torn, loads."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "t.jsonl").write_bytes(content)
    path = write_config(tmp_path)
    if not refused:
        load_config(path, environ=ENV)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    first = content.split(b"\n")[0].decode()
    assert str(info.value).endswith(
        f"jobs[0].output: {tmp_path / 'out' / 't.jsonl'} is not a glmrun output (its first "
        f"line, {first!r}, is not a JSON record) and records would be appended to it; "
        "name a new file"
    )


def test_a_folder_given_as_config_names_the_config_in_it(tmp_path: Path) -> None:
    """`glmrun config/`: the message names the YAML file in it, or lists a few."""
    path = write_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ=ENV)
    assert str(info.value) == f"{tmp_path}: a folder, not a config file (did you mean {path}?)"
    (tmp_path / "other.yml").write_text("jobs: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ=ENV)
    assert str(info.value).endswith(
        ": a folder, not a config file (its YAML files: config.yaml, other.yml)"
    )


def test_a_yaml_mark_past_the_line_gets_no_made_up_hint() -> None:
    """A problem marked past the end of its line names no character that is not there."""
    from types import SimpleNamespace

    from runner.config.yaml_hints import yaml_hint

    problem = "found character that cannot start any token"
    past = SimpleNamespace(line=0, column=9)
    assert yaml_hint(problem, None, "a: b\n", past) == ""
    assert yaml_hint(problem, None, "a: `b`\n", SimpleNamespace(line=0, column=3)) == (
        " (a value starting with ` needs quotes)"
    )
