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
