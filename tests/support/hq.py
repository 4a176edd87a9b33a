"""What the head-office tests share about messages and the database: a store's messages as it
sends them, written through the collector's own checks and writer, and read back with SQL.

The fixed store day is 2026-11-23; `recent_visit` is stamped an hour ago instead, for tests
whose collector keeps its default window of accepted times.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from footfall.hq.collector import Zones
from footfall.hq.ingest import Rejection, Row, parse
from footfall.hq.writer import Written, write_batch

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ERASED_AT = "2026-11-23T15:00:00.000+08:00"


def visit(store: str, ts: str, *, kind: str = "visit", member: str | None = None, identified: bool = True,
          event_id: str | None = None, **extra: Any) -> tuple[str, bytes]:
    """A store's visit at `ts` as (topic, body)."""
    body = {"event_id": event_id or str(uuid.uuid4()), "store_id": store, "ts": ts, "kind": kind,
            "visitor_id": "v-" + (member or "anon"), "member_id": member, "role": "member" if member else "visitor",
            "camera_id": "door-1", "first_seen_ts": ts, "identified": identified, **extra}
    return f"footfall/{store}/visits", json.dumps(body).encode()


def message(store: str, topic_name: str, ts: str, **fields: Any) -> tuple[str, bytes]:
    """An event of the store under footfall/<store>/<topic_name>, with a fresh event id, as (topic, body)."""
    body = {"event_id": str(uuid.uuid4()), "store_id": store, "ts": ts, **fields}
    return f"footfall/{store}/{topic_name}", json.dumps(body).encode()


def an_hour_ago() -> str:
    """The time an hour ago, as a box stamps its events."""
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="milliseconds")


def recent_visit(store: str, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A visit's body stamped an hour ago (a fresh event id unless given)."""
    ts = an_hour_ago()
    return {"event_id": event_id or str(uuid.uuid4()), "store_id": store, "ts": ts, "kind": "visit",
            "visitor_id": "v-1", "member_id": None, "role": "visitor", "camera_id": "door-1",
            "first_seen_ts": ts, "identified": True, **fields}


def member_day(member: str, store: str = "sh-001") -> list[tuple[str, bytes]]:
    """A member's day at a store: a visit and a re-entry, the pop-up, an appointment kept and one
    missed, the CRM's bookings, and a rejected message quoting the id."""
    visit_id, kept, missed = (str(uuid.uuid4()) for _ in range(3))  # ids never carry the member's
    arrived = visit(store, "2026-11-23T10:00:00.000+08:00", member=member, event_id=visit_id, visitor_id=member)
    return [
        arrived,
        visit(store, "2026-11-23T10:40:00.000+08:00", kind="reentry", member=member, visitor_id=member),
        message(store, "alerts/arrival", ts="2026-11-23T10:00:02.000+08:00", member_id=member, name="Ms Seven",
                tier="gold", visit_event_id=visit_id, appointment=None, profile={}),
        message(store, "alerts/appointment", ts="2026-11-23T10:00:02.000+08:00", member_id=member,
                appointment_id=kept, scheduled_at="2026-11-23T10:30:00.000+08:00", channel="wechat",
                advisor="Li", minutes_early=30.0),
        message(store, "alerts/no_show", ts="2026-11-23T14:30:00.000+08:00", member_id=member,
                appointment_id=missed, scheduled_at="2026-11-23T14:00:00.000+08:00", grace_minutes=30),
        (f"footfall/{store}/appointments/upsert",
         json.dumps({"appointment_id": missed, "member_id": member, "channel": "phone", "advisor": "Wang",
                     "scheduled_at": "2026-11-23T14:00:00.000+08:00"}).encode()),
        (f"footfall/{store}/visits", json.dumps({"member_id": member, "kind": "teleport"}).encode()),
    ]


def ingest(url: str, messages: list[tuple[str, bytes]], *, zones: Zones | None = None,
           now: datetime = NOW) -> Written:
    """Write `messages` into the database at `url` through the collector's checks and writer, as one batch."""
    zones = zones or Zones({}, {})
    parsed = [parse(t, p, prefix="footfall", now=now, tz_for=zones, max_bytes=64 * 1024,
                    max_future=timedelta(hours=2)) for t, p in messages]
    rows = [p for p in parsed if isinstance(p, Row)]
    rejections = [p for p in parsed if isinstance(p, Rejection)]
    with psycopg.connect(url) as conn:
        return write_batch(conn, rows, rejections, {r.store_id: zones.names[r.store_id] for r in rows})


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Every row `sql` returns."""
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(url: str, sql: str, *params: Any) -> Any:
    """The first column of the first row `sql` returns (None when there is no row)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None
