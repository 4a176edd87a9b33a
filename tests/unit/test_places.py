"""The unit folder starts no server: its modules import none of the helpers that start one and ask
for none of the fixtures that do, so `pytest -m "not slow"` stays fast and needs no Mosquitto,
PostgreSQL, browser or camera server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent
SERVER_MODULES = ("support.broker", "support.pg", "support.unit_sandbox", "selenium",
                  "footfall.tooling.local_broker", "footfall.tooling.local_postgres",
                  "footfall.tooling.local_hq", "footfall.tooling.rtsp_camera")
SERVER_FIXTURES = {"postgres", "hq_db", "broker", "browser", "driver"}


def servers_used(source: str) -> list[str]:
    """What of SERVER_MODULES a module imports and which SERVER_FIXTURES its functions ask for."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(SERVER_MODULES)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(SERVER_MODULES):
            found.append(node.module or "")
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            found += [a.arg for a in node.args.args if a.arg in SERVER_FIXTURES]
    return found


@pytest.mark.parametrize("module", sorted(UNIT.glob("test_*.py")), ids=lambda p: p.name)
def test_a_unit_module_starts_no_server(module: Path) -> None:
    assert servers_used(module.read_text()) == [], f"{module.name} belongs in box/, hq/ or end_to_end/"


def test_the_check_sees_a_broker_import_and_a_database_fixture() -> None:
    source = "from support.broker import Broker\ndef test_x(hq_db):\n    pass\n"
    assert servers_used(source) == ["support.broker", "hq_db"]
