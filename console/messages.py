"""Checks on what the guide console takes from the broker, before it is kept or streamed.

Anyone who may publish on the store's topics can send the console anything. A
message is kept only if it is a UTF-8 JSON object within the size limit, every
string in it is encodable (no lone surrogate), it holds no NaN or infinity
(which a page's JSON.parse refuses), the contract's fields it holds are within
the bounds of the class that writes them (`sync/events.py`, `check_fields`), and
what the page needs is there: its ids printable and short (they become SSE `id:`
lines and the page's keys). Anything else raises `Dropped` naming the reason, and
is dropped. The page shows what it gets, so a field the contract requires but the
page does not need may be missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from footfall.sync import events

MAX_ID = 128
MAX_GUIDE = 80
ACK_FIELDS = ("visit_event_id", "guide", "ts", "event_id", "store_id")


class Dropped(ValueError):
    """A broker message the console will not keep; `reason` is short and fixed (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Kind:
    """What the console takes of one kind of message: its topics, the ids the page keys on (name,
    required), the other fields it needs, the longest texts it shows (name, characters) and the
    fields it keeps (None: the whole payload)."""

    topics: tuple[str, ...]
    ids: tuple[tuple[str, bool], ...] = ()
    needs: tuple[str, ...] = ()
    longest: tuple[tuple[str, int], ...] = ()
    keeps: tuple[str, ...] | None = None


KINDS = {
    "alert": _Kind((events.ALERT_ARRIVAL, events.ALERT_APPOINTMENT, events.ALERT_NO_SHOW),
                   ids=(("event_id", True), ("visit_event_id", False))),
    # Only what the page shows of an ack is kept: acks are held by the hundred.
    "ack": _Kind((events.ALERT_ACK,), ids=(("visit_event_id", True), ("event_id", False)), needs=("guide",),
                 longest=(("guide", MAX_GUIDE),), keeps=ACK_FIELDS),
    "counts": _Kind((events.COUNTS,), needs=("visits", "reentries", "member_visits", "by_hour")),
    "status": _Kind((events.STATUS,), needs=("state",)),
    "erasure": _Kind((events.MEMBERS_DELETED,), ids=(("member_id", True),), keeps=("member_id",)),
}


def _decode(body: bytes, max_bytes: int) -> dict[str, Any]:
    """The JSON object of a message, one a page can take whole; else Dropped."""
    if len(body) > max_bytes:
        raise Dropped(f"larger than {max_bytes} bytes")
    try:
        payload = events.decode_object(body)
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except events.PayloadError as exc:
        raise Dropped(exc.reason) from None
    except UnicodeEncodeError:
        raise Dropped("a string with a lone surrogate") from None
    except ValueError:  # 1e999 reads as an infinite float
        raise Dropped("NaN or infinity") from None
    except RecursionError:
        raise Dropped("nested too deeply") from None
    return payload


def _page_id(payload: dict[str, Any], key: str, required: bool) -> None:
    value = payload.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise Dropped(f"{key}: not a printable string of 1 to {MAX_ID} characters")


def parse_message(kind: str, body: bytes, max_bytes: int, topic: str | None = None) -> dict[str, Any]:
    """The payload of a message of `kind` ("alert", "ack", "counts", "status", "erasure" for
    members/deleted), checked by the class of `topic` (its topic name; by default by those of every
    topic of the kind); else Dropped."""
    spec = KINDS.get(kind)
    if spec is None or (topic is not None and topic not in spec.topics):
        raise ValueError(f"unknown message kind {kind!r} (topic {topic!r})")
    payload = _decode(body, max_bytes)
    for key, required in spec.ids:
        _page_id(payload, key, required)
    try:
        for name in (topic,) if topic is not None else spec.topics:
            events.PAYLOADS[name].check_fields(payload, spec.needs)
    except events.PayloadError as exc:
        raise Dropped(exc.reason) from None
    for key, limit in spec.longest:
        if len(payload[key]) > limit:
            raise Dropped(f"{key}: longer than {limit} characters")
    return payload if spec.keeps is None else {k: payload[k] for k in spec.keeps if k in payload}
