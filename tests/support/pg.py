"""A throw-away PostgreSQL for the HQ tests: one cluster per test session, one fresh database per test.

Tests get the fixtures through the `pytest_plugins` of tests/conftest.py; they skip, naming the reason, when PostgreSQL is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from footfall.tooling.local_postgres import LocalPostgres, unavailable_reason


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = LocalPostgres(durable=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hq_db(postgres: LocalPostgres) -> Iterator[str]:
    """The URL of an empty, migrated database of its own."""
    with postgres.database() as url:
        yield url
