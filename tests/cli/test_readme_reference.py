"""The README's reference parts, walked from the code: the exit-code table lists the codes
glmrun can end with; the config reference names every value a key takes and every key of an
inner mapping; every ``section.key`` the text names is a key; every ``GLMRUN_*`` variable the
code reads is named. Each fails on the next code change the README does not follow."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from tests.support.configs import config_sections

ROOT = Path(__file__).resolve().parents[2]


def _exit_table() -> dict[int, str]:
    """The rows of the table under "## Exit codes": each code (``130 / 143`` is two) -> row."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Exit codes", 1)[1].split("| code |", 1)[1].split("\n\n", 1)[0]
    rows: dict[int, str] = {}
    for line in table.splitlines()[2:]:
        rows.update((int(code), line) for code in re.findall(r"\d+", line.split("|")[1]))
    return rows


def _exit_codes_in_code() -> set[int]:
    """Every exit code glmrun can end with: the ``EXIT_*`` constants and the exception tree's
    codes, any integer handed to ``sys.exit``/``os._exit``/``exit_code=`` in ``runner/``, and a
    closed pipe's SIGPIPE death (141 in a shell)."""
    import ast
    import signal

    from runner import errors

    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    todo = [errors.GlmrunError]
    while todo:
        cls = todo.pop()
        codes.add(cls.exit_code)
        todo.extend(cls.__subclasses__())
    for path in (ROOT / "runner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("exit", "_exit"):
                values = node.args[:1]
            elif isinstance(node, (ast.Assign, ast.keyword)) and "exit_code" in ast.dump(node):
                values = [node.value]
            else:
                continue
            codes.update(
                v.value for v in values if isinstance(v, ast.Constant) and type(v.value) is int
            )
    return codes | {128 + signal.SIGPIPE}


def test_the_exit_code_table_has_every_code_glmrun_returns() -> None:
    """The table lists the codes the code can end with, no fewer and no more."""
    assert set(_exit_table()) == _exit_codes_in_code()


def _reference_row(section: str, key: str) -> str:
    """The line of ``key``'s row in the config reference table of ``section``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    reference = text.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    body = re.split(rf"### `{section}(?:\[\])?`\n", reference)[1].split("\n### ", 1)[0]
    (row,) = [line for line in body.splitlines() if re.match(rf"\| `{key}`", line)]
    return row


def _inside(tp: Any) -> tuple[list[Any], list[type]]:
    """The Literal values and the dataclasses a field's type allows, through unions, lists and
    dicts (``str | OutputSpec``, ``dict[str, PriceConfig]``, ``int | Literal['auto']``)."""
    import typing

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return [], [tp]
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp)), []
    values: list[Any] = []
    classes: list[type] = []
    for arg in typing.get_args(tp):
        more_values, more_classes = _inside(arg)
        values += more_values
        classes += more_classes
    return values, classes


def test_the_config_reference_names_every_value_and_inner_key() -> None:
    """A key that takes one of a few values names them all in its row, and a key that takes a
    mapping of its own (``output: {path, parse, schema, schema_file}``, a ``prices`` row)
    names each of its keys and their values: a new one there fails here until it is
    documented."""
    import typing

    sections = {k: v for k, v in config_sections().items() if k != "simulator"}
    checked = 0
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            values, classes = _inside(hints[f.name])
            for inner in classes:
                inner_hints = typing.get_type_hints(inner)
                for g in dataclasses.fields(inner):
                    values.append(g.name)
                    values += _inside(inner_hints[g.name])[0]
            words = set(re.findall(r"[\w.-]+", _reference_row(section, f.name)))
            missing = [v for v in values if str(v) not in words]
            assert not missing, (section, f.name, missing)
            checked += len(values)
    assert checked > 20


def test_every_environment_variable_glmrun_reads_is_in_the_readme() -> None:
    """``GLMRUN_SHARD``, ``GLMRUN_LOOP``: a variable the code reads and the README never names
    is a setting nobody can find."""
    names = {
        name
        for path in (ROOT / "runner").rglob("*.py")
        for name in re.findall(r"\bGLMRUN_[A-Z_]+\b", path.read_text(encoding="utf-8"))
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert names and not [name for name in names if f"`{name}" not in readme], names


def test_every_section_key_the_prose_names_is_a_key() -> None:
    """``batch.max_wait_s``, ``limits.concurrency: auto``: a key the text names in code style is
    one the schema has (the deliberate typo and misplaced key show the unknown-key messages)."""

    classes = {k: v for k, v in config_sections().items() if k != "jobs"}
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(rf"`(?:[^`]*?: )?({'|'.join(classes)})\.(\w+)\b(?!\.py)", text)
    wrong = {
        f"{section}.{key}"
        for section, key in named
        if key not in {f.name for f in dataclasses.fields(classes[section])}
    }
    assert len(named) > 20 and wrong == {"limits.concurency", "api.concurrency"}, wrong


def test_the_model_row_names_every_model_glmrun_knows() -> None:
    """``jobs[].model``'s row lists the names glmrun checks (the ones a Zhipu base_url takes)."""
    from runner.core.models import MODELS

    named = set(re.findall(r"`([\w.-]+)`", _reference_row("jobs", "model")))
    assert set(MODELS) <= named, set(MODELS) - named


def test_the_csv_default_columns_are_the_ones_export_writes() -> None:
    """``export --format csv`` without ``--columns``: the README lists its columns in order."""
    from runner.io.export import DEFAULT_COLUMNS

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"the CSV default is ([\w., \n]+?)\. ", text)
    assert listed, "no 'the CSV default is ...' sentence"
    assert [c.strip() for c in listed[1].replace("\n", " ").split(",")] == list(DEFAULT_COLUMNS)
