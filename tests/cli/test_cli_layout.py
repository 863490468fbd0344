"""The command-line package keeps its shape: no import cycle through ``runner.cli`` and a
``glmrun --help`` that does not load the HTTP stack."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

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
