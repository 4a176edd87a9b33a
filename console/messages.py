"""Checks on what the guide console takes from the broker, before it is kept or streamed.

Anyone who may publish on the store's topics can send the console anything. A
message is kept only if it is a UTF-8 JSON object within the size limit, every
string in it is encodable (no lone surrogate), it holds no NaN or infinity
(which a page's JSON.parse refuses), its ids are printable and short (they
become SSE `id:` lines), and the fields the page uses have the contract's
types. Anything else raises `Dropped` naming the reason, and is dropped.
"""

from __future__ import annotations

import json
from typing import Any

MAX_ID = 128
MAX_GUIDE = 80
MAX_CAMERAS = 64
ACK_FIELDS = ("visit_event_id", "guide", "ts", "event_id", "store_id")

# Fields the page reads, by topic name, and their types.
_ALERT_TEXT = ("member_id", "name", "tier", "ts", "scheduled_at", "channel", "advisor", "appointment_id", "store_id")


class Dropped(ValueError):
    """A broker message the console will not keep; `reason` is short and fixed (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _id(payload: dict[str, Any], key: str, required: bool = True) -> None:
    value = payload.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise Dropped(f"{key}: not a printable string of 1 to {MAX_ID} characters")


def _text(payload: dict[str, Any], *keys: str, limit: int | None = None) -> None:
    for key in keys:
        value = payload.get(key)
        if value is not None and (not isinstance(value, str) or (limit is not None and len(value) > limit)):
            raise Dropped(f"{key}: not a string")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_message(kind: str, body: bytes, max_bytes: int) -> dict[str, Any]:
    """The payload of a message on topic `kind` ("alert", "ack", "counts", "status", "erasure" for
    members/deleted), checked; else Dropped."""
    if len(body) > max_bytes:
        raise Dropped(f"larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Dropped("not UTF-8") from None
    try:
        payload = json.loads(text)
    except RecursionError:
        raise Dropped("nested too deeply") from None
    except ValueError:
        raise Dropped("not JSON") from None
    if not isinstance(payload, dict):
        raise Dropped("not a JSON object")
    try:
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Dropped("a string with a lone surrogate") from None
    except ValueError:
        raise Dropped("NaN or infinity") from None
    except RecursionError:
        raise Dropped("nested too deeply") from None
    if kind == "alert":
        _id(payload, "event_id")
        _id(payload, "visit_event_id", required=False)
        _text(payload, *_ALERT_TEXT)
        if payload.get("appointment") is not None and not isinstance(payload["appointment"], dict):
            raise Dropped("appointment: not an object")
        minutes = payload.get("minutes_early")
        if minutes is not None and (not isinstance(minutes, int) or isinstance(minutes, bool)):
            raise Dropped("minutes_early: not an integer")
    elif kind == "ack":
        _id(payload, "visit_event_id")
        _id(payload, "event_id", required=False)
        guide = payload.get("guide")
        if not isinstance(guide, str) or not 0 < len(guide) <= MAX_GUIDE:
            raise Dropped(f"guide: not a string of 1 to {MAX_GUIDE} characters")
        _text(payload, "ts", "store_id")
        # Only what the page shows is kept: acks are held by the hundred.
        return {k: payload[k] for k in ACK_FIELDS if k in payload}
    elif kind == "counts":
        by_hour = payload.get("by_hour")
        if not isinstance(by_hour, list) or len(by_hour) != 24 or not all(_count(v) for v in by_hour):
            raise Dropped("by_hour: not 24 counts")
        if not all(_count(payload.get(k)) for k in ("visits", "reentries", "member_visits")):
            raise Dropped("visits, reentries, member_visits: not counts")
        _text(payload, "date", "ts", "store_id")
    elif kind == "erasure":
        _id(payload, "member_id")
        return {"member_id": payload["member_id"]}
    elif kind == "status":
        state = payload.get("state")
        if not isinstance(state, str) or not 0 < len(state) <= 32:
            raise Dropped("state: not a short string")
        _text(payload, "version", "ts", "store_id", "storage")
        cameras = payload.get("cameras", {})
        if not isinstance(cameras, dict) or len(cameras) > MAX_CAMERAS or not all(
                0 < len(c) <= MAX_ID and c.isprintable() and isinstance(v, str) and 0 < len(v) <= 32
                for c, v in cameras.items()):
            raise Dropped(f"cameras: not at most {MAX_CAMERAS} camera ids with their states")
    else:
        raise ValueError(f"unknown message kind {kind!r}")
    return payload
