"""The one source of "now": wall clock for live cameras, media clock for replayed files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    """Real time, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class MediaClock:
    """Time as the replayed media says: the timestamp of the latest frame processed.

    Time never runs backwards: an older timestamp leaves the clock where it is.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("media clock needs a timezone-aware start")
        self._now = start

    def advance(self, ts: datetime) -> None:
        if ts > self._now:
            self._now = ts

    def now(self) -> datetime:
        return self._now
