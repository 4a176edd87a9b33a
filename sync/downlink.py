"""Downlink messages from the CRM and HQ, checked into typed commands (CONTRACT, topics marked "down").

`Downlink.parse` reads one message completely (fields, images decoded, vectors normalised) into
the command of its topic, or raises `Rejected` with a reason that names the field (and the index
of a bad image or vector) for the `errors` event. It changes nothing: the store applies the
commands (`edge/store.py`), so a rejected message leaves the state as it was. `counts/get`
becomes a `CountsGet` whose answer `counts_reply` shapes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import numpy as np

from footfall.dedup.gallery import Person, Role
from footfall.recognition.images import decode_image
from footfall.sync.appointments import Appointment
from footfall.sync.counts import BY, bucket_floor, zone
from footfall.sync.events import (
    APPOINTMENTS_DELETE,
    APPOINTMENTS_UPSERT,
    COUNTS_GET,
    MEMBERS_DELETE,
    MEMBERS_UPSERT,
    CountsBucket,
    CountsReply,
    parse_iso,
    replies_branch,
    text_fault,
    text_problem,
)

MAX_PAYLOAD = 4 * 1024 * 1024
MAX_IMAGE_PIXELS = 16_000_000  # a 4 MiB PNG of one colour could otherwise decode to gigabytes
MAX_BUCKETS = 400
ROLES = ("member", "staff")
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"

EmbedPhotos = Callable[[list[tuple[str, np.ndarray]]], np.ndarray]


@dataclass(frozen=True)
class Limits:
    """What one downlink message may hold (config `[downlink]` and `members.max_vectors`)."""

    max_payload: int = MAX_PAYLOAD
    max_images: int = 8
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_total_pixels: int = 32_000_000
    max_vectors: int = 20
    max_id_length: int = 128
    max_text_length: int = 256
    max_profile_bytes: int = 16 * 1024
    max_buckets: int = MAX_BUCKETS

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        """The limits of a `Config`."""
        d = config.downlink
        return cls(max_payload=d.max_payload, max_images=d.max_images, max_image_pixels=d.max_image_pixels,
                   max_total_pixels=d.max_total_pixels, max_vectors=config.members.max_vectors,
                   max_id_length=d.max_id_length, max_text_length=d.max_text_length,
                   max_profile_bytes=d.max_profile_bytes, max_buckets=d.counts_max_buckets)


class Rejected(ValueError):
    """A downlink message that cannot be applied; the message is the reason."""


@dataclass(frozen=True)
class ReplyAddress:
    """Where a request asks to be answered, read from its MQTT 5 properties where it comes in
    (Response Topic, Correlation Data): plain values, no MQTT library type."""

    topic: str | None = None
    correlation: bytes | None = None


@dataclass(frozen=True)
class Reply:
    """An answer to publish at once, not an event (a counts/get reply): topic, payload, and the
    request's Correlation Data."""

    topic: str
    payload: dict[str, Any]
    correlation: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a downlink message: applied (`ok`), or rejected with a `reason` for the `errors` event.

    `reply`, when set, tells the sender what was done (members/delete: where the member was
    found); `answer` is a `Reply` to publish (counts/get).
    """

    ok: bool
    reason: str | None = None
    reply: dict | None = None
    answer: Reply | None = None


@dataclass(frozen=True)
class MemberUpsert:
    """A checked members/upsert: the person, and either decoded photos or unit embeddings."""

    person: Person
    photos: list[tuple[str, np.ndarray]] | None
    embeddings: np.ndarray | None
    ts: datetime | None = None  # when the CRM sent it (optional `ts`): checked against erase tombstones


@dataclass(frozen=True)
class MemberDelete:
    """A checked members/delete: whom to erase, and when the CRM asked (None: the box stamps it)."""

    member_id: str
    ts: datetime | None = None


@dataclass(frozen=True)
class AppointmentUpsert:
    """A checked appointments/upsert."""

    appointment: Appointment


@dataclass(frozen=True)
class AppointmentDelete:
    """A checked appointments/delete."""

    appointment_id: str


@dataclass(frozen=True)
class CountsRequest:
    """A checked counts/get: the range [from_, to) (aware), `by` "hour"|"day", and an optional reply topic."""

    from_: datetime
    to: datetime
    by: str
    reply_to: str | None


@dataclass(frozen=True)
class CountsGet:
    """A checked counts/get with the topic its answer goes to (under the store's `replies/`)."""

    request: CountsRequest
    reply_topic: str
    correlation: bytes | None = None


Command = MemberUpsert | MemberDelete | AppointmentUpsert | AppointmentDelete | CountsGet


# -- parsing (pure) ----------------------------------------------------------------

def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def decode_object(payload: bytes, max_payload: int = MAX_PAYLOAD, *, empty_ok: bool = False) -> dict[str, Any]:
    """The JSON object of a payload, or Rejected: too large, not UTF-8, not (strict) JSON, not an object."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise Rejected(f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > max_payload:
        raise Rejected(f"payload is {len(payload)} bytes, over the limit of {max_payload} bytes")
    if empty_ok and not payload.strip():
        return {}
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"payload is not UTF-8 text (byte {exc.start})") from None
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise Rejected("payload is not usable JSON: nested too deeply") from None
    except ValueError as exc:
        raise Rejected(f"payload is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise Rejected(f"payload must be a JSON object, got {_json_type(message)}")
    return message


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def text_field(message: dict, key: str, *, required: bool = True, non_empty: bool = True,
               max_length: int | None = None) -> str | None:
    """A text field by the contract's rules (`events.text_fault`); Rejected naming it when missing (if
    required), not a string, blank (if non_empty), longer than `max_length` characters, or holding a
    NUL, another control character or a lone surrogate. The reason tells the sender what it sent."""
    value = message.get(key)
    if value is None:
        if required:
            raise Rejected(f"{key} is required")
        return None
    fault = text_fault(value, max_length, blank=not non_empty)
    if fault == "not a string":
        raise Rejected(f"{key} must be a string, got {_json_type(value)}")
    if fault == "blank":
        raise Rejected(f"{key} must be a non-empty string")
    if fault == "too long":
        raise Rejected(f"{key} is {len(value)} characters long, over the limit of {max_length}")
    if fault == "unclean":
        raise Rejected(f"{key} holds {text_problem(value)}")
    return value


def required_text(message: dict, key: str, *, max_length: int | None = None, non_empty: bool = True) -> str:
    """A required string field (non-blank unless `non_empty` is False) of at most `max_length`
    characters; Rejected naming it."""
    value = text_field(message, key, max_length=max_length, non_empty=non_empty)
    if value is None:  # text_field raises for a missing required field; kept for the type
        raise Rejected(f"{key} is required")
    return value


def required_time(message: dict, key: str) -> datetime:
    """A required ISO 8601 timestamp with a UTC offset; Rejected naming the field otherwise."""
    value = parse_time(message, key)
    if value is None:  # parse_time raises for a missing required field; kept for the type
        raise Rejected(f"{key} is required")
    return value


def parse_time(message: dict, key: str, *, required: bool = True) -> datetime | None:
    """An ISO 8601 timestamp with a UTC offset; Rejected naming the field otherwise."""
    raw = text_field(message, key, required=required)
    if raw is None:
        return None
    try:
        return parse_iso(raw)
    except ValueError as exc:
        raise Rejected(f"{key} {exc}, got {raw[:64]!r}") from None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header without decoding it; None if the header is unreadable."""
    if data.startswith(_PNG):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(_JPEG):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def photo_bytes(raw: Any, where: str, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[bytes, int]:
    """A base64 JPEG/PNG string -> (its bytes, its pixel count from the header), nothing decoded;
    Rejected naming `where` (e.g. "images[1]") when it is not one or has more than `max_pixels`."""
    if not isinstance(raw, str):
        raise Rejected(f"{where} must be a base64 string, got {_json_type(raw)}")
    try:
        data = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{where} is not valid base64") from None
    if not data.startswith((_JPEG, _PNG)):
        raise Rejected(f"{where} is not a JPEG or PNG image")
    size = image_size(data)
    if size is None or 0 in size:
        raise Rejected(f"{where}: not a decodable image (corrupt or truncated header)")
    if size[0] * size[1] > max_pixels:
        raise Rejected(f"{where} is {size[0]} x {size[1]} pixels, more than {max_pixels} pixels")
    return data, size[0] * size[1]


def decode_photo(raw: Any, where: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A base64 JPEG/PNG string -> BGR image; Rejected naming `where` (e.g. "images[1]")."""
    data, _ = photo_bytes(raw, where, max_pixels)
    try:
        return decode_image(data, where)
    except ValueError as exc:
        raise Rejected(str(exc)) from None


def decode_photos(images: Any, limits: Limits) -> list[tuple[str, np.ndarray]]:
    """The images of a members/upsert, decoded only once every header has been checked.

    The number of images and their pixels, one by one and all together, are read from the
    PNG/JPEG headers first: a message of many huge (but small-to-send) images is refused before
    a single one is decoded, so the work and memory one message can cost are bounded.
    """
    if not isinstance(images, list) or not images:
        raise Rejected("images must be a non-empty list of base64 JPEG/PNG strings")
    most = min(limits.max_images, limits.max_vectors)
    if len(images) > most:
        raise Rejected(f"images: {len(images)} images, more than the limit of {most} per message")
    checked = [photo_bytes(raw, f"images[{i}]", limits.max_image_pixels) for i, raw in enumerate(images)]
    total = sum(pixels for _, pixels in checked)
    if total > limits.max_total_pixels:
        raise Rejected(f"images: {total} pixels in all, more than the limit of {limits.max_total_pixels} "
                       f"per message (read from the image headers; nothing was decoded)")
    photos = []
    for i, (data, _) in enumerate(checked):
        try:
            photos.append((f"images[{i}]", decode_image(data, f"images[{i}]")))
        except ValueError as exc:
            raise Rejected(str(exc)) from None
    return photos


def unit_embeddings(rows: Any, dim: int, max_vectors: int | None = None) -> np.ndarray:
    """A JSON list of vectors -> (n, dim) float32 unit rows; Rejected naming the first bad row (or value).

    Raw vectors are L2-normalised; zero vectors and non-finite values are refused, and so is a
    list of more than `max_vectors` (before any is read).
    """
    if not isinstance(rows, list) or not rows:
        raise Rejected("embeddings must be a non-empty list of vectors")
    if max_vectors is not None and len(rows) > max_vectors:
        raise Rejected(f"embeddings: {len(rows)} vectors, more than the limit of {max_vectors} per person "
                       f"(members.max_vectors)")
    out = np.empty((len(rows), dim), dtype=np.float32)
    for i, row in enumerate(rows):
        where = f"embeddings[{i}]"
        if not isinstance(row, list):
            raise Rejected(f"{where} must be a list of numbers, got {_json_type(row)}")
        if len(row) != dim:
            raise Rejected(f"{where} has {len(row)} values; the recognizer's embeddings are {dim}-d")
        for j, value in enumerate(row):
            if type(value) not in (int, float):
                raise Rejected(f"{where}[{j}] must be a number, got {_json_type(value)}")
            try:
                finite = math.isfinite(float(value))
            except OverflowError:
                finite = False
            if not finite:
                raise Rejected(f"{where}[{j}] is not a finite number")
        vector = np.asarray(row, dtype=np.float64)
        scale = float(np.max(np.abs(vector)))
        if scale == 0.0:
            raise Rejected(f"{where} is a zero vector")
        vector = vector / scale  # no overflow or underflow in the norm
        out[i] = vector / np.linalg.norm(vector)
    return out


def parse_member_upsert(message: dict, *, recognizer_sha256: str, dim: int,
                        consent_at: datetime | None = None, limits: Limits = Limits()) -> MemberUpsert:
    """Check a members/upsert and decode its photos (or normalise its embeddings); Rejected with the reason."""
    member_id = required_text(message, "member_id", max_length=limits.max_id_length)
    name = required_text(message, "name", max_length=limits.max_text_length)
    role = required_text(message, "role")
    if role not in ROLES:
        raise Rejected(f"role must be 'member' or 'staff', got {role[:32]!r}")
    tier = text_field(message, "tier", required=False, non_empty=False, max_length=limits.max_text_length)
    ts = parse_time(message, "ts", required=False)
    consent = message.get("consent")
    if consent is not None and not isinstance(consent, bool):
        raise Rejected(f"consent must be true or false, got {_json_type(consent)}")
    if role == "member" and consent is not True:
        raise Rejected(f"member {member_id}: consent is required (consent must be true)")
    profile = message.get("profile")
    if profile is None:
        profile = {}
    if not isinstance(profile, dict):
        raise Rejected(f"profile must be an object, got {_json_type(profile)}")
    profile_bytes = len(json.dumps(profile, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if profile_bytes > limits.max_profile_bytes:
        raise Rejected(f"profile is {profile_bytes} bytes of JSON, over the limit of {limits.max_profile_bytes}")
    person = Person(member_id, name, cast(Role, role), tier=tier, consent=bool(consent),
                    consent_at=consent_at if consent else None, profile=profile)
    has_images = message.get("images") is not None
    has_embeddings = message.get("embeddings") is not None
    if has_images and has_embeddings:
        raise Rejected("give either images or embeddings, not both")
    if has_images:
        return MemberUpsert(person, decode_photos(message["images"], limits), None, ts)
    if has_embeddings:
        model = message.get("embedding_model")
        if model is None:
            raise Rejected("embedding_model is required with embeddings (the recognizer's SHA-256)")
        if not isinstance(model, str):
            raise Rejected(f"embedding_model must be a string (a SHA-256), got {_json_type(model)}")
        if model.strip().lower() != recognizer_sha256.lower():
            raise Rejected(f"embeddings from another model (sha {model[:64]}) are rejected; "
                           f"this box's recognizer is {recognizer_sha256}")
        return MemberUpsert(person, None, unit_embeddings(message["embeddings"], dim, limits.max_vectors), ts)
    raise Rejected("images or embeddings is required")


def parse_appointment(message: dict, limits: Limits = Limits()) -> Appointment:
    """Check an appointments/upsert into an Appointment; Rejected naming the field."""
    return Appointment(
        appointment_id=required_text(message, "appointment_id", max_length=limits.max_id_length),
        member_id=required_text(message, "member_id", max_length=limits.max_id_length),
        scheduled_at=required_time(message, "scheduled_at"),
        channel=required_text(message, "channel", non_empty=False, max_length=limits.max_text_length),
        advisor=required_text(message, "advisor", non_empty=False, max_length=limits.max_text_length),
    )


def parse_counts_request(payload: bytes, now: datetime, tz: str | ZoneInfo, *,
                         max_payload: int = MAX_PAYLOAD, max_buckets: int = MAX_BUCKETS) -> CountsRequest:
    """Check a counts/get request; ValueError with the reason.

    `from`/`to` are ISO 8601 with offset (default: the store day's local
    midnight .. `now`), `by` "hour" or "day" (default "hour"), `reply_to` an
    optional topic for MQTT 3.1.1 clients. An empty payload asks for the defaults.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    store_tz = zone(tz) if isinstance(tz, str) else tz
    message = decode_object(payload, max_payload, empty_ok=True)
    by = message.get("by")
    if by is None:
        by = "hour"
    if by not in BY:
        raise Rejected(f"by must be 'hour' or 'day', got {str(by)[:32]!r}")
    start = parse_time(message, "from", required=False)
    end = parse_time(message, "to", required=False)
    if start is None:
        start = bucket_floor(now, "day", store_tz).astimezone(store_tz)
    if end is None:
        end = now.astimezone(store_tz)
    if start > end:
        raise Rejected(f"from ({start.isoformat()}) must not be after to ({end.isoformat()})")
    per_bucket = timedelta(hours=1) if by == "hour" else timedelta(hours=23)  # the shortest local day
    if (end - start) / per_bucket > max_buckets:
        raise Rejected(f"the range holds more than {max_buckets} {by} buckets; ask for a shorter range"
                       + (" or by day" if by == "hour" else ""))
    reply_to = text_field(message, "reply_to", required=False)
    if reply_to is not None and (any(c in reply_to for c in "+#\x00") or len(reply_to.encode()) > 65535):
        raise Rejected("reply_to must be a topic name without wildcards (+, #) or NUL")
    return CountsRequest(start, end, by, reply_to)


def replies_prefix(prefix: str, store_id: str) -> str:
    """The only branch counts/get answers may go to: `{prefix}/{store}/replies/`."""
    return replies_branch(prefix, store_id)


def check_reply_topic(topic: str, allowed: str) -> str:
    """`topic` if it is a topic name under `allowed` (a "…/replies/" prefix); Rejected otherwise.

    Answers never go onto the box's own uplink topics, another store's, or anywhere a requester
    chooses: the broker's ACL lets a store publish `{prefix}/{store}/replies/#` and nothing similar.
    """
    if not topic.startswith(allowed) or len(topic) == len(allowed):
        raise Rejected(f"the response topic must be under {allowed} (e.g. {allowed}hq-1), got {topic[:80]!r}")
    if any(c in topic for c in "+#\x00") or len(topic.encode("utf-8")) > 1024:
        raise Rejected("the response topic must be a topic name of at most 1024 bytes, without wildcards or NUL")
    return topic


def counts_reply(store_id: str, request: CountsRequest, buckets: list[dict]) -> dict:
    """The counts/get answer (`events.CountsReply`): `{store_id, from, to, by, buckets}`."""
    return CountsReply(store_id, request.from_, request.to, cast(Literal["hour", "day"], request.by),
                       [CountsBucket.from_json(b) for b in buckets]).to_json()


# -- one message, one command ---------------------------------------------------------

class Downlink:
    """Parses the downlink topics of one store into commands; applies nothing."""

    def __init__(self, *, recognizer_sha256: str, dim: int, limits: Limits = Limits(), timezone: str = "UTC",
                 replies: str = "") -> None:
        """`replies` is the only branch counts/get answers may go to (`replies_prefix`)."""
        self.recognizer_sha256 = recognizer_sha256
        self.dim = dim
        self.limits = limits
        self.timezone = timezone
        self.replies = replies
        self._parsers: dict[str, Callable[[dict, datetime | None], Command]] = {
            MEMBERS_UPSERT: self._member_upsert,
            MEMBERS_DELETE: self._member_delete,
            APPOINTMENTS_UPSERT: self._appointment_upsert,
            APPOINTMENTS_DELETE: self._appointment_delete,
        }

    @property
    def topics(self) -> list[str]:
        """The topic names (after `footfall/{store}/`) this reads."""
        return [*self._parsers, COUNTS_GET]

    def parse(self, topic_name: str, payload: bytes, *, now: datetime, consent_at: datetime | None = None,
              reply: ReplyAddress | None = None) -> Command:
        """The command of one message of `topic_name` (e.g. "members/upsert"); Rejected with the reason.

        `now` (the store clock) is where a counts/get range ends by default; `consent_at` stamps a
        member's consent; `reply` is where the message asks to be answered.
        """
        if topic_name == COUNTS_GET:
            return self._counts_get(payload, now, reply or ReplyAddress())
        parse = self._parsers.get(topic_name)
        if parse is None:
            raise Rejected(f"unknown downlink topic {str(topic_name)[:80]!r}; handled here: {', '.join(self.topics)}")
        return parse(decode_object(payload, self.limits.max_payload), consent_at)

    def _member_upsert(self, message: dict, consent_at: datetime | None) -> Command:
        return parse_member_upsert(message, recognizer_sha256=self.recognizer_sha256, dim=self.dim,
                                   consent_at=consent_at, limits=self.limits)

    def _member_delete(self, message: dict, _: datetime | None) -> Command:
        return MemberDelete(required_text(message, "member_id", max_length=self.limits.max_id_length),
                            parse_time(message, "ts", required=False))

    def _appointment_upsert(self, message: dict, _: datetime | None) -> Command:
        return AppointmentUpsert(parse_appointment(message, self.limits))

    def _appointment_delete(self, message: dict, _: datetime | None) -> Command:
        return AppointmentDelete(required_text(message, "appointment_id", max_length=self.limits.max_id_length))

    def _counts_get(self, payload: bytes, now: datetime, reply: ReplyAddress) -> CountsGet:
        request = parse_counts_request(payload, now, self.timezone, max_payload=self.limits.max_payload,
                                       max_buckets=self.limits.max_buckets)
        target = reply.topic or request.reply_to
        if not target:
            raise Rejected("no MQTT 5 response topic and no reply_to: nowhere to answer")
        return CountsGet(request, check_reply_topic(target, self.replies), reply.correlation)
