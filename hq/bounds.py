"""What a collector holds, logs and keeps at most, whatever the stores send.

- `Qos0Buffer`: QoS 0 messages are not counted against the Receive Maximum the collector
  announces, so the broker may send them as fast as it likes; beyond `qos0_buffer_bytes`
  waiting in memory, new ones are dropped and counted.
- `BoundedLog`: at most N lines a minute of one kind; the rest are counted, and the count is
  logged once the minute is over (or when the collector stops).
- `prune_ingest_errors`: the `ingest_errors` table holds at most `ingest_errors_max_rows`
  rows (the newest) and nothing older than `ingest_errors_max_age`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg

QOS0_OVERHEAD = 256  # bytes counted per buffered message besides its topic and payload (the objects holding them)
_MINUTE_S = 60.0


def message_cost(topic: str, payload: bytes) -> int:
    """The bytes a buffered message is counted for."""
    return len(payload) + len(topic) + QOS0_OVERHEAD


class Qos0Buffer:
    """Bytes of QoS 0 messages waiting in memory, at most `limit`; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def admit(self, cost: int) -> bool:
        """Count a message in; False (and counted as dropped) when it would pass the limit."""
        with self._lock:
            if self.held + cost > self.limit:
                self.dropped += 1
                return False
            self.held += cost
            self.peak = max(self.peak, self.held)
            return True

    def release(self, cost: int) -> None:
        """A message left the buffer."""
        with self._lock:
            self.held -= cost


class BoundedLog:
    """At most `per_minute` warnings a minute through `logger`; the others are counted and summed
    up in one line (`summary` % count) once their minute is over, or at `flush()`. Thread-safe."""

    def __init__(self, logger: logging.Logger, per_minute: int, summary: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.per_minute = per_minute
        self.summary = summary
        self.clock = clock
        self.suppressed_total = 0
        self._lock = threading.Lock()
        self._start = clock()
        self._logged = 0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        """Log the line if this minute's budget allows, else count it."""
        with self._lock:
            self._roll()
            if self._logged < self.per_minute:
                self._logged += 1
                self.logger.warning(message, *args)
            else:
                self._suppressed += 1
                self.suppressed_total += 1

    def tick(self) -> None:
        """Log the summary of a minute that is over (called from the collector's loop)."""
        with self._lock:
            self._roll()

    def flush(self) -> None:
        """Log the summary of the minute at hand now (the collector stops)."""
        with self._lock:
            self._summarise()

    def _roll(self) -> None:
        now = self.clock()
        if now - self._start >= _MINUTE_S:
            self._summarise()
            self._start, self._logged = now, 0

    def _summarise(self) -> None:
        if self._suppressed:
            self.logger.warning(self.summary, self._suppressed)
            self._suppressed = 0


_PRUNE_ROWS = "DELETE FROM ingest_errors WHERE id <= (SELECT max(id) FROM ingest_errors) - %s"
_PRUNE_AGE = "DELETE FROM ingest_errors WHERE received_at < now() - %s::interval"


def prune_ingest_errors(conn: psycopg.Connection, max_rows: int, max_age: timedelta | None) -> int:
    """Delete what is beyond the newest `max_rows` rows (by id) and, if `max_age` is given, what was
    received longer ago than that; returns how many rows went."""
    gone = conn.execute(_PRUNE_ROWS, (max_rows,)).rowcount
    if max_age is not None:
        gone += conn.execute(_PRUNE_AGE, (max_age,)).rowcount
    return max(gone, 0)
