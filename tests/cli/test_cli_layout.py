"""The command-line package keeps its shape: no import cycle through ``runner.cli``, a
``glmrun --help`` that does not load the HTTP stack, and a README that names every option of
every command with its default and choices."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.core import UNSET
from click.testing import CliRunner

import runner

RUNNER = Path(runner.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(RUNNER.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file, function bodies too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_cli(name: str) -> bool:
    return name == "runner.cli" or name.startswith("runner.cli.")


def test_only_the_entry_point_imports_the_cli() -> None:
    """Outside runner/cli only ``python -m runner`` imports it, so a module the CLI imports
    (lazily or not) can never import the CLI back."""
    importers = {
        _module_name(path)
        for path in RUNNER.rglob("*.py")
        if not _is_cli(_module_name(path)) and any(_is_cli(n) for n in _imports(path))
    }
    assert importers == {"runner.__main__"}


def test_cli_modules_import_each_other_without_a_cycle() -> None:
    """Commands import the shared helpers and the group imports the commands, never back."""
    paths = {_module_name(p): p for p in (RUNNER / "cli").glob("*.py")}
    graph = {
        name: {n for n in _imports(path) if n in paths} - {name} for name, path in paths.items()
    }
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle


def test_help_does_not_load_aiohttp() -> None:
    """The commands import the aiohttp-based app modules when they run, not at start-up."""
    code = "import sys, runner.cli.main; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_lists_each_command_as_its_own_help_starts() -> None:
    """``glmrun --help`` imports no command; its summaries are the commands' own (at 45 chars)."""
    from runner.cli.main import SUMMARIES, load_command, summary_of

    for name in SUMMARIES:
        command = load_command(name)
        assert command is not None and command.name in (name, f"{name}_cmd", None)
        assert command.get_short_help_str(45) == summary_of(name, 45), name


def test_the_command_list_is_whole_at_80_columns() -> None:
    """``glmrun`` at an 80-column terminal lists each command with its whole first sentence:
    click cuts a longer one with "..." (bench, export and simulate were cut mid-clause)."""
    from runner.cli.main import SUMMARIES, main

    result = CliRunner().invoke(main, ["--help"], terminal_width=80)
    commands = result.output.split("Commands:", 1)[1].splitlines()
    listed = [line for line in commands if line.strip()]
    assert len(listed) == len(SUMMARIES)
    for line in listed:
        assert not line.rstrip().endswith("..."), line
        assert line.rstrip().endswith("."), line


def test_the_batches_command_list_is_whole_at_80_columns() -> None:
    """``glmrun batches --help`` lists list, cancel and show each with a whole sentence (their
    docstrings' first sentences were cut with "..." mid-word)."""
    from runner.cli.main import main

    result = CliRunner().invoke(main, ["batches", "--help"], terminal_width=80)
    listed = [line for line in result.output.split("Commands:", 1)[1].splitlines() if line]
    assert [line.split()[0] for line in listed] == ["cancel", "list", "show"]
    for line in listed:
        assert line.rstrip().endswith(".") and not line.rstrip().endswith("..."), line


def test_help_loads_click_and_nothing_heavy() -> None:
    """No command module, config loader, asyncio, yaml or numpy for ``glmrun --help``."""
    code = (
        "import sys; sys.argv = ['glmrun', '--help']\n"
        "import runner.cli.main as m\n"
        "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
        "heavy = ['runner.cli.common', 'runner.cli.run', 'asyncio', 'yaml', 'numpy', 'aiohttp']\n"
        "print([n for n in heavy if n in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _command_lines() -> dict[str, str]:
    """The README's synopsis block under "## Commands": command words -> its line."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("## Commands", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    out = {}
    for line in block.splitlines():
        if line.split()[1].startswith("-"):  # glmrun --version: the group's own options
            out["glmrun"] = line
            continue
        words = [w for w in line.split()[1:] if re.fullmatch(r"[a-z]+", w)]
        name = " ".join(words[:2] if words[:1] == ["batches"] else words[:1])
        if name and name not in ("same",):
            out[name] = line
    return out


def _commands() -> dict[str, click.Command]:
    from runner.cli.main import SUMMARIES, load_command, main

    out: dict[str, click.Command] = {"glmrun": main}
    for name in SUMMARIES:
        command = load_command(name)
        assert command is not None
        if isinstance(command, click.Group):
            for sub, cmd in command.commands.items():
                out[f"{name} {sub}"] = cmd
        else:
            out[name] = command
    return out


def test_readme_synopsis_names_every_option_of_every_command() -> None:
    """The README's command list is what ``--help`` offers: the same options, no more, no less
    (``bench``'s -q/-v/--log-format were missing from it, and ``glmrun --version``)."""
    lines = _command_lines()
    commands = _commands()
    assert set(lines) == set(commands)
    for name, command in commands.items():
        options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
        shown = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", lines[name]))
        known = {"-h", "--help"} | {opt for p in options for opt in [*p.opts, *p.secondary_opts]}
        assert shown <= known, (name, sorted(shown - known))
        missing = [p.opts[0] for p in options if not shown & {*p.opts, *p.secondary_opts}]
        assert not missing, (name, missing)


def test_every_option_says_what_it_does_and_takes() -> None:
    """Every option has help text, and one that takes a value names it (``N``, ``DIR``), not
    click's type (``INTEGER RANGE``, ``TEXT``)."""
    for name, command in _commands().items():
        ctx = click.Context(command)
        for p in command.params:
            if not isinstance(p, click.Option) or p.name == "help":
                continue
            assert p.help, (name, p.name)
            record = p.get_help_record(ctx)
            assert record is not None
            assert not re.search(r"INTEGER|TEXT|DIRECTORY|FLOAT", record[0]), (name, record[0])


def _sections_on(command: str) -> str:
    """The README's sections whose heading names ``command``'s first word (``### status``,
    ``### Finding the number: `glmrun bench```)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    word = command.split()[0]
    parts = re.split(r"^(#+ .*)$", text, flags=re.M)
    return "\n".join(
        body for heading, body in zip(parts[1::2], parts[2::2], strict=True) if word in heading
    )


def _shown_default(option: click.Option, line: str, readme: str) -> bool:
    """The README gives ``option``'s default: in the synopsis as ``[--port 8765]`` or first of
    its choices (``--log-format text|json``, ``--refine|--no-refine``), or in the text as
    ``--limit N`` (default 5)."""
    default = str(option.default).lower()
    for opt in option.opts:
        if re.search(rf"\[{re.escape(opt)} {re.escape(default)}[]|]", line):
            return True
        if re.search(rf"`{re.escape(opt)}[^`]*` \(default {re.escape(default)}[),;]", readme):
            return True
    if option.secondary_opts:  # a flag pair: the default is the one written first
        first = option.opts[0] if option.default else option.secondary_opts[0]
        return bool(re.search(rf"\[{re.escape(first)}\|", line))
    return False


def test_readme_gives_every_option_default_and_choice() -> None:
    """Each option with a default has it in the README as ``--help`` has it, and an option that
    takes one of a few values lists exactly those (``batches show -c`` defaulted to
    config.yaml without the README saying so; ``export --format`` named no default)."""
    lines = _command_lines()
    for name, command in _commands().items():
        readme = _sections_on(name)
        for p in command.params:
            if not isinstance(p, click.Option) or p.name in ("help", "version"):
                continue
            if isinstance(p.type, click.Choice):
                (shown,) = re.findall(rf"{re.escape(p.opts[0])} ([\w|]+)", lines[name])
                assert set(shown.split("|")) == set(p.type.choices), (name, p.opts[0], shown)
            if p.is_flag and not p.secondary_opts:
                continue
            if p.default is None or p.default is UNSET:
                continue
            assert _shown_default(p, lines[name], readme), (name, p.opts[0], p.default)


def test_help_at_80_columns_never_breaks_a_word_at_its_hyphen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each ``--help`` as an 80-column terminal shows it (click leaves two columns free): no
    line ends inside a hyphenated word (``--latest-`` / ``only``, ``OUTPUT.shard-I-`` /
    ``of-N.jsonl`` were split)."""
    monkeypatch.setenv("COLUMNS", "80")
    for name, command in _commands().items():
        text = command.get_help(click.Context(command, info_name=name))
        assert max(map(len, text.splitlines())) <= 78, name
        broken = [line for line in text.splitlines() if re.search(r"\w-$", line)]
        assert not broken, (name, broken)


def test_readme_says_what_every_option_does() -> None:
    """Beyond the synopsis, each option of each command is named in the text about that
    command (its sections, or the note under the synopsis on options several share):
    ``simulate --host`` was only in the synopsis."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    shared = text.split("## Commands", 1)[1].split("```", 2)[2].split("\n### ", 1)[0]
    for name, command in _commands().items():
        if name == "glmrun":  # --version: the synopsis line says it all
            continue
        prose = shared + _sections_on(name)
        for p in command.params:
            if not isinstance(p, click.Option) or p.name == "help":
                continue
            opts = [*p.opts, *p.secondary_opts]
            named = [o for o in opts if re.search(rf"`[^`]*{re.escape(o)}\b(?!-)[^`]*`", prose)]
            assert named, (name, opts)
