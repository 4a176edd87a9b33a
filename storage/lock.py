"""One process at a time owns `storage.dir`: an exclusive lock with the holder written beside it.

The daemon holds the lock for as long as it runs; `enroll`, `erase` and the imports take it
themselves when no daemon runs, and otherwise hand their work to the daemon over the admin
channel (`edge/admin.py`), so the state on disk always has a single writer. The lock is an
`flock` on `storage.dir/footfall.lock`: the kernel releases it when the holder exits, even on
SIGKILL, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = "footfall.lock"


class StorageBusy(Exception):
    """`storage.dir` is held by another process; the message names it."""

    def __init__(self, message: str, holder: dict[str, object]) -> None:
        super().__init__(message)
        self.holder = holder


class StorageLock:
    """An exclusive, non-blocking lock on a state directory. Use as a context manager."""

    def __init__(self, storage_dir: str | Path, command: str) -> None:
        self.dir = Path(storage_dir)
        self.command = command
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.dir / LOCK_NAME

    def acquire(self) -> StorageLock:
        """Take the lock or raise `StorageBusy` naming the holder (pid, command, since when)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy(self.dir, read_holder(self.dir)) from None
        record = json.dumps({"pid": os.getpid(), "command": self.command,
                             "since": datetime.now(UTC).isoformat(timespec="seconds")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (the holder record is cleared so nobody reads a stale one)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StorageLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy(storage_dir: str | Path, holder: dict[str, object]) -> StorageBusy:
    """The refusal naming who holds `storage_dir`."""
    return StorageBusy(f"storage.dir {storage_dir} is in use by {describe(holder)}", holder)


def current_holder(storage_dir: str | Path) -> dict[str, object] | None:
    """Who holds the lock of `storage_dir` now ({} when unknown), or None when nobody does.
    Only looks: the lock is never taken and nothing is written."""
    try:
        fd = os.open(Path(storage_dir) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(storage_dir)
    finally:
        os.close(fd)  # closing drops a lock taken just now
    return None


def read_holder(storage_dir: str | Path) -> dict[str, object]:
    """What the lock file says of its holder ({} when unreadable or empty)."""
    try:
        data = json.loads((Path(storage_dir) / LOCK_NAME).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(holder: dict[str, object]) -> str:
    """`pid 123 (footfall run, since 2026-11-30T08:00:00+00:00)`, or a plain phrase when unknown."""
    if not holder.get("pid"):
        return "another process"
    return f"pid {holder['pid']} ({holder.get('command', '?')}, since {holder.get('since', '?')})"
