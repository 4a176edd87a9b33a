"""What a store's message becomes at HQ: a row for one table, or a rejection with its reason.

Pure functions, no I/O. The rule for `store_id`: the topic's store id is the one that counts,
and a payload naming a different store is rejected. The broker's ACL
(config/mosquitto-acl.example, `pattern write footfall/%u/...`) ties every uplink topic to the
broker user of its box, so the topic is authenticated and the payload is not; a mismatch means
a box configured with another store's id, or a forgery, and neither should be counted silently
under either name. Rows always take their store id from the topic, so a box can never write
rows of another store, and rows are keyed by (store_id, event_id), so it cannot pre-empt
another store's event ids either.

Only the fields HQ models are kept: whatever else a payload carries (profile fields of an
arrival, anything unexpected) is dropped, so no image or embedding can reach the database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from footfall.sync import events

MAX_ID = 200            # characters of an id or short text field
MAX_CAMERAS = 64
EXCERPT_BYTES = 512     # of a rejected payload, kept in ingest_errors
MAX_TOPIC = 300

ALERT_KINDS = {events.ALERT_ARRIVAL: "arrival", events.ALERT_APPOINTMENT: "appointment"}  # the `alerts` table's kind
TOPICS = {  # topic name -> the table its messages go to; the collector subscribes to exactly these
    events.VISITS: "visits",
    events.ALERT_ARRIVAL: "alerts",
    events.ALERT_APPOINTMENT: "alerts",
    events.ALERT_NO_SHOW: "no_shows",
    events.ALERT_ACK: "acks",
    events.STATUS: "status",
    events.COUNTS: "counts",
    events.APPOINTMENTS_UPSERT: "appointments",
    events.MEMBERS_DELETED: "erasures",
}


class Reject(ValueError):
    """The message cannot be stored; the text is the reason."""


@dataclass(frozen=True)
class Row:
    """One accepted message: its `table`, the topic's store, its event id, its time and its column values."""

    table: str
    store_id: str
    event_id: str
    ts: datetime
    values: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    """One rejected message, as it goes to ingest_errors (bounded)."""

    topic: str
    topic_store_id: str | None
    reason: str
    payload_bytes: int
    payload_excerpt: str


TzLookup = Callable[[str, datetime], tzinfo]


def zone_of(name: str) -> tzinfo:
    """An IANA zone, or a fixed offset written "+08:00" / "-05:30"."""
    if name[:1] in "+-" and len(name) == 6 and name[3] == ":":
        sign = 1 if name[0] == "+" else -1
        return timezone(sign * timedelta(hours=int(name[1:3]), minutes=int(name[4:6])))
    return ZoneInfo(name)


def offset_name(ts: datetime) -> str:
    """The fixed-offset zone name of an aware timestamp: "+08:00"."""
    offset = ts.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def split_topic(topic: str, prefix: str) -> tuple[str, str]:
    """"footfall/sh-001/alerts/ack" -> ("sh-001", "alerts/ack"); Reject when not under `prefix`."""
    try:
        return events.split_topic(prefix, topic)
    except ValueError as exc:
        raise Reject(str(exc)) from None


def _text(m: dict, key: str, *, required: bool = True, limit: int = MAX_ID) -> str | None:
    value = m.get(key)
    if value is None:
        if required:
            raise Reject(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise Reject(f"{key} must be a string")
    if required and not value.strip():
        raise Reject(f"{key} must not be empty")
    if len(value) > limit:
        raise Reject(f"{key} is longer than {limit} characters")
    return value


def _time(m: dict, key: str, *, required: bool = True) -> datetime | None:
    raw = _text(m, key, required=required, limit=64)
    if raw is None:
        return None
    try:
        return events.parse_iso(raw)
    except ValueError as exc:
        raise Reject(f"{key} {exc}") from None


def _int(m: dict, key: str, *, required: bool = True) -> int | None:
    value = m.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Reject(f"{key} must be an integer")
    if not 0 <= value < 2**31:
        raise Reject(f"{key} is out of range")
    return value


def _number(m: dict, key: str) -> float | None:
    value = m.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Reject(f"{key} must be a number")
    return float(value)


def _bool(m: dict, key: str, default: bool) -> bool:
    value = m.get(key, default)
    if not isinstance(value, bool):
        raise Reject(f"{key} must be true or false")
    return value


def local(ts: datetime, tz: tzinfo) -> tuple[date, int]:
    """The store day and hour of an instant."""
    here = ts.astimezone(tz)
    return here.date(), here.hour


def parse(topic: str, payload: bytes, *, prefix: str, now: datetime, tz_for: TzLookup,
          max_bytes: int, max_future: timedelta) -> Row | Rejection:
    """Check one message; never raises."""
    store: str | None = None
    try:
        store, name = split_topic(topic, prefix)
        if len(store) > MAX_ID:
            raise Reject("store id in the topic is too long")
        if len(payload) > max_bytes:
            raise Reject(f"message is {len(payload)} bytes, over the limit of {max_bytes}")
        table = TOPICS.get(name)
        if table is None:
            raise Reject(f"unknown message kind {name[:80]!r}")
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Reject(f"malformed JSON: {str(exc)[:120]}") from None
        if not isinstance(message, dict):
            raise Reject("payload is not a JSON object")
        return _row(table, name, store, message, now, tz_for, max_future)
    except Reject as exc:
        return Rejection(topic[:MAX_TOPIC], store[:MAX_ID] if store else None, str(exc), len(payload),
                         bytes(payload[:EXCERPT_BYTES]).decode("utf-8", errors="replace"))


def _row(table: str, name: str, store: str, m: dict, now: datetime, tz_for: TzLookup,
         max_future: timedelta) -> Row:
    if table == "appointments":  # the CRM's downlink: no event envelope
        appointment_id = _text(m, "appointment_id")
        assert appointment_id is not None
        scheduled = _time(m, "scheduled_at")
        assert scheduled is not None
        return Row(table, store, appointment_id, now, {
            "appointment_id": appointment_id, "member_id": _text(m, "member_id"), "scheduled_at": scheduled,
            "channel": _text(m, "channel", required=False), "advisor": _text(m, "advisor", required=False),
            "store_day": local(scheduled, tz_for(store, scheduled))[0]})
    claimed = _text(m, "store_id")
    if claimed != store:
        raise Reject(f"payload store_id {str(claimed)[:80]!r} differs from the topic's store {store!r}")
    event_id = _text(m, "event_id")
    ts = _time(m, "ts")
    assert event_id is not None and ts is not None
    if ts - now > max_future:
        raise Reject(f"ts {ts.isoformat()} is more than {max_future} ahead of the HQ clock")
    tz = tz_for(store, ts)
    values: dict[str, Any]
    if table == "visits":
        kind = _text(m, "kind")
        if kind not in ("visit", "reentry"):
            raise Reject(f"unknown visit kind {str(kind)[:40]!r}")
        role = _text(m, "role")
        if role not in ("member", "visitor"):
            raise Reject(f"unknown role {str(role)[:40]!r}")
        first_seen = _time(m, "first_seen_ts")
        assert first_seen is not None
        if first_seen - now > max_future:
            raise Reject(f"first_seen_ts {first_seen.isoformat()} is more than {max_future} ahead of the HQ clock")
        day, hour = local(first_seen, tz)
        values = {"kind": kind, "visitor_id": _text(m, "visitor_id"), "member_id": _text(m, "member_id", required=False),
                  "role": role, "camera_id": _text(m, "camera_id", required=False), "identified": _bool(m, "identified", True),
                  "first_seen_ts": first_seen, "store_day": day, "store_hour": hour}
    elif table == "alerts":
        kind = ALERT_KINDS[name]
        values = {"kind": kind, "member_id": _text(m, "member_id"), "store_day": local(ts, tz)[0],
                  "visit_event_id": None, "appointment_id": None, "scheduled_at": None, "channel": None,
                  "advisor": None, "minutes_early": None, "tier": None}
        if kind == "arrival":
            values["visit_event_id"] = _text(m, "visit_event_id")
            values["tier"] = _text(m, "tier", required=False)
            appointment = m.get("appointment")
            if appointment is not None:
                if not isinstance(appointment, dict):
                    raise Reject("appointment must be an object or null")
                values["appointment_id"] = _text(appointment, "appointment_id", required=False)
                values["scheduled_at"] = _time(appointment, "scheduled_at", required=False)
                values["channel"] = _text(appointment, "channel", required=False)
                values["advisor"] = _text(appointment, "advisor", required=False)
        else:
            values["appointment_id"] = _text(m, "appointment_id")
            values["scheduled_at"] = _time(m, "scheduled_at")
            values["channel"] = _text(m, "channel", required=False)
            values["advisor"] = _text(m, "advisor", required=False)
            values["minutes_early"] = _number(m, "minutes_early")
    elif table == "no_shows":
        scheduled = _time(m, "scheduled_at")
        assert scheduled is not None
        values = {"appointment_id": _text(m, "appointment_id"), "member_id": _text(m, "member_id"),
                  "scheduled_at": scheduled, "grace_minutes": _number(m, "grace_minutes"),
                  "channel": _text(m, "channel", required=False), "store_day": local(scheduled, tz)[0]}
    elif table == "acks":
        values = {"visit_event_id": _text(m, "visit_event_id"), "guide": _text(m, "guide", required=False)}
    elif table == "erasures":  # the member's id is removed from every table of the chain (hq/writer.py)
        values = {"member_id": _text(m, "member_id")}
    elif table == "status":
        state = _text(m, "state")
        if state not in ("online", "stopped", "offline"):
            raise Reject(f"unknown status state {str(state)[:40]!r}")
        cameras = m.get("cameras") or {}
        if not isinstance(cameras, dict) or len(cameras) > MAX_CAMERAS:
            raise Reject(f"cameras must be an object of at most {MAX_CAMERAS} entries")
        for key, value in cameras.items():
            if len(key) > MAX_ID or not isinstance(value, str) or len(value) > 40:
                raise Reject("cameras must map camera ids to state names")
        values = {"state": state, "version": _text(m, "version", required=False, limit=64),
                  "cameras": cameras, "storage": _text(m, "storage", required=False, limit=500),
                  "outbox_backlog": _int(m, "outbox_backlog", required=False)}
    else:  # counts
        try:
            day = date.fromisoformat(_text(m, "date") or "")
        except ValueError:
            raise Reject("date is not a calendar date YYYY-MM-DD") from None
        by_hour = m.get("by_hour")
        if (not isinstance(by_hour, list) or len(by_hour) != 24
                or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31 for v in by_hour)):
            raise Reject("by_hour must be 24 non-negative integers")
        values = {"store_day": day, "visits": _int(m, "visits"), "reentries": _int(m, "reentries"),
                  "member_visits": _int(m, "member_visits"), "by_hour": by_hour}
    return Row(table, store, event_id, ts, values)
