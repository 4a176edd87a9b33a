"""What a state file refused, held in memory and written again: one rule for every state file.

A full or failing disk never stops the store. An item a file refuses (an event for the outbox, an
entry for `counts.db`, a no-show's flag, the open visit windows) waits here; later items queue
behind it, so the file receives them in the order they came. What waits is tried again, oldest
first, at most once every `every_s` (or at once when asked); at most `limit` items wait, the
oldest dropping out beyond that. `error` says why while the file refuses writes (the `storage`
field of `status`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from footfall.storage.sqlite import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")

STORAGE_ERRORS = (StorageError, sqlite3.Error, OSError)  # what a full or failing disk raises
RETRY_EVERY_S = 1.0


class WriteBehind(Generic[T]):
    """The items one state file refused, held in order until it takes writes again."""

    def __init__(self, name: str, write: Callable[[T], object], *, limit: int | None = None,
                 describe: Callable[[T], str] = lambda item: "", every_s: float = RETRY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`name` is the file as `status` names it ("counts.db"); `write` stores one item or raises one
        of `STORAGE_ERRORS`; `describe` names an item dropped beyond `limit` in the log (never
        anything that identifies a person); `clock` (monotonic seconds) paces the retries."""
        self.name = name
        self._write = write
        self.limit = limit
        self._describe = describe
        self.every_s = every_s
        self._clock = clock
        self.held: deque[T] = deque()
        self.dropped = 0
        self.error: str | None = None
        self._next_try = 0.0

    def __len__(self) -> int:
        return len(self.held)

    def __iter__(self) -> Iterator[T]:
        return iter(self.held)

    def add(self, item: T) -> bool:
        """Write `item` now, after whatever is held (tried first); held if the file refuses. True when written."""
        if self.flush(force=True) and self._try(item):
            self._taken()
            return True
        self.hold(item)
        return False

    def flush(self, *, force: bool = False) -> bool:
        """Write the held items, oldest first; unless `force`, not within `every_s` of the last
        refusal. True when nothing is held."""
        if not self.held:
            return True
        if not force and self._clock() < self._next_try:
            return False
        while self.held:
            if not self._try(self.held[0]):
                return False
            self.held.popleft()
        self._taken()
        return True

    def hold(self, item: T) -> None:
        """Keep `item` to write later; beyond `limit` the oldest held is dropped, and logged."""
        if self.limit is not None and len(self.held) >= self.limit:
            lost = self.held.popleft()
            self.dropped += 1
            log.error("storage: %s: %d items held in memory already; the oldest is dropped %s", self.name,
                      self.limit, self._describe(lost))
        self.held.append(item)

    def discard(self, matches: Callable[[T], bool]) -> int:
        """Drop the held items `matches` picks (an erased person's events): they are never written.
        Returns how many were dropped."""
        kept = deque(item for item in self.held if not matches(item))
        dropped = len(self.held) - len(kept)
        self.held = kept
        return dropped

    def refused(self, exc: BaseException | str) -> None:
        """The file refused a write (here, or in a part that keeps its own copy): `error` says why
        (logged once per reason) and the next retry waits `every_s`."""
        reason = str(exc) if self.name in str(exc) else f"{self.name}: {exc}"
        if reason != self.error:
            self._log_refused(reason)
        self.error = reason
        self._next_try = self._clock() + self.every_s

    def _log_refused(self, reason: str) -> None:
        """Say (once per reason) that the file refuses writes and what becomes of the items."""
        up_to = f" (up to {self.limit})" if self.limit is not None else ""
        log.error("storage: %s; what it refuses is held in memory%s and written when it takes writes again",
                  reason, up_to)

    def _log_taken(self) -> None:
        """Say that the file takes writes again, after a refusal."""
        log.info("storage: %s takes writes again; nothing is held in memory", self.name)

    def _try(self, item: T) -> bool:
        try:
            self._write(item)
        except STORAGE_ERRORS as exc:
            self.refused(exc)
            return False
        return True

    def _taken(self) -> None:
        if self.error is not None:
            self._log_taken()
            self.error = None
