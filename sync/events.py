"""MQTT topics and payloads (CONTRACT, "MQTT"): the one place they are named, written and read.

Every uplink message is a dataclass whose `to_json()` is the contract's payload:
the required fields, plus `event_id` (a UUID made once, when the event is
created, so a re-send carries the same id and consumers can de-duplicate),
`store_id` and `ts`. Each class knows its topic name, whether the broker keeps
it (`RETAINED`: state only — status and today's counts, never events) and
whether it is a guide alert (`ALERT`: alerts expire). Data only: no I/O.

The same classes read what they write: `from_json` takes a decoded payload back to its class, with
the bounds every reader applies (text without NUL, other control characters or lone surrogates
and with a length cap, timestamps with a real UTC offset, finite and bounded numbers), or raises
`PayloadError` naming the field. `PAYLOADS` is the topic -> class table the readers dispatch on.
Where a payload came from and what a reader keeps of it (head office's clock window and store id
rule, the guide console's page) stay with the reader.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import math
import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import KW_ONLY, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal, Self

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
# counts/get answers go under `{prefix}/{store}/replies/...`: the one branch the broker's ACL lets a box
# publish answers on (config/mosquitto-acl.example).
REPLIES = "replies"


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


def reply_name(*levels: str) -> str:
    """A topic name under the replies branch: reply_name("hq-1", "0") -> "replies/hq-1/0"."""
    return "/".join((REPLIES, *levels))


def is_reply(name: str) -> bool:
    """Whether a topic name (after "{prefix}/{store}/") lies under the replies branch."""
    return name.startswith(REPLIES + "/")


def replies_branch(prefix: str, store_id: str) -> str:
    """The start of every topic a store may answer on: replies_branch("footfall", "sh-001") -> "footfall/sh-001/replies/"."""
    return store_topics(prefix, store_id) + REPLIES + "/"


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


TextFault = Literal["not a string", "blank", "too long", "unclean"]


def text_fault(value: Any, limit: int | None = None, *, blank: bool = False, clean: bool = True) -> TextFault | None:
    """The first rule for the contract's texts that `value` breaks, or None. A text is a string, not
    blank (white space only) unless `blank`, of at most `limit` characters and, if `clean`, without
    a NUL, another control character or a lone surrogate (`text_problem` says which). Each reader
    words the fault its own way, naming the field."""
    if not isinstance(value, str):
        return "not a string"
    if not blank and not value.strip():
        return "blank"
    if limit is not None and len(value) > limit:
        return "too long"
    if clean and _UNCLEAN.search(value) is not None:
        return "unclean"
    return None


def text_problem(value: str) -> str | None:
    """What makes `value` unfit to be stored or shown as text, or None: a NUL, another control
    character (C0, DEL, C1, a line or paragraph separator) or a lone surrogate (no UTF-8 for it)."""
    return "".join(_unclean(value)) or None


def _unclean(value: str) -> tuple[str, str]:
    """text_problem in two parts: what (fixed wording) and which character; both empty for a clean text."""
    found = _UNCLEAN.search(value)
    if found is None:
        return "", ""
    char = found.group()
    if char == "\0":
        return "a NUL character", ""
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate", ""
    return "a control character", f" (U+{ord(char):04X})"


def offset_name(ts: datetime) -> str:
    """The fixed-offset zone name of an aware timestamp: "+08:00"."""
    offset = ts.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _new_id() -> str:
    return str(uuid.uuid4())


# -- reading: the bounds of every field ------------------------------------------------

MAX_ID = 200          # characters of an id or a short text (event, visitor, member, camera, appointment ids; guide)
MAX_TEXT = 256        # characters of a name, tier, channel or advisor (the box's downlink.max_text_length at most)
MAX_TIME = 64         # characters of a timestamp's text
MAX_VERSION = 64
MAX_STORAGE = 500
MAX_CAMERAS = 64
MAX_COUNT = 2**31 - 1
MAX_MINUTES = 366 * 24 * 60  # of minutes_early and grace_minutes, either way
MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset of any time zone (Pacific/Kiritimati)
CAMERA_STATES = ("streaming", "reconnecting", "ended")


class PayloadError(ValueError):
    """A payload outside the contract. `reason` names the field and what is wrong in fixed words
    (safe to log, one of a bounded set); the message adds the offending detail when there is one."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + detail)
        self.reason = reason


class _NotJson(ValueError):
    pass


def _not_json(name: str) -> None:
    raise _NotJson(name)


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON object a message's payload holds; PayloadError when it is not UTF-8, not JSON (NaN
    and Infinity are not JSON) or not an object."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError:
        raise PayloadError("malformed JSON: not UTF-8") from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None
    except _NotJson:
        raise PayloadError("malformed JSON: NaN or Infinity is not a JSON number") from None
    except ValueError as exc:
        raise PayloadError("malformed JSON", f": {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise PayloadError("payload is not a JSON object")
    return value


Reader = Callable[[str, Any], Any]  # (key, the JSON value or None when absent) -> the field's value


def _text(limit: int = MAX_ID, *, blank: bool = False, clean: bool = True) -> Reader:
    """A required text (`text_fault`) of at most `limit` characters: not blank unless `blank`, and, if
    `clean`, without NUL, other control characters or lone surrogates."""
    words = {"not a string": "must be a string", "blank": "must not be empty",
             "too long": f"is longer than {limit} characters"}

    def read(key: str, value: Any) -> str:
        if value is None:
            raise PayloadError(f"{key} is required")
        fault = text_fault(value, limit, blank=blank, clean=clean)
        if fault == "unclean":
            what, which = _unclean(value)
            raise PayloadError(f"{key} holds {what}", which)
        if fault is not None:
            raise PayloadError(f"{key} {words[fault]}")
        return value
    return read


def _needed(read: Reader) -> Reader:
    """`read`, refusing an absent value (or null) as "<key> is required"."""
    def needed(key: str, value: Any) -> Any:
        if value is None:
            raise PayloadError(f"{key} is required")
        return read(key, value)
    return needed


def _optional(read: Reader) -> Reader:
    """`read`, except that an absent value (or null) reads as None."""
    return lambda key, value: None if value is None else read(key, value)


ID = _text()
OPTIONAL_ID = _optional(_text(blank=True))
TEXT = _text(MAX_TEXT, blank=True)  # channel, advisor: required, may be empty
OPTIONAL_TEXT = _optional(TEXT)


def _one_of(allowed: tuple[str, ...], what: str) -> Reader:
    """One of `allowed`; PayloadError "unknown <what>" otherwise."""
    def read(key: str, value: Any) -> str:
        text = ID(key, value)
        if text not in allowed:
            raise PayloadError(f"unknown {what}", f" {text[:40]!r}")
        return text
    return read


def _instant(key: str, value: Any) -> datetime:
    """An ISO 8601 timestamp whose UTC offset is one a time zone can have (whole minutes, at most 14 h)."""
    raw = _text(MAX_TIME)(key, value)
    try:
        ts = parse_iso(raw)
    except ValueError as exc:
        raise PayloadError(f"{key} {exc}") from None
    offset = ts.utcoffset() or timedelta(0)
    if abs(offset) > MAX_OFFSET or offset % timedelta(minutes=1):
        raise PayloadError(f"{key} has a UTC offset no time zone has", f" ({offset_name(ts)})")
    return ts


def _day(key: str, value: Any) -> date:
    try:
        return date.fromisoformat(ID(key, value))
    except ValueError:
        raise PayloadError(f"{key} is not a calendar date YYYY-MM-DD") from None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


@_needed
def _count(key: str, value: Any) -> int:
    """An integer from 0 to 2^31 - 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{key} must be an integer")
    if not _is_count(value):
        raise PayloadError(f"{key} is out of range")
    return value


@_needed
def _hours(key: str, value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) != 24 or not all(_is_count(v) for v in value):
        raise PayloadError(f"{key} must be 24 non-negative integers")
    return value


@_needed
def _minutes(key: str, value: Any) -> float:
    """A number of minutes, finite and within MAX_MINUTES either way (compared before any float
    conversion, so an integer too large for a float is refused, not raised)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(f"{key} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{key} must be a finite number")
    if not -MAX_MINUTES <= value <= MAX_MINUTES:
        raise PayloadError(f"{key} is out of range (at most {MAX_MINUTES} minutes either way)")
    return value


@_needed
def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PayloadError(f"{key} must be true or false")
    return value


@_needed
def _cameras(key: str, value: Any) -> dict[str, str]:
    """Camera id -> state: clean ids, the contract's states."""
    if not isinstance(value, dict) or len(value) > MAX_CAMERAS:
        raise PayloadError(f"{key} must be an object of at most {MAX_CAMERAS} entries")
    for camera_id, state in value.items():
        ID("camera id", camera_id)
        if state not in CAMERA_STATES:
            raise PayloadError(f"{key} must map camera ids to one of {', '.join(CAMERA_STATES)}")
    return value


@_needed
def _camera_stats(key: str, value: Any) -> dict[str, dict[str, float]]:
    """Camera id -> {figure name: finite number}."""
    if not isinstance(value, dict) or len(value) > MAX_CAMERAS:
        raise PayloadError(f"{key} must be an object of at most {MAX_CAMERAS} entries")
    for camera_id, figures in value.items():
        ID("camera id", camera_id)
        if not isinstance(figures, dict) or len(figures) > MAX_CAMERAS or not all(
                _is_figure(n) for n in figures.values()):
            raise PayloadError(f"{key} must map camera ids to objects of finite numbers")
        for name in figures:
            ID("camera figure", name)
    return value


def _is_figure(value: Any) -> bool:
    """A finite number within ±2^53 (an integer too large for a float is refused, not raised)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (not isinstance(value, float) or math.isfinite(value)) and abs(value) <= 2**53


def _storage(key: str, value: Any) -> str:
    text = _text(MAX_STORAGE, blank=True)(key, value)
    if not (text == "ok" or text.startswith("error: ")):
        raise PayloadError(f'{key} must be "ok" or "error: <reason>"')
    return text


def _attr(key: str) -> str:
    """The dataclass field of a JSON key ("from" is a Python keyword: from_)."""
    return key + "_" if keyword.iskeyword(key) else key


_DEFAULTED: dict[type, frozenset[str]] = {}


def _defaulted(cls: type) -> frozenset[str]:
    """The fields of a dataclass that have a default."""
    if cls not in _DEFAULTED:
        _DEFAULTED[cls] = frozenset(f.name for f in dataclasses.fields(cls)
                                    if f.default is not dataclasses.MISSING
                                    or f.default_factory is not dataclasses.MISSING)
    return _DEFAULTED[cls]


@dataclass(frozen=True)
class Payload:
    """A contract payload: `to_json` writes it, `from_json` reads it back with the bounds of every field.

    `READERS` maps each JSON key to its reader (in the order fields are checked); a key left out
    (or null) whose field has a default takes the default. `EXTRAS` names the field that takes
    every key no reader knows (a CRM profile riding at the top level), else they are ignored.
    """

    READERS: ClassVar[dict[str, Reader]] = {}
    EXTRAS: ClassVar[str | None] = None

    def to_json(self) -> dict[str, Any]:
        """The payload as JSON values."""
        raise NotImplementedError

    @classmethod
    def readers(cls) -> dict[str, Reader]:
        """JSON key -> reader, for every field of the payload."""
        return cls.READERS

    @classmethod
    def from_json(cls, payload: Any) -> Self:
        """The payload read back; PayloadError naming the first field outside the contract."""
        if not isinstance(payload, dict):
            raise PayloadError("payload is not a JSON object")
        readers = cls.readers()
        defaults = _defaulted(cls)
        values: dict[str, Any] = {}
        for key, read in readers.items():
            value = read(key, payload.get(key))
            if value is not None or _attr(key) not in defaults:
                values[_attr(key)] = value
        if cls.EXTRAS is not None:
            values[cls.EXTRAS] = {k: v for k, v in payload.items() if k not in readers}
        try:
            return cls(**values)
        except ValueError as exc:  # a rule across fields (__post_init__)
            raise PayloadError(str(exc)) from None

    @classmethod
    def check_fields(cls, payload: dict[str, Any], required: Collection[str] = ()) -> None:
        """Check the fields `payload` holds (null counts as absent) and those in `required`, with the
        bounds `from_json` applies; PayloadError naming the first that fails. For a reader that shows
        what it gets and needs only some of it."""
        for key, read in cls.readers().items():
            if payload.get(key) is not None or key in required:
                read(key, payload.get(key))


# -- events --------------------------------------------------------------------------

@dataclass(frozen=True)
class Event(Payload):
    """What every uplink message carries; subclasses add the contract's fields."""

    TOPIC: ClassVar[str]
    RETAINED: ClassVar[bool] = False
    ALERT: ClassVar[bool] = False
    ENVELOPE: ClassVar[dict[str, Reader]] = {"store_id": ID, "event_id": ID, "ts": _instant}

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

    @classmethod
    def readers(cls) -> dict[str, Reader]:
        """The envelope's readers, then the class's own."""
        return {**cls.ENVELOPE, **cls.READERS}


def _must_be_one_of(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class VisitEvent(Event):
    """A counted entry: a new visit or a re-entry within the window (`footfall/{store}/visits`)."""

    TOPIC: ClassVar[str] = VISITS
    READERS: ClassVar[dict[str, Reader]] = {
        "kind": _one_of(("visit", "reentry"), "visit kind"), "visitor_id": ID, "member_id": OPTIONAL_ID,
        "role": _one_of(("member", "visitor"), "role"), "camera_id": ID, "first_seen_ts": _instant,
        "identified": _optional(_flag)}

    kind: Literal["visit", "reentry"]
    visitor_id: str
    member_id: str | None
    role: Literal["member", "visitor"]
    camera_id: str
    first_seen_ts: datetime
    identified: bool = True  # False: counted without a usable face, never matched to anyone

    def __post_init__(self) -> None:
        super().__post_init__()
        _must_be_one_of(self.kind, ("visit", "reentry"), "kind")
        _must_be_one_of(self.role, ("member", "visitor"), "role")
        if (self.role == "member") != (self.member_id is not None):
            raise ValueError("member_id is required for role 'member' and must be None for 'visitor'")
        iso(self.first_seen_ts)

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "visitor_id": self.visitor_id, "member_id": self.member_id,
                "role": self.role, "camera_id": self.camera_id, "first_seen_ts": iso(self.first_seen_ts),
                "identified": self.identified}


@dataclass(frozen=True)
class AppointmentRef(Payload):
    """The booking an arrival alert names (its `appointment` object), as read: any part may be missing."""

    READERS: ClassVar[dict[str, Reader]] = {
        "appointment_id": OPTIONAL_ID, "scheduled_at": _optional(_instant), "channel": OPTIONAL_TEXT,
        "advisor": OPTIONAL_TEXT}

    appointment_id: str | None = None
    scheduled_at: datetime | None = None
    channel: str | None = None
    advisor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"appointment_id": self.appointment_id,
                "scheduled_at": None if self.scheduled_at is None else iso(self.scheduled_at),
                "channel": self.channel, "advisor": self.advisor}


def _appointment(key: str, value: Any) -> dict[str, Any] | None:
    """An arrival's `appointment`: null, or an object whose booking fields are within bounds (kept as sent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadError(f"{key} must be an object or null")
    AppointmentRef.from_json(value)
    return value


@dataclass(frozen=True)
class ArrivalAlert(Event):
    """A member arrived (once per visit); CRM profile fields ride along at the top level."""

    TOPIC: ClassVar[str] = ALERT_ARRIVAL
    ALERT: ClassVar[bool] = True
    READERS: ClassVar[dict[str, Reader]] = {
        "member_id": ID, "name": _text(MAX_TEXT), "tier": OPTIONAL_TEXT, "visit_event_id": ID,
        "appointment": _appointment}
    EXTRAS: ClassVar[str | None] = "profile"

    member_id: str
    name: str
    tier: str | None
    visit_event_id: str
    appointment: dict[str, Any] | None = None
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def booking(self) -> AppointmentRef | None:
        """The booking the alert names, read (None when it names none)."""
        return None if self.appointment is None else AppointmentRef.from_json(self.appointment)

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
    READERS: ClassVar[dict[str, Reader]] = {
        "appointment_id": ID, "member_id": ID, "scheduled_at": _instant, "channel": TEXT, "advisor": TEXT,
        "minutes_early": _minutes}

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    channel: str
    advisor: str
    minutes_early: float  # whole minutes from the box; a reader takes any finite number

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
    READERS: ClassVar[dict[str, Reader]] = {
        "appointment_id": ID, "member_id": ID, "scheduled_at": _instant, "grace_minutes": _minutes,
        "channel": OPTIONAL_TEXT, "advisor": OPTIONAL_TEXT, "name": _optional(_text(MAX_TEXT)), "tier": OPTIONAL_TEXT}
    EXTRAS: ClassVar[str | None] = "profile"

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    grace_minutes: float  # whole minutes from the box; a reader takes any finite number
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
    READERS: ClassVar[dict[str, Reader]] = {"member_id": ID, "removed": _optional(_flag)}

    member_id: str
    removed: bool = True

    def fields(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "removed": self.removed}


@dataclass(frozen=True)
class AppointmentBooked(Event):
    """A booking the box holds (from the CRM's appointments/upsert or `footfall appointments import`),
    so head office counts every booking in its conversion: ids, channel and slot, never a name."""

    TOPIC: ClassVar[str] = APPOINTMENTS_BOOKED
    READERS: ClassVar[dict[str, Reader]] = {
        "appointment_id": ID, "member_id": ID, "scheduled_at": _instant, "channel": TEXT}

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
    # The reason may quote what the box was sent, or a library's message over several lines.
    READERS: ClassVar[dict[str, Reader]] = {
        "topic": _text(65535, blank=True, clean=False), "reason": _text(65535, blank=True, clean=False),
        "suppressed": _optional(_count)}

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
    READERS: ClassVar[dict[str, Reader]] = {
        "state": _one_of(("online", "stopped", "offline"), "status state"), "version": _text(MAX_VERSION, blank=True),
        "cameras": _optional(_cameras), "storage": _optional(_storage), "dead_letters": _optional(_count),
        "outbox_backlog": _optional(_count), "timezone": _optional(_text(MAX_TIME)),
        "camera_stats": _optional(_camera_stats)}

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
        _must_be_one_of(self.state, ("online", "stopped", "offline"), "state")
        for camera_id, state in self.cameras.items():
            _must_be_one_of(state, CAMERA_STATES, f"cameras[{camera_id!r}]")
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
    READERS: ClassVar[dict[str, Reader]] = {
        "date": _day, "visits": _count, "reentries": _count, "member_visits": _count, "by_hour": _hours,
        "unidentified": _optional(_count), "exits": _optional(_count)}

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


@dataclass(frozen=True)
class Ack(Event):
    """A guide takes care of an arrival (`alerts/ack`, published by the guide console, not the daemon)."""

    TOPIC: ClassVar[str] = ALERT_ACK

    READERS: ClassVar[dict[str, Reader]] = {"visit_event_id": ID, "guide": ID}

    visit_event_id: str
    guide: str

    def fields(self) -> dict[str, Any]:
        return {"visit_event_id": self.visit_event_id, "guide": self.guide}


# -- downlink payloads and answers (no event envelope) -------------------------------------

@dataclass(frozen=True)
class AppointmentUpsert(Payload):
    """A booking the CRM sends a box (`appointments/upsert`); head office reads it too."""

    TOPIC: ClassVar[str] = APPOINTMENTS_UPSERT
    READERS: ClassVar[dict[str, Reader]] = {
        "appointment_id": ID, "member_id": ID, "scheduled_at": _instant, "channel": TEXT, "advisor": TEXT}

    appointment_id: str
    member_id: str
    scheduled_at: datetime
    channel: str
    advisor: str

    def __post_init__(self) -> None:
        iso(self.scheduled_at)

    def to_json(self) -> dict[str, Any]:
        return {"appointment_id": self.appointment_id, "member_id": self.member_id,
                "scheduled_at": iso(self.scheduled_at), "channel": self.channel, "advisor": self.advisor}


@dataclass(frozen=True)
class AppointmentDelete(Payload):
    """A booking the CRM cancels (`appointments/delete`); head office reads it too."""

    TOPIC: ClassVar[str] = APPOINTMENTS_DELETE
    READERS: ClassVar[dict[str, Reader]] = {"appointment_id": ID}

    appointment_id: str

    def to_json(self) -> dict[str, Any]:
        return {"appointment_id": self.appointment_id}


@dataclass(frozen=True)
class CountsBucket(Payload):
    """One local hour or day of a counts/get answer, from `start`."""

    READERS: ClassVar[dict[str, Reader]] = {
        "start": _instant, "visits": _count, "reentries": _count, "member_visits": _count,
        "unidentified": _optional(_count), "exits": _optional(_count)}

    start: datetime
    visits: int
    reentries: int
    member_visits: int
    unidentified: int = 0
    exits: int = 0

    def __post_init__(self) -> None:
        iso(self.start)

    def to_json(self) -> dict[str, Any]:
        return {"start": iso(self.start), "visits": self.visits, "reentries": self.reentries,
                "member_visits": self.member_visits, "unidentified": self.unidentified, "exits": self.exits}


@_needed
def _buckets(key: str, value: Any) -> list[CountsBucket]:
    if not isinstance(value, list):
        raise PayloadError(f"{key} must be a list")
    return [CountsBucket.from_json(b) for b in value]


@dataclass(frozen=True)
class CountsReply(Payload):
    """The answer to counts/get, on the request's response topic (under `replies/`): the range asked
    for, [from_, to), and its buckets."""

    READERS: ClassVar[dict[str, Reader]] = {
        "store_id": ID, "from": _instant, "to": _instant, "by": _one_of(("hour", "day"), "bucket length"),
        "buckets": _buckets}

    store_id: str
    from_: datetime
    to: datetime
    by: Literal["hour", "day"]
    buckets: list[CountsBucket]

    def __post_init__(self) -> None:
        iso(self.from_)
        iso(self.to)
        _must_be_one_of(self.by, ("hour", "day"), "by")

    def to_json(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "from": iso(self.from_), "to": iso(self.to), "by": self.by,
                "buckets": [b.to_json() for b in self.buckets]}


# The class that writes and reads the payloads of each topic name (a counts/get answer goes to the
# topic its request names: CountsReply).
PAYLOADS: dict[str, type[Payload]] = {cls.TOPIC: cls for cls in (
    Status, VisitEvent, ArrivalAlert, AppointmentAlert, NoShowAlert, Counts, MemberDeleted, ErrorEvent,
    AppointmentBooked, Ack, AppointmentUpsert, AppointmentDelete)}
