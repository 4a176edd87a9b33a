"""Visit counts per hour and per day, in the store's time zone (CONTRACT, topics `counts` and `counts/get`).

Every counted entry (a visit or a re-entry, by a member or not) is one row:
its instant in UTC, its kind and whether a member made it. Nothing that
identifies a person is kept. Bucketing happens on reading, by pure functions
of the store's IANA zone: hour buckets start at local wall-clock hours, day
buckets at local midnight, so DST days have 23 or 25 hourly buckets and the
`by_hour` list of today's payload adds both 01:00 hours of a fall-back night
into slot 1 (and leaves the skipped hour of a spring-forward night at 0).
"""

from __future__ import annotations

import sqlite3
import threading
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from footfall.storage.sqlite import StoreFile, open_store, transaction
from footfall.sync.events import iso as iso_ms

KINDS = ("visit", "reentry", "exit")
BY = ("hour", "day")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SCHEMA = [
    """
    CREATE TABLE entries (
        id     INTEGER PRIMARY KEY,
        ts_us  INTEGER NOT NULL,     -- microseconds since 1970-01-01 UTC
        kind   TEXT NOT NULL CHECK (kind IN ('visit', 'reentry')),
        member INTEGER NOT NULL CHECK (member IN (0, 1))
    );
    CREATE INDEX entries_by_ts ON entries(ts_us);
    """,
    # visits counted without a usable face (identified = 0), reported apart as `unidentified`
    "ALTER TABLE entries ADD COLUMN identified INTEGER NOT NULL DEFAULT 1 CHECK (identified IN (0, 1));",
    # exits: people crossing a camera's entry line outwards (SQLite cannot widen a CHECK in place)
    """
    CREATE TABLE entries_v3 (
        id         INTEGER PRIMARY KEY,
        ts_us      INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('visit', 'reentry', 'exit')),
        member     INTEGER NOT NULL CHECK (member IN (0, 1)),
        identified INTEGER NOT NULL DEFAULT 1 CHECK (identified IN (0, 1))
    );
    INSERT INTO entries_v3 (id, ts_us, kind, member, identified)
        SELECT id, ts_us, kind, member, identified FROM entries;
    DROP TABLE entries;
    ALTER TABLE entries_v3 RENAME TO entries;
    CREATE INDEX entries_by_ts ON entries(ts_us);
    """,
]

Kind = Literal["visit", "reentry", "exit"]
By = Literal["hour", "day"]


@dataclass(frozen=True)
class Counted:
    """One counted entry: when (aware), a visit or a re-entry, and whether a member made it."""

    ts: datetime
    kind: Kind
    member: bool
    identified: bool = True


# -- pure rules --------------------------------------------------------------------

def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None


def aware(ts: datetime, what: str = "ts") -> datetime:
    """`ts` itself if it carries a UTC offset; ValueError naming `what` for a naive datetime."""
    if not isinstance(ts, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (carry a UTC offset), got naive {ts.isoformat()}")
    return ts


def to_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (sortable storage form)."""
    return (aware(ts) - EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    """The UTC datetime of `to_us`'s value."""
    return EPOCH + timedelta(microseconds=us)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of local midnight starting `day`; a skipped midnight maps to the transition."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def store_day(ts: datetime, tz: ZoneInfo) -> date:
    """The local calendar day (store day) `ts` falls on."""
    return aware(ts).astimezone(tz).date()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a store day in UTC: local midnight to the next local midnight."""
    return day_start(day, tz), day_start(day + timedelta(days=1), tz)


def bucket_floor(ts: datetime, by: By, tz: ZoneInfo) -> datetime:
    """The start (UTC) of the local hour or local day holding `ts`."""
    local = aware(ts).astimezone(tz)
    if by == "day":
        return day_start(local.date(), tz)
    if by == "hour":
        # replace() keeps `fold`, so the second 01:00 of a fall-back night stays the second one.
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    raise ValueError(f"by must be 'hour' or 'day', got {by!r}")


def bucket_starts(start: datetime, end: datetime, by: By, tz: ZoneInfo) -> list[datetime]:
    """Starts (UTC, increasing) of the local hour or day buckets that overlap [start, end).

    The first is the bucket holding `start` (it may begin before it); empty
    when `end <= start`.
    """
    start, end = aware(start, "start"), aware(end, "end")
    if end <= start:
        return []
    starts = []
    current = bucket_floor(start, by, tz)
    step = timedelta(hours=1) if by == "hour" else timedelta(hours=25)  # 25 h always reaches the next local day
    while current < end:
        starts.append(current)
        ahead = step
        following = bucket_floor(current + ahead, by, tz)
        # With a half-hour fall-back (Australia/Lord_Howe) a wall hour lasts 90 minutes: look further.
        while following <= current:
            ahead += timedelta(minutes=30)
            following = bucket_floor(current + ahead, by, tz)
        current = following
    return starts


def by_local_hour(entries: Iterable[Counted], tz: ZoneInfo) -> list[int]:
    """24 ints: visits (not re-entries) per local wall-clock hour; a repeated hour adds up in one slot."""
    hours = [0] * 24
    for entry in entries:
        if entry.kind == "visit":
            hours[aware(entry.ts).astimezone(tz).hour] += 1
    return hours


def tally(entries: Iterable[Counted]) -> dict[str, int]:
    """`visits`, `reentries`, `member_visits`, `unidentified` (visits counted without a usable face)
    and `exits` (people who crossed an entry line outwards)."""
    totals = {"visits": 0, "reentries": 0, "member_visits": 0, "unidentified": 0, "exits": 0}
    for entry in entries:
        if entry.kind == "visit":
            totals["visits"] += 1
            totals["member_visits"] += int(entry.member)
            totals["unidentified"] += int(not entry.identified)
        elif entry.kind == "exit":
            totals["exits"] += 1
        else:
            totals["reentries"] += 1
    return totals


def iso(ts: datetime, tz: ZoneInfo) -> str:
    """ISO 8601 in the store's zone, with offset and milliseconds (the contract's timestamp form)."""
    return iso_ms(aware(ts).astimezone(tz))


def bucketize(entries: Iterable[Counted], starts: list[datetime], tz: ZoneInfo) -> list[dict]:
    """One dict per bucket start (`start`, `visits`, `reentries`, `member_visits`), empty ones included.

    Each entry goes to the last bucket starting at or before it; entries
    before the first start are ignored.
    """
    groups: list[list[Counted]] = [[] for _ in starts]
    for entry in entries:
        i = bisect_right(starts, aware(entry.ts)) - 1
        if i >= 0:
            groups[i].append(entry)
    return [{"start": iso(s, tz), **tally(group)} for s, group in zip(starts, groups)]


def today_payload(entries: Iterable[Counted], day: date, tz: ZoneInfo) -> dict:
    """The contract's `counts` payload (without envelope) for the entries of one store day."""
    entries = list(entries)
    return {"date": day.isoformat(), **tally(entries), "by_hour": by_local_hour(entries, tz)}


# -- the store ---------------------------------------------------------------------

class CountStore(StoreFile):
    """Counted entries of one store, in a private SQLite file (or in memory with `db_path=None`). Thread-safe."""

    _conn: sqlite3.Connection

    def __init__(self, db_path: Path | None, timezone: str) -> None:
        self.tz = zone(timezone)
        self._lock = threading.Lock()
        self._conn = open_store(db_path, _SCHEMA, "the counts")

    def record(self, ts: datetime, kind: str, member: bool, identified: bool = True) -> None:
        """Count one entry: `kind` "visit", "reentry" or "exit", `member` whether a member made it,
        `identified` False when no usable face was seen."""
        aware(ts)
        if kind not in KINDS:
            raise ValueError(f"kind must be 'visit', 'reentry' or 'exit', got {kind!r}")
        if not isinstance(member, bool):
            raise TypeError(f"member must be a bool, got {type(member).__name__}")
        with self._lock, transaction(self._conn):
            self._conn.execute("INSERT INTO entries (ts_us, kind, member, identified) VALUES (?, ?, ?, ?)",
                               (to_us(ts), kind, int(member), int(bool(identified))))

    def today(self, now: datetime) -> dict:
        """The `counts` payload for the store day `now` falls on: date, totals and 24 hourly visit counts."""
        day = store_day(aware(now, "now"), self.tz)
        start, end = day_bounds(day, self.tz)
        return today_payload(self._between(start, end), day, self.tz)

    def buckets(self, start: datetime, end: datetime, by: str = "hour") -> list[dict]:
        """Counts of the entries in [start, end) per local hour or day, empty buckets included.

        Each bucket is `{start (ISO with offset), visits, reentries, member_visits}`;
        the first and last may be partial when `start`/`end` are not on a boundary.
        """
        aware(start, "start")
        aware(end, "end")
        if by not in BY:
            raise ValueError(f"by must be 'hour' or 'day', got {by!r}")
        starts = bucket_starts(start, end, cast(By, by), self.tz)  # checked against BY above
        return bucketize(self._between(start, end), starts, self.tz)

    def _between(self, start: datetime, end: datetime) -> list[Counted]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT ts_us, kind, member, identified FROM entries WHERE ts_us >= ? AND ts_us < ? ORDER BY ts_us",
                (to_us(start), to_us(end))).fetchall()
        return [Counted(from_us(us), kind, bool(member), bool(ident)) for us, kind, member, ident in rows]
