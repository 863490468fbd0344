"""The README as a newcomer reads it, kept in step with the tool: each YAML example parses (no
key written twice), names only keys glmrun has, and loads as a config without a warning (a part
of one beside a plain job); the multi-image excerpt is what config/multi-image.yaml says; the
config reference lists every key with its default; the live display's, the dry run's and the
first real job's excerpts are what glmrun prints; every ``#link`` names a heading (the
reference parts walked from the code: test_readme_reference.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.config import Config, load_config
from runner.config.load import SAFE_LOADER
from tests.support.configs import config_sections

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
SECTIONS = {f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")}


def _first_line(block: str) -> str:
    return block.strip().splitlines()[0][:40]


def test_the_readme_has_its_yaml_examples() -> None:
    """A change to the fences would otherwise make every test below pass on nothing."""
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=_first_line)
def test_every_yaml_example_parses_with_known_sections(block: str) -> None:
    """Strict YAML (a key twice is an error) whose top-level keys are config sections."""
    data = yaml.load(block, Loader=SAFE_LOADER)
    assert isinstance(data, dict) and set(data) <= SECTIONS, data


def _inputs_for(job: dict[str, Any], folder: Path) -> None:
    """The job's input, as the text around the example describes it."""
    path = folder / job["input"]
    if path.suffix == ".csv":
        column = job.get("csv_url_column", "url")
        path.write_text(f"title,{column}\nshoe,https://e.org/s.jpg\n")
    elif path.suffix == ".jsonl":
        path.write_text('{"id": "p1", "url": "https://e.org/a.jpg", "meta": {"kind": "shoe"}}\n')
    else:
        path.write_text("https://e.org/a.jpg\n")


RUNNABLE = [b for b in BLOCKS if "jobs" in yaml.safe_load(b) and "messages:" not in b]


@pytest.mark.parametrize("block", RUNNABLE, ids=_first_line)
def test_every_yaml_example_with_jobs_loads_without_a_warning(
    tmp_path: Path, block: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Copied verbatim, with its input beside it and the key exported, the config loads."""
    path = tmp_path / "c.yaml"
    path.write_text(block, encoding="utf-8")
    for job in yaml.safe_load(block)["jobs"]:
        _inputs_for(job, tmp_path)
    for folder in yaml.safe_load(block).get("local_files", {}).get("allowed_dirs", []):
        (tmp_path / folder).mkdir()
    with caplog.at_level("WARNING", logger="runner"):
        config = load_config(path, environ={"ZHIPUAI_API_KEY": "k"})
    assert config.jobs and not caplog.records, [r.getMessage() for r in caplog.records]


PARTS = [b for b in BLOCKS if "jobs" not in yaml.safe_load(b)]


@pytest.mark.parametrize("block", PARTS, ids=_first_line)
def test_every_yaml_example_without_jobs_loads_beside_a_job(
    tmp_path: Path, block: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A part of a config (the ``api:`` for a standalone simulator) loads, with one plain job
    added, without a warning: its inner keys and values are ones glmrun takes."""
    path = tmp_path / "c.yaml"
    job = "jobs: [{name: d, input: u.txt, output: out/d.jsonl, model: glm-4v-flash}]\n"
    path.write_text(block + job, encoding="utf-8")
    (tmp_path / "u.txt").write_text("https://e.org/a.jpg\n")
    with caplog.at_level("WARNING", logger="runner"):
        load_config(path, environ={"ZHIPUAI_API_KEY": "k"})
    assert PARTS and not caplog.records, [r.getMessage() for r in caplog.records]


def test_the_multi_image_excerpt_is_the_example_file() -> None:
    """The README shows part of config/multi-image.yaml's job: every key it shows is the file's."""
    (excerpt,) = [yaml.safe_load(b)["jobs"][0] for b in BLOCKS if "messages:" in b]
    shipped = yaml.safe_load((ROOT / "config" / "multi-image.yaml").read_text())["jobs"][0]
    assert excerpt == {key: shipped[key] for key in excerpt}


def _reference_tables() -> dict[str, dict[str, str]]:
    """The tables under "## Config reference": section -> key -> its default cell."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    reference = text.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, dict[str, str]] = {}
    for heading, body in re.findall(r"### `(\w+)(?:\[\])?`\n(.*?)(?=\n### |\Z)", reference, re.S):
        rows = tables.setdefault(heading, {})
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 3 or not cells[0].startswith("`"):
                continue
            keys = re.findall(r"`([^`]+)`", cells[0])
            if len(keys) > 1:  # "`0.01`, `0`" or "none, none, `0`": one per key
                defaults = [d.strip().strip("`") for d in cells[1].split(",")]
                if len(defaults) == 1:  # one default for the row: "`0`" for six rates
                    defaults *= len(keys)
            else:
                defaults = re.findall(r"`([^`]*)`", cells[1])[:1] or [cells[1].split()[0]]
            rows.update(zip(keys, defaults, strict=True))
    return tables


def _documented(cell: str) -> Any:
    """A default as the README writes it: ``none``, ``required``, or a YAML value."""
    if cell in ("none", "required"):
        return {"none": None, "required": dataclasses.MISSING}[cell]
    return yaml.safe_load(cell)


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = f.default
    return out


def test_the_config_reference_names_every_key_with_its_default() -> None:
    """Each section's table lists exactly the keys the schema has, each with the default the
    schema gives it (the simulator's ``expire_tokens`` said "none" for 0, ``url_answers``
    named a field ``reasoning`` that the simulator refuses)."""

    tables = _reference_tables()
    classes = {f.name: f.type for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    sections = config_sections()
    assert set(sections) == set(classes) == set(tables)
    for name, cls in sections.items():
        defaults = _defaults(cls)
        rows = tables[name]
        assert set(rows) == set(defaults), (name, set(rows) ^ set(defaults))
        for key, cell in rows.items():
            assert _documented(cell) == defaults[key], (name, key, cell, defaults[key])


def _simulator_row(knob: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in text.splitlines() if line.startswith(f"| `{knob}`")]
    return row.split("|")[3]


def test_the_simulator_table_names_the_values_the_simulator_takes() -> None:
    """Fault names, answer fields and call kinds, as the simulator checks them."""
    from runner.simulator.faults import _FIELDS, CALL_KINDS
    from runner.simulator.settings import ANSWER_FIELDS, BATCH_LINE_FAULTS, URL_FAULTS

    faults = _simulator_row("url_faults").split(":", 1)[1]
    assert set(re.findall(r"`([^`]+)`", faults)[0].split()) == URL_FAULTS
    assert set(re.findall(r"`(\w+)`", _simulator_row("url_answers"))) == ANSWER_FIELDS
    assert set(re.findall(r"`(\w+)`", _simulator_row("batch_line_failure_rate"))) == (
        BATCH_LINE_FAULTS
    )
    control = _simulator_row("control_faults")
    fields = re.search(r"each `\{([^}]+)\}`", control)
    calls = re.search(r"`call` is `([^`]+)`", control)
    assert fields and set(fields[1].split(", ")) == _FIELDS
    assert calls and set(calls[1].split()) == CALL_KINDS


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_inside_the_readme_names_a_heading() -> None:
    """``[shards](#running-on-several-machines-shards)`` and the like land on a heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a '# comment' in a block is no heading
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links and not [link for link in links if link not in anchors], anchors


def _block_after(words: str) -> str:
    """The first ```text block after ``words`` in the README, without its newline."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split(words, 1)[1].split("```text\n", 1)[1].split("\n```", 1)[0]


class _Price:
    input_per_1k = 0.004
    output_per_1k = 0.004
    batch_discount = 0.5


def _stats(ok: int, errors: int, before: int, pending: int, elapsed_s: float, tokens: int) -> Any:
    from runner.core.stats import JobStats

    stats = JobStats("describe", total=pending, ok=ok, errors=errors, skipped=before, in_flight=16)
    stats.concurrency = 16
    stats.prompt_tokens, stats.completion_tokens = tokens - tokens // 50, tokens // 50
    stats.usage_by_route = {"realtime": [stats.prompt_tokens, stats.completion_tokens]}
    stats.finished = stats.started + elapsed_s  # the rate: done / elapsed
    return stats


def test_the_live_display_excerpts_are_what_a_terminal_shows() -> None:
    """The README's live lines, rendered by rich at 80 and 120 columns from their counts
    (the 80-column one showed a bar that the two columns left for ^C had pushed out), and the
    plain line without a terminal."""
    from rich.console import Console

    from runner.app.display import LiveView, progress_text

    resumed = _stats(140, 0, 400, 2600, 140 / 36.8, 143_920)
    failing = _stats(800, 13, 849, 2151, 10.0, 158_650)
    failing.error_codes = {"1301": 10, "429": 3}
    for width, stats, words in (
        (80, resumed, "The live display at 80 columns"),
        (120, failing, "and at 120 columns"),
    ):
        console = Console(record=True, width=width, force_terminal=True, color_system=None)
        console.print(LiveView(stats, _Price(), "CNY"))
        assert console.export_text().rstrip("\n") == _block_after(words)
    assert progress_text(failing, _Price(), "CNY") == _block_after("Without a terminal, every")


def test_the_models_table_is_what_glmrun_checks() -> None:
    """Each row of the README's models table against ``runner.core.models`` (the ``system``
    column was missing: glm-4v and glm-4v-plus refuse a system message at load)."""
    from runner.core.models import MODELS

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| model | images per request", 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    seen = set()
    for name, images, b64, video, thinking, max_tokens, system in rows:
        names = [name.split(" / ")[0]] + [
            name.split(" / ")[0].rsplit("-", 1)[0] + n for n in name.split(" / ")[1:]
        ]
        for model in names:
            caps = MODELS[model]
            seen.add(model)
            assert int(images) == caps.max_images, model
            assert b64.startswith("yes") == caps.base64, model
            assert (video != "no") == caps.video, model
            if caps.video:
                assert f"≤ {caps.video_max_mb} MB" in video, model
            assert thinking == caps.thinking, model
            assert max_tokens == (str(caps.max_output) if caps.max_output else "—"), model
            assert system.strip("*") == ("yes" if caps.system_message else "no"), model
    assert seen == set(MODELS)


def test_the_parameters_paragraph_names_what_params_knows() -> None:
    """Every parameter glmrun checks, sets itself or passes through silently is named (the SDK's
    extras were not: a user could not tell which ones draw no warning)."""
    from runner.core.params import EXTRAS, KNOWN, RESERVED

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = text.split("**Parameters**", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+)", paragraph))
    assert KNOWN | set(RESERVED) | EXTRAS <= named, (KNOWN | set(RESERVED) | EXTRAS) - named


def test_the_output_records_table_names_every_field() -> None:
    """The fields a record may carry (as ``export --columns`` knows them) are the table's rows
    (``truncated`` had no row of its own)."""
    from runner.core.records import FIELDS

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = {
        name
        for line in table.splitlines()[1:]
        for name in re.findall(r"`(\w+)`", line.split("|")[1])
    }
    assert rows == set(FIELDS)


def _codes(cell: str) -> set[str]:
    """The GLM codes a cell of the retries table names: ``1000–1005`` is six, ``(but 1312)``
    takes one out of a range; HTTP statuses (3 digits) are not codes."""
    out: set[str] = set()
    for low, high in re.findall(r"\b(\d{4})(?:–(\d{4}))?\b", re.sub(r"\(but \d+\)", "", cell)):
        out.update(str(n) for n in range(int(low), int(high or low) + 1))
    return out - set(re.findall(r"\(but (\d+)\)", cell))


def test_the_retries_table_sorts_each_code_as_classify_does() -> None:
    """Every GLM code ``classify`` knows is in the row of what it does to it (409 was missing
    from the transient statuses)."""
    from runner.core import retry

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| what | codes | action |", 1)[1].split("\n\n", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in table.splitlines()[2:]}
    stop = _codes(rows["the account or model is refused"])
    assert _codes(rows["rate / concurrency limit"]) == retry.THROTTLE_CODES
    assert _codes(rows["transient"]) | _codes(rows["duplicate request id"]) | {"500"} == set(
        retry.RETRY_CODES
    )
    assert _codes(rows["this item is refused"]) == retry.RECORD_CODES
    assert stop == retry.STOP_CODES
    assert (
        "408, 409" in rows["transient"]
        and "401, 403, 404, 434" in rows["the account or model is refused"]
    )


def test_the_dry_run_excerpt_is_what_the_config_example_prints(tmp_path: Path) -> None:
    """The README's config file, on the simulator, with 3,000 URLs and the two bad lines the
    excerpt names: ``--dry-run`` prints the excerpt, line for line."""
    from tests.cli.test_cli import invoke

    (config,) = [b for b in BLOCKS if b.startswith("api:\n  base_url: https://open")]
    config = config.replace("https://open.bigmodel.cn/api/paas/v4", "simulator", 1)
    (tmp_path / "images").mkdir()
    (tmp_path / "c.yaml").write_text(config, encoding="utf-8")
    urls = [f"https://img.example.com/{i}.jpg" for i in range(1, 3001)]
    lines = [*urls, "ftp://x.example/a.jpg", "not a url"]
    (tmp_path / "urls.txt").write_text("\n".join(lines) + "\n")
    result = invoke(str(tmp_path / "c.yaml"), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.rstrip("\n") == _block_after("`--dry-run` sends nothing")


def test_the_first_real_job_is_checked_as_the_readme_shows(tmp_path: Path) -> None:
    """A newcomer's config from "Your first real job", beside 100 URLs and without a key:
    ``--dry-run`` prints the README's excerpt, line for line."""
    import textwrap

    from tests.cli.test_cli import invoke

    (block,) = [b for b in BLOCKS if "Describe this picture in one sentence" in b]
    (tmp_path / "my.yaml").write_text(textwrap.dedent(block), encoding="utf-8")
    urls = [f"https://img.example.com/p/{i}.jpg" for i in range(1, 101)]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    result = invoke(str(tmp_path / "my.yaml"), "--dry-run", env={"ZHIPUAI_API_KEY": ""})
    assert result.exit_code == 0, result.stderr
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split("--dry-run` checks it", 1)[1].split("```text\n", 1)[1]
    excerpt = textwrap.dedent(after.split("```", 1)[0]).rstrip()
    assert result.stdout.rstrip("\n") == excerpt
