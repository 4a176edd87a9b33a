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

Every value that is kept is checked the way the box checks its downlink, so that nothing
PostgreSQL or Python would refuse reaches the writer: text holds no NUL, no other control
character and no lone surrogate, and has a length cap; store ids are those the box and the
dashboard accept (`events.is_store_id`); timestamps carry a real UTC offset and lie within a
window of the HQ clock (`Window`); numbers are finite and bounded. `parse` never raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from footfall.config.schema import check_timezone
from footfall.sync import events

MAX_ID = 200            # characters of an id or short text field
MAX_CAMERAS = 64
CAMERA_STATES = ("streaming", "reconnecting", "ended")
EXCERPT_BYTES = 512     # of a rejected payload, kept in ingest_errors
MAX_TOPIC = 300
MAX_MINUTES = 366 * 24 * 60  # of minutes_early and grace_minutes, either way
MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset of any time zone (Pacific/Kiritimati)
MAX_PAST = timedelta(days=366)
MAX_BOOKING_AHEAD = timedelta(days=366)

ALERT_KINDS = {events.ALERT_ARRIVAL: "arrival", events.ALERT_APPOINTMENT: "appointment"}  # the `alerts` table's kind
TOPICS = {  # topic name -> the table its messages go to; the collector subscribes to exactly these
    events.VISITS: "visits",
    events.ALERT_ARRIVAL: "alerts",
    events.ALERT_APPOINTMENT: "alerts",
    events.ALERT_NO_SHOW: "no_shows",
    events.ALERT_ACK: "acks",
    events.STATUS: "status",
    events.COUNTS: "counts",
    events.APPOINTMENTS_UPSERT: "appointments",  # the CRM's own message, no event envelope
    events.APPOINTMENTS_BOOKED: "appointments",  # the box's word of a booking it holds (imported there too)
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


@dataclass(frozen=True)
class Window:
    """The instants HQ accepts, around its own clock `now`: events from `max_past` ago to `max_future`
    ahead; booked times (`scheduled_at`) from `max_past` ago to `max_booking_ahead` ahead."""

    now: datetime
    max_past: timedelta = MAX_PAST
    max_future: timedelta = timedelta(hours=2)
    max_booking_ahead: timedelta = MAX_BOOKING_AHEAD

    def check(self, key: str, ts: datetime, *, booked: bool = False) -> datetime:
        """`ts`, or Reject naming `key` when it lies outside the window."""
        ahead = self.max_booking_ahead if booked else self.max_future
        if ts - self.now > ahead:
            raise Reject(f"{key} {ts.isoformat()[:40]} is more than {ahead} ahead of the HQ clock")
        if self.now - ts > self.max_past:
            raise Reject(f"{key} {ts.isoformat()[:40]} is more than {self.max_past} before the HQ clock")
        return ts

    def check_day(self, key: str, day: date) -> date:
        """A store day, or Reject naming `key` when no instant of the window falls on it (a day either side)."""
        first = (self.now - self.max_past).date() - timedelta(days=1)
        last = (self.now + self.max_future).date() + timedelta(days=1)
        if not first <= day <= last:
            raise Reject(f"{key} {day.isoformat()} is outside {first.isoformat()}..{last.isoformat()}")
        return day


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
    problem = events.text_problem(value)
    if problem is not None:
        raise Reject(f"{key} holds {problem}")
    return value


def _instant(raw: str, key: str) -> datetime:
    """An ISO 8601 timestamp whose UTC offset is one a time zone can have (whole minutes, at most 14 h)."""
    try:
        ts = events.parse_iso(raw)
    except ValueError as exc:
        raise Reject(f"{key} {exc}") from None
    offset = ts.utcoffset() or timedelta(0)
    if abs(offset) > MAX_OFFSET or offset % timedelta(minutes=1):
        raise Reject(f"{key} has a UTC offset no time zone has ({offset_name(ts)})")
    return ts


def _time(m: dict, key: str, window: Window, *, required: bool = True, booked: bool = False) -> datetime | None:
    raw = _text(m, key, required=required, limit=64)
    if raw is None:
        return None
    return window.check(key, _instant(raw, key), booked=booked)


def _required_time(m: dict, key: str, window: Window, *, booked: bool = False) -> datetime:
    ts = _time(m, key, window, booked=booked)
    assert ts is not None  # _time raises for a missing required field
    return ts


def _int(m: dict, key: str, *, required: bool = True) -> int | None:
    value = m.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Reject(f"{key} must be an integer")
    if not 0 <= value < 2**31:
        raise Reject(f"{key} is out of range")
    return value


def _minutes(m: dict, key: str) -> float | None:
    """A number of minutes, finite and within MAX_MINUTES either way (compared before any float
    conversion, so an integer too large for a float is refused, not raised)."""
    value = m.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Reject(f"{key} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Reject(f"{key} must be a finite number")
    if not -MAX_MINUTES <= value <= MAX_MINUTES:
        raise Reject(f"{key} is out of range (at most {MAX_MINUTES} minutes either way)")
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
          max_bytes: int, max_future: timedelta, max_past: timedelta = MAX_PAST,
          max_booking_ahead: timedelta = MAX_BOOKING_AHEAD) -> Row | Rejection:
    """Check one message against the HQ clock `now`; never raises."""
    store: str | None = None
    try:
        store, name = split_topic(topic, prefix)
        if not events.is_store_id(store):
            raise Reject(f"store id in the topic is not a store id (1 to {events.STORE_ID_MAX} of "
                         f"A-Z a-z 0-9 _ . -): {store[:80]!r}")
        if len(payload) > max_bytes:
            raise Reject(f"message is {len(payload)} bytes, over the limit of {max_bytes}")
        table = TOPICS.get(name)
        if table is None:
            raise Reject(f"unknown message kind {name[:80]!r}")
        window = Window(now, max_past, max_future, max_booking_ahead)
        return _row(table, name, store, _decode(payload), window, tz_for)
    except Reject as exc:
        return rejection(topic, store, str(exc), payload)
    except Exception as exc:  # a value the checks did not foresee: kept as an error, never a crash
        return rejection(topic, store, f"could not be checked: {type(exc).__name__}", payload)


def rejection(topic: str, store: str | None, reason: str, payload: bytes) -> Rejection:
    """The ingest_errors row of a message, every text made storable (no NUL, no lone surrogate)."""
    return Rejection(storable(topic[:MAX_TOPIC]), storable(store[:MAX_ID]) if store else None,
                     storable(reason[:1000]), len(payload),
                     storable(bytes(payload[:EXCERPT_BYTES]).decode("utf-8", errors="replace")))


def storable(text: str) -> str:
    """`text` with every NUL and lone surrogate replaced (PostgreSQL text takes neither)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", errors="replace").decode("utf-8")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _decode(payload: bytes) -> dict:
    """The JSON object of a payload (NaN and Infinity are not JSON); Reject otherwise."""
    try:
        message = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Reject(f"malformed JSON: {str(exc)[:120]}") from None
    if not isinstance(message, dict):
        raise Reject("payload is not a JSON object")
    return message


def _row(table: str, name: str, store: str, m: dict, window: Window, tz_for: TzLookup) -> Row:
    if name == events.APPOINTMENTS_UPSERT:  # the CRM's downlink: no event envelope
        return _booking(store, m, window, tz_for, window.now)
    claimed = _text(m, "store_id")
    if claimed != store:
        raise Reject(f"payload store_id {str(claimed)[:80]!r} differs from the topic's store {store!r}")
    event_id = _text(m, "event_id")
    assert event_id is not None
    ts = _required_time(m, "ts", window)
    if table == "appointments":  # appointments/booked: the booking, in the event's envelope
        return _booking(store, m, window, tz_for, ts)
    tz = tz_for(store, ts)
    values = _VALUES[table](name, m, window, ts, tz)
    return Row(table, store, event_id, ts, values)


def _booking(store: str, m: dict, window: Window, tz_for: TzLookup, ts: datetime) -> Row:
    """A booking, from the CRM's appointments/upsert (stamped with the HQ clock) or from the box's
    appointments/booked event (its own ts); either way one row per (store, appointment_id)."""
    appointment_id = _text(m, "appointment_id")
    assert appointment_id is not None
    scheduled = _required_time(m, "scheduled_at", window, booked=True)
    return Row("appointments", store, appointment_id, ts, {
        "appointment_id": appointment_id, "member_id": _text(m, "member_id"), "scheduled_at": scheduled,
        "channel": _text(m, "channel", required=False), "advisor": _text(m, "advisor", required=False),
        "store_day": local(scheduled, tz_for(store, scheduled))[0]})


def _visit(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    kind = _text(m, "kind")
    if kind not in ("visit", "reentry"):
        raise Reject(f"unknown visit kind {str(kind)[:40]!r}")
    role = _text(m, "role")
    if role not in ("member", "visitor"):
        raise Reject(f"unknown role {str(role)[:40]!r}")
    first_seen = _required_time(m, "first_seen_ts", window)
    day, hour = local(first_seen, tz)
    return {"kind": kind, "visitor_id": _text(m, "visitor_id"), "member_id": _text(m, "member_id", required=False),
            "role": role, "camera_id": _text(m, "camera_id", required=False), "identified": _bool(m, "identified", True),
            "first_seen_ts": first_seen, "store_day": day, "store_hour": hour}


def _alert(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    kind = ALERT_KINDS[name]
    values: dict[str, Any] = {"kind": kind, "member_id": _text(m, "member_id"), "store_day": local(ts, tz)[0],
                              "visit_event_id": None, "appointment_id": None, "scheduled_at": None,
                              "channel": None, "advisor": None, "minutes_early": None, "tier": None}
    if kind == "arrival":
        values["visit_event_id"] = _text(m, "visit_event_id")
        values["tier"] = _text(m, "tier", required=False)
        appointment = m.get("appointment")
        if appointment is not None:
            if not isinstance(appointment, dict):
                raise Reject("appointment must be an object or null")
            values["appointment_id"] = _text(appointment, "appointment_id", required=False)
            values["scheduled_at"] = _time(appointment, "scheduled_at", window, required=False, booked=True)
            values["channel"] = _text(appointment, "channel", required=False)
            values["advisor"] = _text(appointment, "advisor", required=False)
    else:
        values["appointment_id"] = _text(m, "appointment_id")
        values["scheduled_at"] = _required_time(m, "scheduled_at", window, booked=True)
        values["channel"] = _text(m, "channel", required=False)
        values["advisor"] = _text(m, "advisor", required=False)
        values["minutes_early"] = _minutes(m, "minutes_early")
    return values


def _no_show(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    scheduled = _required_time(m, "scheduled_at", window, booked=True)
    return {"appointment_id": _text(m, "appointment_id"), "member_id": _text(m, "member_id"),
            "scheduled_at": scheduled, "grace_minutes": _minutes(m, "grace_minutes"),
            "channel": _text(m, "channel", required=False), "store_day": local(scheduled, tz)[0]}


def _ack(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    return {"visit_event_id": _text(m, "visit_event_id"), "guide": _text(m, "guide", required=False)}


def _erasure(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    # The member's id is removed from every table of the chain (hq/writer.py).
    return {"member_id": _text(m, "member_id")}


def _status(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    state = _text(m, "state")
    if state not in ("online", "stopped", "offline"):
        raise Reject(f"unknown status state {str(state)[:40]!r}")
    return {"state": state, "version": _text(m, "version", required=False, limit=64),
            "cameras": _cameras(m.get("cameras")), "storage": _text(m, "storage", required=False, limit=500),
            "outbox_backlog": _int(m, "outbox_backlog", required=False),
            "dead_letters": _int(m, "dead_letters", required=False), "timezone": _zone_name(m)}


def _zone_name(m: dict) -> str | None:
    """The status's `timezone` (the box's IANA zone), or None when not sent; Reject for a name no
    zone has (it would set the store's days)."""
    name = _text(m, "timezone", required=False, limit=64)
    if name is None:
        return None
    try:
        check_timezone(name)
    except ValueError as exc:
        raise Reject(f"timezone {exc}") from None
    return name


def _cameras(cameras: Any) -> dict[str, str]:
    """The status's camera id -> state map (it goes to a JSONB column): clean ids, the contract's states."""
    cameras = cameras or {}
    if not isinstance(cameras, dict) or len(cameras) > MAX_CAMERAS:
        raise Reject(f"cameras must be an object of at most {MAX_CAMERAS} entries")
    for camera_id in cameras:
        _text({"camera id": camera_id}, "camera id")
        if cameras[camera_id] not in CAMERA_STATES:
            raise Reject(f"cameras must map camera ids to one of {', '.join(CAMERA_STATES)}")
    return cameras


def _counts(name: str, m: dict, window: Window, ts: datetime, tz: tzinfo) -> dict[str, Any]:
    try:
        day = date.fromisoformat(_text(m, "date") or "")
    except ValueError:
        raise Reject("date is not a calendar date YYYY-MM-DD") from None
    by_hour = m.get("by_hour")
    if (not isinstance(by_hour, list) or len(by_hour) != 24
            or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31 for v in by_hour)):
        raise Reject("by_hour must be 24 non-negative integers")
    return {"store_day": window.check_day("date", day), "visits": _int(m, "visits"),
            "reentries": _int(m, "reentries"), "member_visits": _int(m, "member_visits"), "by_hour": by_hour,
            "exits": _int(m, "exits", required=False) or 0}


_VALUES: dict[str, Callable[[str, dict, Window, datetime, tzinfo], dict[str, Any]]] = {
    "visits": _visit, "alerts": _alert, "no_shows": _no_show, "acks": _ack, "erasures": _erasure,
    "status": _status, "counts": _counts,
}
