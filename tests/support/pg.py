"""A throw-away PostgreSQL for the HQ tests: one cluster per test session, one fresh database per test.

Tests get the fixtures through tests/conftest.py (`from support.pg import hq_db, postgres`);
they skip, naming the reason, when PostgreSQL is not installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from footfall.hq.migrate import migrate
from footfall.tooling.local_postgres import LocalPostgres, unavailable_reason

_names = itertools.count()


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
    name = f"hq_test_{next(_names)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
