"""The floors of the code (README, "Layout"): a module imports from its own floor and the ones
below only, no two modules import each other (directly or round a longer loop), and the ground
floor's `storage/` and `web/` import nothing else of footfall. Read from the source, every import
counted, also those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# From the ground up; "" is the package's own __init__.py (its version).
FLOORS = [
    {"", "storage", "web", "models", "config"},
    {"recognition", "dedup", "sync"},
    {"edge"},
    {"console", "hq", "cli", "tooling", "benchmarks", "__main__"},
]
# `python -m edge` from a checkout runs the command line: an entry point, not a library import.
ENTRY_POINTS = {"footfall.edge.__main__"}


def _modules() -> dict[str, Path]:
    """Every module of the package: the root's files and those of each folder that is a package."""
    packages = [d for d in REPO.iterdir() if (d / "__init__.py").is_file() and not d.name.startswith(".")]
    found: dict[str, Path] = {}
    for path in [*REPO.glob("*.py"), *(p for d in packages for p in d.rglob("*.py"))]:
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("footfall", *parts))] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The footfall modules `path` imports (a name imported from a package that is a module counts as that module)."""
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "footfall":
            base = node.module
            named |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
        elif isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names if alias.name.split(".")[0] == "footfall"}
    return {name for name in named if name in MODULES}


GRAPH = {module: _imports(path) - {module} for module, path in MODULES.items()}


def _floor(module: str) -> int:
    folder = module.split(".")[1] if "." in module else ""
    for level, folders in enumerate(FLOORS):
        if folder in folders:
            return level
    raise AssertionError(f"{module}: the folder {folder!r} has no floor; add it to FLOORS and to the README")


def test_every_folder_has_a_floor():
    for module in MODULES:
        _floor(module)


def test_no_module_imports_from_a_floor_above_its_own():
    upward = sorted(f"{module} -> {imported}" for module, imported_set in GRAPH.items() if module not in ENTRY_POINTS
                    for imported in imported_set if _floor(imported) > _floor(module))
    assert upward == []


@pytest.mark.parametrize("folder", ["storage", "web"])
def test_the_shared_ground_floor_packages_import_nothing_else_of_footfall(folder):
    prefix = f"footfall.{folder}"
    outside = sorted(f"{module} -> {imported}" for module, imported_set in GRAPH.items() if module.startswith(prefix)
                     for imported in imported_set if not imported.startswith(prefix))
    assert outside == []


def test_no_modules_import_each_other_round_a_loop():
    loops: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            loops.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for imported in sorted(GRAPH[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert loops == []


def test_the_reader_of_imports_sees_what_it_must():
    """The checks above would pass on a reader that found nothing: it finds the known imports."""
    assert "footfall.storage.sqlite" in GRAPH["footfall.dedup.gallery"]
    assert "footfall.edge.decisions" in GRAPH["footfall.edge.rules"]
    assert "footfall.web.passwords" in GRAPH["footfall.hq.dashboard"]
    assert "footfall.cli.main" in GRAPH["footfall.edge.__main__"]
    assert "footfall" in GRAPH["footfall.console.server"]   # `from footfall import __version__`
