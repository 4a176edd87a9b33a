"""Specification of the store helper: a store's file is opened, migrated and read in one step,
a file it cannot read is refused by name and left closed, and closing is once and for good."""

from __future__ import annotations

import sqlite3
import stat
import threading

import pytest

from footfall.storage.sqlite import StorageError, StoreFile, open_store, transaction

STEPS = ["CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"]


def test_a_new_file_is_private_and_migrated(tmp_path):
    path = tmp_path / "state" / "things.db"
    conn = open_store(path, STEPS, "the things")
    with transaction(conn):
        conn.execute("INSERT INTO things (name) VALUES ('a')")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_without_a_path_the_store_lives_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conn = open_store(None, STEPS, "the things")
    conn.execute("INSERT INTO things (name) VALUES ('a')")
    assert conn.execute("SELECT count(*) FROM things").fetchone()[0] == 1
    conn.close()
    assert list(tmp_path.iterdir()) == []


def test_load_reads_the_migrated_file(tmp_path):
    path = tmp_path / "things.db"
    conn = open_store(path, STEPS, "the things")
    conn.execute("INSERT INTO things (name) VALUES ('a'), ('b')")
    conn.close()
    seen: list[str] = []
    conn = open_store(path, STEPS, "the things",
                      lambda c: seen.extend(n for (n,) in c.execute("SELECT name FROM things ORDER BY id")))
    assert seen == ["a", "b"]
    conn.close()


def test_a_file_that_cannot_be_read_is_refused_naming_it_and_what_it_holds(tmp_path):
    path = tmp_path / "things.db"
    open_store(path, STEPS, "the things").close()
    held: list[sqlite3.Connection] = []

    def load(conn: sqlite3.Connection) -> None:
        held.append(conn)
        conn.execute("SELECT missing_column FROM things")

    with pytest.raises(StorageError, match=r"things\.db: cannot read the things \(corrupt\?\): .*missing_column"):
        open_store(path, STEPS, "the things", load)
    with pytest.raises(sqlite3.ProgrammingError):  # closed before the error left
        held[0].execute("SELECT 1")


def test_a_foreign_file_is_refused_by_name(tmp_path):
    path = tmp_path / "things.db"
    path.write_bytes(b"not a database at all " * 300)
    with pytest.raises(StorageError, match="things.db: not a usable SQLite database"):
        open_store(path, STEPS, "the things")


def test_a_load_that_refuses_closes_the_file_and_keeps_its_error(tmp_path):
    held: list[sqlite3.Connection] = []

    def load(conn: sqlite3.Connection) -> None:
        held.append(conn)
        raise StorageError("things.db: made by another model")

    with pytest.raises(StorageError, match="made by another model"):
        open_store(tmp_path / "things.db", STEPS, "the things", load)
    with pytest.raises(sqlite3.ProgrammingError):
        held[0].execute("SELECT 1")


class Things(StoreFile):
    _name = "the things"

    def __init__(self, path) -> None:
        self._lock = threading.Lock()
        self._conn = open_store(path, STEPS, "the things")
        self.released = 0

    def _release(self) -> None:
        self.released += 1
        assert self._conn is not None
        self._conn.execute("SELECT 1")  # the file is still open here

    def count(self) -> int:
        self._check_open()
        assert self._conn is not None
        return self._conn.execute("SELECT count(*) FROM things").fetchone()[0]


def test_a_store_closes_once_and_refuses_use_afterwards(tmp_path):
    with Things(tmp_path / "things.db") as things:
        assert things.count() == 0
    things.close()
    assert things.released == 1
    with pytest.raises(RuntimeError, match="the things is closed"):
        things.count()
