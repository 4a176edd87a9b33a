"""Versioned schema migrations: `schema/NNNN_name.sql`, applied in order, each recorded once.

Each file runs in its own transaction together with its row in `schema_migrations`, so a
failed migration leaves nothing half done. An advisory lock keeps two collectors starting at
the same time from applying the same file twice.
"""

from __future__ import annotations

import re
from importlib import resources

import psycopg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x666F6F74  # arbitrary, constant: "foot"


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every shipped migration, in version order."""
    found = []
    for entry in resources.files("footfall.hq").joinpath("schema").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {[n for _, n, _ in found]}")
    return found


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied (oldest first)."""
    applied: list[str] = []
    conn.autocommit = False
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(name)
    conn.commit()
    return applied
