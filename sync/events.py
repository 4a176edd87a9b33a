"""MQTT topics and payloads (CONTRACT, "MQTT"): the one place they are named.

Every uplink message is a dataclass whose `to_json()` is the contract's payload:
the required fields, plus `event_id` (a UUID made once, when the event is
created, so a re-send carries the same id and consumers can de-duplicate),
`store_id` and `ts`. Each class knows its topic name, whether the broker keeps
it (`RETAINED`: state only — status and today's counts, never events) and
whether it is a guide alert (`ALERT`: alerts expire). Data only: no I/O.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import KW_ONLY, dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Literal

# -- topic names (the part after "{prefix}/{store_id}/") ----------------------------

STATUS = "status"
VISITS = "visits"
ALERT_ARRIVAL = "alerts/arrival"
ALERT_APPOINTMENT = "alerts/appointment"
ALERT_NO_SHOW = "alerts/no_show"
COUNTS = "counts"
COUNTS_GET = "counts/get"
MEMBERS_UPSERT = "members/upsert"
MEMBERS_DELETE = "members/delete"
MEMBERS_DELETED = "members/deleted"
APPOINTMENTS_UPSERT = "appointments/upsert"
APPOINTMENTS_DELETE = "appointments/delete"
APPOINTMENTS_BOOKED = "appointments/booked"  # added to the contract: the bookings a box holds, for head office
ERRORS = "errors"

UPLINK = (STATUS, VISITS, ALERT_ARRIVAL, ALERT_APPOINTMENT, ALERT_NO_SHOW, COUNTS, MEMBERS_DELETED, ERRORS,
          APPOINTMENTS_BOOKED)
# Published by the guide console (console/server.py), not the daemon: a guide took care of an arrival.
ALERT_ACK = "alerts/ack"

DOWNLINK = (COUNTS_GET, MEMBERS_UPSERT, MEMBERS_DELETE, APPOINTMENTS_UPSERT, APPOINTMENTS_DELETE)


def store_topics(prefix: str, store_id: str) -> str:
    """The start every topic of one store shares: store_topics("footfall", "sh-001") -> "footfall/sh-001/"."""
    return topic(prefix, store_id, "x")[:-1]  # the same checks of prefix and store_id


def topic(prefix: str, store_id: str, name: str) -> str:
    """The full topic: topic("footfall", "sh-001", VISITS) -> "footfall/sh-001/visits"."""
    for what, part in (("prefix", prefix), ("store_id", store_id), ("name", name)):
        if not part or any(c in part for c in "+#\0"):
            raise ValueError(f"topic {what} must be non-empty without MQTT wildcards, got {part!r}")
    return f"{prefix}/{store_id}/{name}"


def topic_filter(prefix: str, name: str, store_id: str | None = None) -> str:
    """A subscription filter for `name` of one store, or of every store when `store_id` is None.

    topic_filter("footfall", VISITS) -> "footfall/+/visits"; `name` may be or end in a "#" level:
    topic_filter("footfall", "#", "sh-001") -> "footfall/sh-001/#".
    """
    levels = name.split("/")
    if not name or any(not level or ("#" in level and level != "#") or "+" in level or "\0" in level
                       for level in levels) or "#" in levels[:-1]:
        raise ValueError(f"topic filter name must be topic levels, optionally ending in '#', got {name!r}")
    topic(prefix, store_id or "x", "x")  # the same checks of prefix and store_id
    return f"{prefix}/{store_id or '+'}/{name}"


def split_topic(prefix: str, full: str) -> tuple[str, str]:
    """The inverse of `topic`: split_topic("footfall", "footfall/sh-001/alerts/ack") -> ("sh-001", "alerts/ack").

    A ValueError names what is wrong: not under `prefix`, no store id, no name, or an MQTT
    wildcard (a subscription filter is not a topic a message arrives on).
    """
    if any(c in full for c in "+#\0"):
        raise ValueError("topic holds an MQTT wildcard")
    head = prefix + "/"
    if not prefix or not full.startswith(head):
        raise ValueError(f"topic is not under {prefix!r}")
    store_id, _, name = full[len(head):].partition("/")
    if not store_id or not name:
        raise ValueError("topic has no store id or no message name")
    return store_id, name


def parse_topic(prefix: str, full: str) -> tuple[str, str] | None:
    """(store_id, name) of a topic under `prefix`, or None when it is not one (see `split_topic`)."""
    try:
        return split_topic(prefix, full)
    except ValueError:
        return None


def store_topic_name(prefix: str, store_id: str, full: str) -> str | None:
    """The name of a topic of store `store_id` under `prefix` ("visits", "alerts/arrival"), else None."""
    parsed = parse_topic(prefix, full)
    return parsed[1] if parsed is not None and parsed[0] == store_id else None


def iso(ts: datetime) -> str:
    """ISO 8601 with offset and milliseconds: "2026-11-23T10:00:00.000+08:00"; refuses naive datetimes."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got {ts.isoformat()}")
    return ts.isoformat(timespec="milliseconds")


def parse_iso(raw: str) -> datetime:
    """The timestamp of an ISO 8601 text that carries a UTC offset (the contract's times);
    ValueError saying which of the two it is not."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp with offset") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a UTC offset (e.g. 2026-11-23T10:00:00+08:00)")
    return value


STORE_ID_MAX = 64
_STORE_ID = re.compile(rf"[A-Za-z0-9_.-]{{1,{STORE_ID_MAX}}}")
_UNCLEAN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def is_store_id(value: object) -> bool:
    """True for a store id head office and its dashboard accept: 1 to 64 of A-Z a-z 0-9 _ . -
    (the characters the box's `store_id` allows)."""
    return isinstance(value, str) and _STORE_ID.fullmatch(value) is not None


def text_problem(value: str) -> str | None:
    """What makes `value` unfit to be stored or shown as text, or None: a NUL, another control
    character (C0, DEL, C1, a line or paragraph separator) or a lone surrogate (no UTF-8 for it)."""
    found = _UNCLEAN.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\0":
        return "a NUL character"
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate"
    return f"a control character (U+{ord(char):04X})"


def _new_id() -> str:
    return str(uuid.uuid4())


# -- events --------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """What every uplink message carries; subclasses add the contract's fields."""

    TOPIC: ClassVar[str]
    RETAINED: ClassVar[bool] = False
    ALERT: ClassVar[bool] = False

    _: KW_ONLY
    store_id: str
    ts: datetime
    event_id: str = field(default_factory=_new_id)

    def __post_init__(self) -> None:
        iso(self.ts)  # a naive ts fails at creation, not when the outbox serialises it
        if not self.store_id:
            raise ValueError("store_id must not be empty")

    def fields(self) -> dict[str, Any]:
        """The class's own contract fields, as JSON values."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The payload: the contract's fields plus event_id, store_id and ts."""
        return {**self.fields(), "event_id": self.event_id, "store_id": self.store_id, "ts": iso(self.ts)}


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class VisitEvent(Event):
    """A counted entry: a new visit or a re-entry within the window (`footfall/{store}/visits`)."""

    TOPIC: ClassVar[str] = VISITS

    kind: Literal["visit", "reentry"]
    visitor_id: str
    member_id: str | None
    role: Literal["member", "visitor"]
    camera_id: str
    first_seen_ts: datetime
    identified: bool = True  # False: counted without a usable face, never matched to anyone

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of(self.kind, ("visit", "reentry"), "kind")
        _one_of(self.role, ("member", "visitor"), "role")
        if (self.role == "member") != (self.member_id is not None):
            raise ValueError("member_id is required for role 'member' and must be None for 'visitor'")
        iso(self.first_seen_ts)

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "visitor_id": self.visitor_id, "member_id": self.member_id,
                "role": self.role, "camera_id": self.camera_id, "first_seen_ts": iso(self.first_seen_ts),
                "identified": self.identified}


@dataclass(frozen=True)
class ArrivalAlert(Event):
    """A member arrived (once per visit); CRM profile fields ride along at the top level."""

    TOPIC: ClassVar[str] = ALERT_ARRIVAL
    ALERT: ClassVar[bool] = True

    member_id: str
    name: str
    tier: str | None
    visit_event_id: str
    appointment: dict[str, Any] | None = None
    profile: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        required = {"member_id": self.member_id, "name": self.name, "tier": self.tier,
                    "visit_event_id": self.visit_event_id, "appointment": self.appointment}
        # Profile first, so a CRM field named like a required key (or event_id/ts) can never replace it.
        return {**self.profile, **required}


@dataclass(frozen=True)
class AppointmentAlert(Event):
    """A member with an appointment today arrived; `minutes_early` is negative when late."""

    TOPIC: ClassVar[str] = ALERT_APPOINTMENT
    ALERT: ClassVar[bool] = True

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    channel: str
    advisor: str
    minutes_early: int

    def __post_init__(self) -> None:
        super().__post_init__()
        iso(self.scheduled_at)

    def fields(self) -> dict[str, Any]:
        return {"appointment_id": self.appointment_id, "member_id": self.member_id,
                "scheduled_at": iso(self.scheduled_at), "channel": self.channel, "advisor": self.advisor,
                "minutes_early": self.minutes_early}


@dataclass(frozen=True)
class NoShowAlert(Event):
    """No arrival by scheduled_at + grace. Beyond the contract's fields, the booking's channel and
    advisor, and the member's name, tier and CRM profile (at the top level, as in the arrival
    alert) when the gallery holds the member, so the guide knows whom to call (name None if not)."""

    TOPIC: ClassVar[str] = ALERT_NO_SHOW
    # Not an expiring alert: head office follows no-shows up, so one raised while it (or the broker)
    # was away must still reach it; the outbox keeps it until the broker has it.
    ALERT: ClassVar[bool] = False

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    grace_minutes: int
    channel: str | None = None
    advisor: str | None = None
    name: str | None = None
    tier: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        iso(self.scheduled_at)

    def fields(self) -> dict[str, Any]:
        required = {"appointment_id": self.appointment_id, "member_id": self.member_id,
                    "scheduled_at": iso(self.scheduled_at), "grace_minutes": self.grace_minutes,
                    "channel": self.channel, "advisor": self.advisor, "name": self.name, "tier": self.tier}
        return {**self.profile, **required}  # profile first: a CRM field never replaces one of ours


@dataclass(frozen=True)
class MemberDeleted(Event):
    """The answer to members/delete, sent once the person is gone from every gallery and store."""

    TOPIC: ClassVar[str] = MEMBERS_DELETED

    member_id: str
    removed: bool = True

    def fields(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "removed": self.removed}


@dataclass(frozen=True)
class AppointmentBooked(Event):
    """A booking the box holds (from the CRM's appointments/upsert or `footfall appointments import`),
    so head office counts every booking in its conversion: ids, channel and slot, never a name."""

    TOPIC: ClassVar[str] = APPOINTMENTS_BOOKED

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    channel: str

    def __post_init__(self) -> None:
        super().__post_init__()
        iso(self.scheduled_at)

    def fields(self) -> dict[str, Any]:
        return {"appointment_id": self.appointment_id, "member_id": self.member_id,
                "scheduled_at": iso(self.scheduled_at), "channel": self.channel}


@dataclass(frozen=True)
class ErrorEvent(Event):
    """A rejected downlink message: which topic, and why (the daemon keeps running)."""

    TOPIC: ClassVar[str] = ERRORS

    topic: str
    reason: str
    suppressed: int = 0  # rejections not reported since the previous errors event (rate limit)

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.topic, "reason": self.reason}
        if self.suppressed:
            out["suppressed"] = self.suppressed
        return out


CameraState = Literal["streaming", "reconnecting", "ended"]
BoxState = Literal["online", "stopped", "offline"]


@dataclass(frozen=True)
class Status(Event):
    """Availability (retained): "online" on every connect, "stopped" on clean shutdown, "offline" as the last will."""

    TOPIC: ClassVar[str] = STATUS
    RETAINED: ClassVar[bool] = True

    state: BoxState
    version: str
    cameras: dict[str, CameraState] = field(default_factory=dict)
    storage: str | None = None  # "ok" or "error: <reason>"; left out when not known (the last will)
    dead_letters: int | None = None  # outbox rows the broker could never take (kept, not sent)
    outbox_backlog: int | None = None  # outbox rows waiting to be sent when the status was made
    timezone: str | None = None  # the store's IANA zone (config `timezone`): its days and hours at head office
    # Live cameras, by id: analysed_fps, skipped (due frames never analysed), received, decode_ms,
    # inference_ms (per analysed frame) and frame_age_s; absent when no camera is live.
    camera_stats: dict[str, dict[str, float]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of(self.state, ("online", "stopped", "offline"), "state")
        for camera_id, state in self.cameras.items():
            _one_of(state, ("streaming", "reconnecting", "ended"), f"cameras[{camera_id!r}]")
        if self.storage is not None and not (self.storage == "ok" or self.storage.startswith("error: ")):
            raise ValueError(f'storage must be "ok" or "error: <reason>", got {self.storage!r}')

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "version": self.version, "cameras": dict(self.cameras)}
        if self.storage is not None:
            out["storage"] = self.storage
        if self.dead_letters is not None:
            out["dead_letters"] = self.dead_letters
        if self.outbox_backlog is not None:
            out["outbox_backlog"] = self.outbox_backlog
        if self.timezone is not None:
            out["timezone"] = self.timezone
        if self.camera_stats is not None:
            out["camera_stats"] = {k: dict(v) for k, v in self.camera_stats.items()}
        return out


@dataclass(frozen=True)
class Counts(Event):
    """Today's counts (retained): the store-local `date` and 24 hourly visit counts."""

    TOPIC: ClassVar[str] = COUNTS
    RETAINED: ClassVar[bool] = True

    date: date
    visits: int
    reentries: int
    member_visits: int
    by_hour: list[int]
    unidentified: int = 0  # visits counted without a usable face (a badly placed camera shows here)
    exits: int = 0  # people who crossed a camera's entry line outwards (only cameras with a line)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.date, datetime) or not isinstance(self.date, date):
            raise ValueError(f"date must be a calendar date, got {self.date!r}")
        if len(self.by_hour) != 24:
            raise ValueError(f"by_hour must hold 24 counts, got {len(self.by_hour)}")

    def fields(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "visits": self.visits, "reentries": self.reentries,
                "member_visits": self.member_visits, "unidentified": self.unidentified,
                "exits": self.exits, "by_hour": list(self.by_hour)}
