"""The layout keeps itself: no import cycles, and each room imports only the rooms below it.

Imports are read from the source (``ast``), function-level ones included, so a cycle hidden
in a function body fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "runner"

# Which rooms (subpackages or top-level modules of runner/) each room may import.
BASE = {"", "errors", "clock", "logs", "bulk"}  # "" is runner/__init__ (the version)
ALLOWED: dict[str, set[str]] = {
    "": set(),
    "errors": set(),
    "clock": set(),
    "logs": set(),
    "bulk": set(),
    "core": BASE | {"core", "config.schema"},
    "config": BASE | {"config", "core", "io"},
    "io": BASE | {"io", "core", "config"},
    "api": BASE | {"api", "config", "core"},
    "engine": BASE | {"engine", "core", "config", "io", "api"},
    "app": BASE | {"app", "core", "config", "io", "api", "engine", "simulator"},
    "cli": BASE | {"cli", "app", "core", "config", "io", "api", "engine", "simulator"},
    "simulator": BASE | {"simulator", "config", "api"},
    "__main__": {"cli"},
}
# Third-party packages that only some rooms may import.
RESTRICTED = {"aiohttp": {"api", "simulator"}, "aiofiles": {"io"}}


def module_name(path: Path) -> str:
    rel = path.relative_to(RUNNER.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _typing_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (annotations only; never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skip


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports when it runs, at any depth of the file (absolute names)."""
    names: list[str] = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _typing_only(tree)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; runner/ uses absolute imports"
            base = node.module or ""
            names.append(base)
            # ``from runner.io import store`` imports the submodule runner.io.store
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    """runner module -> the runner modules it imports."""
    files = {module_name(p): p for p in RUNNER.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        edges[name] = {n for n in imports_of(path) if n in files and n != name}
    return edges


def room(module: str) -> str:
    """``runner.config.schema`` -> ``config`` (with ``config.schema`` as its own room name)."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def test_no_import_cycles() -> None:
    """The runner module graph (function-level imports included) has no cycle."""
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_rooms_import_only_the_rooms_below() -> None:
    """core imports no I/O, client, engine or app; io no engine; engines no app or cli..."""
    bad = []
    for module, targets in graph().items():
        src = room(module)
        if not src:
            continue
        for target in targets:
            dst = room(target)
            fine = ALLOWED[src]
            if dst == "config" and target != "runner.config.schema":
                ok = "config" in fine  # the loader, not just the shape
            else:
                ok = dst in fine or (dst == "config" and "config.schema" in fine)
            if not ok:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", sorted(RESTRICTED), ids=sorted(RESTRICTED))
def test_third_party_io_stays_in_its_rooms(package: str) -> None:
    """Only the client and the simulator import aiohttp; only io/ reads files with aiofiles."""
    bad = []
    for path in RUNNER.rglob("*.py"):
        module = module_name(path)
        used = any(n == package or n.startswith(package + ".") for n in imports_of(path))
        if used and room(module) not in RESTRICTED[package]:
            bad.append(module)
    assert not bad, f"{package} imported outside {sorted(RESTRICTED[package])}: {bad}"


def test_the_core_is_pure() -> None:
    """runner.core does no I/O of its own: no file, socket, subprocess or thread modules."""
    banned = {"aiohttp", "aiofiles", "socket", "subprocess", "threading", "asyncio", "fcntl"}
    bad = []
    for path in (RUNNER / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.split(".")[0] for n in imports_of(path)}
        if names & banned:
            bad.append(f"{path.name}: imports {sorted(names & banned)}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                bad.append(f"{path.name}:{node.lineno}: open()")
    assert not bad, "\n".join(bad)


def test_modules_stay_small_and_say_their_job() -> None:
    """Every module is under about 500 lines and opens with a docstring."""
    bad = []
    for path in RUNNER.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 520:
            bad.append(f"{module_name(path)}: {len(text.splitlines())} lines")
        if ast.get_docstring(ast.parse(text)) is None:
            bad.append(f"{module_name(path)}: no docstring")
    assert not bad, "\n".join(bad)
