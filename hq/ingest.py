"""What a store's message becomes at HQ: a row for one table, or a rejection with its reason.

Pure functions, no I/O. The rule for `store_id`: the topic's store id is the one that counts,
and a payload naming a different store is rejected. The broker's ACL
(config/mosquitto-acl.example, `pattern write footfall/%u/...`) ties every uplink topic to the
broker user of its box, so the topic is authenticated and the payload is not; a mismatch means
a box configured with another store's id, or a forgery, and neither should be counted silently
under either name. Rows always take their store id from the topic, so a box can never write
rows of another store, and rows are keyed by (store_id, event_id), so it cannot pre-empt
another store's event ids either.

Every message is read by the class that writes it (`sync/events.py`: `PAYLOADS[name].from_json`),
which checks every field the way the box checks its downlink, so that nothing PostgreSQL or
Python would refuse reaches the writer: text holds no NUL, no other control character and no
lone surrogate, and has a length cap; timestamps carry a real UTC offset; numbers are finite
and bounded. HQ then applies its own rules: store ids are those the box and the dashboard accept
(`events.is_store_id`), the payload's store is the topic's, timestamps lie within a window of
the HQ clock (`Window`), a status's zone is a real one. Only the fields HQ models are kept:
whatever else a payload carries (profile fields of an arrival, anything unexpected) is dropped,
so no image or embedding can reach the database. `parse` never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from footfall.config.schema import check_timezone
from footfall.sync import events
from footfall.sync.events import (
    Ack,
    AppointmentAlert,
    AppointmentBooked,
    AppointmentDelete,
    AppointmentUpsert,
    ArrivalAlert,
    Counts,
    MemberDeleted,
    NoShowAlert,
    Status,
    VisitEvent,
)

EXCERPT_BYTES = 512     # of a rejected payload, kept in ingest_errors
MAX_TOPIC = 300
MAX_PAST = timedelta(days=366)
MAX_BOOKING_AHEAD = timedelta(days=366)

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
    events.APPOINTMENTS_DELETE: "cancellations",  # the CRM's own message: a booking cancelled
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


def split_topic(topic: str, prefix: str) -> tuple[str, str]:
    """"footfall/sh-001/alerts/ack" -> ("sh-001", "alerts/ack"); Reject when not under `prefix`."""
    try:
        return events.split_topic(prefix, topic)
    except ValueError as exc:
        raise Reject(str(exc)) from None


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
        if name not in TOPICS:
            raise Reject(f"unknown message kind {name[:80]!r}")
        window = Window(now, max_past, max_future, max_booking_ahead)
        return _row(name, store, events.decode_object(payload), window, tz_for)
    except (Reject, events.PayloadError) as exc:
        return rejection(topic, store, str(exc), payload)
    except Exception as exc:  # a value the checks did not foresee: kept as an error, never a crash
        return rejection(topic, store, f"could not be checked: {type(exc).__name__}", payload)


def rejection(topic: str, store: str | None, reason: str, payload: bytes) -> Rejection:
    """The ingest_errors row of a message, every text made storable (no NUL, no lone surrogate)."""
    return Rejection(storable(topic[:MAX_TOPIC]), storable(store[:events.MAX_ID]) if store else None,
                     storable(reason[:1000]), len(payload),
                     storable(bytes(payload[:EXCERPT_BYTES]).decode("utf-8", errors="replace")))


def storable(text: str) -> str:
    """`text` with every NUL and lone surrogate replaced (PostgreSQL text takes neither)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", errors="replace").decode("utf-8")


def _row(name: str, store: str, m: dict[str, Any], window: Window, tz_for: TzLookup) -> Row:
    if name == events.APPOINTMENTS_UPSERT:  # the CRM's downlink: no event envelope, stamped with the HQ clock
        return _booking(store, AppointmentUpsert.from_json(m), window, tz_for, window.now)
    if name == events.APPOINTMENTS_DELETE:  # the CRM's downlink too
        cancelled = AppointmentDelete.from_json(m)
        return Row("cancellations", store, cancelled.appointment_id, window.now,
                   {"appointment_id": cancelled.appointment_id})
    event = events.PAYLOADS[name].from_json(m)
    assert isinstance(event, events.Event)  # every topic of TOPICS but the CRM's is an event
    if event.store_id != store:
        raise Reject(f"payload store_id {event.store_id[:80]!r} differs from the topic's store {store!r}")
    window.check("ts", event.ts)
    if isinstance(event, AppointmentBooked):  # the booking, in the event's envelope
        return _booking(store, event, window, tz_for, event.ts)
    values = _VALUES[type(event)](event, window, tz_for(store, event.ts))
    return Row(TOPICS[name], store, event.event_id, event.ts, values)


def _booking(store: str, booking: AppointmentUpsert | AppointmentBooked, window: Window, tz_for: TzLookup,
             ts: datetime) -> Row:
    """A booking, from the CRM's appointments/upsert (stamped with the HQ clock) or from the box's
    appointments/booked event (its own ts); either way one row per (store, appointment_id).
    `crm_booked_at` is set only by the CRM's own word: only that books again what it cancelled
    (a box's late word of the booking it held before the cancellation does not)."""
    scheduled = window.check("scheduled_at", booking.scheduled_at, booked=True)
    from_crm = booking if isinstance(booking, AppointmentUpsert) else None
    return Row("appointments", store, booking.appointment_id, ts, {
        "appointment_id": booking.appointment_id, "member_id": booking.member_id, "scheduled_at": scheduled,
        "channel": booking.channel, "advisor": from_crm and from_crm.advisor,
        "store_day": local(scheduled, tz_for(store, scheduled))[0], "crm_booked_at": from_crm and ts})


def _visit(v: VisitEvent, window: Window, tz: tzinfo) -> dict[str, Any]:
    first_seen = window.check("first_seen_ts", v.first_seen_ts)
    day, hour = local(first_seen, tz)
    return {"kind": v.kind, "visitor_id": v.visitor_id, "member_id": v.member_id, "role": v.role,
            "camera_id": v.camera_id, "identified": v.identified, "first_seen_ts": first_seen,
            "store_day": day, "store_hour": hour}


def _alert(member_id: str, ts: datetime, tz: tzinfo, **values: Any) -> dict[str, Any]:
    """A row of the `alerts` table: the fields an alert kind does not have are null."""
    return {"member_id": member_id, "store_day": local(ts, tz)[0], "visit_event_id": None, "appointment_id": None,
            "scheduled_at": None, "channel": None, "advisor": None, "minutes_early": None, "tier": None, **values}


def _arrival(a: ArrivalAlert, window: Window, tz: tzinfo) -> dict[str, Any]:
    booking = a.booking or events.AppointmentRef()
    scheduled = booking.scheduled_at and window.check("scheduled_at", booking.scheduled_at, booked=True)
    return _alert(a.member_id, a.ts, tz, kind="arrival", visit_event_id=a.visit_event_id, tier=a.tier,
                  appointment_id=booking.appointment_id, scheduled_at=scheduled, channel=booking.channel,
                  advisor=booking.advisor)


def _appointment(a: AppointmentAlert, window: Window, tz: tzinfo) -> dict[str, Any]:
    return _alert(a.member_id, a.ts, tz, kind="appointment", appointment_id=a.appointment_id,
                  scheduled_at=window.check("scheduled_at", a.scheduled_at, booked=True), channel=a.channel,
                  advisor=a.advisor, minutes_early=float(a.minutes_early))


def _no_show(n: NoShowAlert, window: Window, tz: tzinfo) -> dict[str, Any]:
    scheduled = window.check("scheduled_at", n.scheduled_at, booked=True)
    return {"appointment_id": n.appointment_id, "member_id": n.member_id, "scheduled_at": scheduled,
            "grace_minutes": float(n.grace_minutes), "channel": n.channel, "store_day": local(scheduled, tz)[0]}


def _ack(a: Ack, window: Window, tz: tzinfo) -> dict[str, Any]:
    return {"visit_event_id": a.visit_event_id, "guide": a.guide}


def _erasure(d: MemberDeleted, window: Window, tz: tzinfo) -> dict[str, Any]:
    # The member's id is removed from every table of the chain (hq/writer.py).
    return {"member_id": d.member_id}


def _status(s: Status, window: Window, tz: tzinfo) -> dict[str, Any]:
    return {"state": s.state, "version": s.version, "cameras": dict(s.cameras), "storage": s.storage,
            "outbox_backlog": s.outbox_backlog, "dead_letters": s.dead_letters, "timezone": _zone_name(s.timezone)}


def _zone_name(name: str | None) -> str | None:
    """The status's `timezone` (the box's IANA zone), or None when not sent; Reject for a name no
    zone has (it would set the store's days)."""
    if name is None:
        return None
    try:
        check_timezone(name)
    except ValueError as exc:
        raise Reject(f"timezone {exc}") from None
    return name


def _counts(c: Counts, window: Window, tz: tzinfo) -> dict[str, Any]:
    return {"store_day": window.check_day("date", c.date), "visits": c.visits, "reentries": c.reentries,
            "member_visits": c.member_visits, "by_hour": list(c.by_hour), "exits": c.exits}


_VALUES: dict[type[events.Event], Callable[[Any, Window, tzinfo], dict[str, Any]]] = {
    VisitEvent: _visit, ArrivalAlert: _arrival, AppointmentAlert: _appointment, NoShowAlert: _no_show, Ack: _ack,
    MemberDeleted: _erasure, Status: _status, Counts: _counts,
}
