"""The unit folder starts no server: its modules import nothing from tests/support (where the
helpers that start Mosquitto, PostgreSQL, Chromium, the camera server or the daemon live) and ask
for none of the fixtures defined there, so `pytest -m "not slow"` stays fast and needs none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent
SUPPORT = UNIT.parent / "support"
SERVER_MODULES = ("support", "selenium", "footfall.tooling.local_broker", "footfall.tooling.local_postgres",
                  "footfall.tooling.local_hq", "footfall.tooling.rtsp_camera")


def fixtures_defined(source: str) -> set[str]:
    """The names of the functions a module decorates with `pytest.fixture` (called or not)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr == "fixture":
                    names.add(node.name)
    return names


SERVER_FIXTURES = set().union(*(fixtures_defined(p.read_text()) for p in SUPPORT.glob("*.py")))


def servers_used(source: str) -> list[str]:
    """What of SERVER_MODULES a module imports and which SERVER_FIXTURES its functions ask for."""
    def server_module(name: str) -> bool:
        return any(name == m or name.startswith(m + ".") for m in SERVER_MODULES)

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if server_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and server_module(node.module or ""):
            found.append(node.module or "")
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            found += [a.arg for a in node.args.args if a.arg in SERVER_FIXTURES]
    return found


@pytest.mark.parametrize("module", sorted(UNIT.glob("test_*.py")), ids=lambda p: p.name)
def test_a_unit_module_starts_no_server(module: Path) -> None:
    assert servers_used(module.read_text()) == [], f"{module.name} belongs in box/, hq/ or end_to_end/"


def test_the_fixtures_of_the_support_helpers_count_as_servers() -> None:
    assert {"broker", "postgres", "hq_db", "driver", "console", "hq_broker"} <= SERVER_FIXTURES


def test_the_check_sees_a_support_import_and_a_database_fixture() -> None:
    source = "from support.broker import Broker\nimport supportive\ndef test_x(hq_db):\n    pass\n"
    assert servers_used(source) == ["support.broker", "hq_db"]
