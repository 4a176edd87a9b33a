"""The SQLite layer of every store: private modes, WAL, secure deletion, versioned schemas.

Each store (gallery, visit window, counts, appointments, outbox) owns one file
and its tables; `user_version` is per file, so two stores never share one
(their migration lists would clash). `open_store` opens, migrates and loads a
store's file with one error form; `StoreFile` gives a store `close()` and `with`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Self

FILE_MODE = 0o600
DIR_MODE = 0o700
_SIDE_FILES = ("-wal", "-shm")


class StorageError(Exception):
    """A state file is unreadable, corrupt, or was written by something else; the message names it."""


def db_file(conn: sqlite3.Connection) -> str:
    """The path of the main database file of `conn` ("" for an in-memory database)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file
    return ""


def _private_file(path: Path) -> None:
    # Created 0600 before SQLite sees it, so there is no moment when it is readable by others.
    fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    os.close(fd)
    os.chmod(path, FILE_MODE)


def _private_side_files(path: Path) -> None:
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, FILE_MODE)


def open_db(path: Path) -> sqlite3.Connection:
    """Open (or create) a private SQLite file for biometric state.

    The parent directory is created 0700, the file and its -wal/-shm files are
    0600. WAL journal, `secure_delete` (deleted rows are overwritten in the
    file), foreign keys on, `synchronous=FULL`. The connection is in autocommit
    mode: group writes with `transaction(conn)`; it may be used from several
    threads, so its owner must serialise access (a lock). A file that is not a
    usable SQLite database raises StorageError naming it.
    """
    path = Path(path)
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=DIR_MODE, parents=True)
            os.chmod(path.parent, DIR_MODE)  # mkdir's mode is narrowed by the umask, never widened
        _private_file(path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot create state file: {exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open: {exc}") from None
    with _closed_on_error(conn, f"{path}: not a usable SQLite database (corrupt or another kind of file)"):
        # The first statement reads the header: a foreign file fails here.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    _private_side_files(path)
    return conn


@contextmanager
def _closed_on_error(conn: sqlite3.Connection, unreadable: str) -> Iterator[None]:
    """Close `conn` if the block raises; an error of SQLite reading the file becomes
    StorageError "<unreadable>: <SQLite's message>"."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StorageError(f"{unreadable}: {exc}") from None
    except BaseException:
        conn.close()
        raise


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block or the COMMIT raises.

    The original error is the one raised: after a full disk or an I/O error SQLite may have
    rolled back by itself, and the ROLLBACK's own "no transaction is active" must not hide why.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is already unusable; the original error says why
        raise


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into complete statements (triggers' inner semicolons included)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""
    if pending.strip(" \t\r\n;"):
        yield pending


def migrate(conn: sqlite3.Connection, steps: list[str]) -> int:
    """Apply the steps not yet applied (per `PRAGMA user_version`) in one transaction.

    `steps[i]` brings the schema from version i to i + 1; steps are only ever
    appended, never edited. Returns the resulting version. A file whose version
    is newer than `steps` knows raises StorageError.
    """
    try:
        with transaction(conn):
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(steps):
                raise StorageError(
                    f"{db_file(conn)}: schema version {current} is newer than this footfall knows "
                    f"({len(steps)}); it was written by a newer release")
            for version, step in enumerate(steps[current:], start=current + 1):
                for statement in _statements(step):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db_file(conn)}: schema migration failed: {exc}") from None
    if db_file(conn):
        _private_side_files(Path(db_file(conn)))
    return len(steps)


def purge(conn: sqlite3.Connection) -> bool:
    """Checkpoint and truncate the WAL, so deleted rows are gone from it too.

    With `secure_delete` the main file's copies are already overwritten; the
    WAL still holds older page images until this runs. Returns False if a
    reader kept the checkpoint from completing (the WAL was then not emptied).
    """
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


def open_store(path: Path | None, steps: list[str], what: str,
               load: Callable[[sqlite3.Connection], object] | None = None) -> sqlite3.Connection:
    """A store's connection: opened (`open_db`), migrated to `steps`, then read by `load`.

    `path=None` gives a private in-memory database with the same schema. A
    file that SQLite cannot read while migrating or loading raises StorageError
    "<path>: cannot read <what> (corrupt?): ..."; whatever fails, the connection
    is closed before the error leaves.
    """
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    else:
        path = Path(path)
        conn = open_db(path)
    with _closed_on_error(conn, f"{path or ':memory:'}: cannot read {what} (corrupt?)"):
        migrate(conn, steps)
        if load is not None:
            load(conn)
    return conn


class StoreFile:
    """`close()`, `with` and the closed check of a store whose connection is `_conn` (None for a
    store kept in memory only) and whose access is serialised by `_lock`.

    `close()` runs `_release()` once, under the lock and with the file still open: the place
    for a store to drop what memory holds or to checkpoint its file.
    """

    _lock: AbstractContextManager
    _conn: sqlite3.Connection | None = None
    _closed = False
    _name = "the store"  # for "... is closed"

    def close(self) -> None:
        """Release what memory holds and close the file; closing again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()
            if self._conn is not None:
                self._conn.close()

    def checkpoint(self) -> bool:
        """`purge` the store's file now: what was deleted leaves its WAL too, the file staying open.

        True when done, or when there is nothing to do (a store in memory, or closed); False if a
        reader kept the checkpoint from completing.
        """
        with self._lock:
            if self._closed or self._conn is None or not db_file(self._conn):
                return True
            return purge(self._conn)

    def _release(self) -> None:
        """Called once by `close()` before the file closes; nothing by default."""

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
