"""Is the store box counting? What the guide console warns about, from the box's retained messages.

An "online" box can still count nobody: a camera that is not streaming (the `cameras` of its
`status`), no camera streaming at all, a storage error, or no passage counted for a long time
within the store's opening hours (its retained `counts` are published only when they change, so
their `ts` is the last change). Pure functions of those payloads and the time; the console
(`console/server.py`) calls them and streams the result to the pages. An offline or stopped
box has the console's red banner of its own and no problem listed here.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from footfall.sync.events import parse_iso

# Without a word from the box this long after the console reached the broker (its retained status
# arrives at once, if it ever connected), the console says it has heard nothing.
NO_STATUS_AFTER = timedelta(seconds=5)


def _time(payload: dict[str, Any] | None, key: str = "ts") -> datetime | None:
    value = payload.get(key) if payload is not None else None
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def open_since(now: datetime, hours: tuple[time, time]) -> datetime | None:
    """When the opening period `now` lies in began (store time, `now`'s zone), or None when the
    store is closed at `now`. Equal opening and closing times: always open, since midnight."""
    opens, closes = hours
    clock = now.timetz().replace(tzinfo=None)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = midnight.replace(hour=opens.hour, minute=opens.minute)
    if opens == closes:
        return midnight
    if opens < closes:
        return today if opens <= clock < closes else None
    if clock >= opens:          # open past midnight: the evening part
        return today
    if clock < closes:          # ... and the small hours, in the period opened yesterday
        return today - timedelta(days=1)
    return None


def box_problems(status: dict[str, Any] | None, counts: dict[str, Any] | None, now: datetime, *,
                 hours: tuple[time, time] | None, quiet_after: timedelta,
                 broker_since: datetime | None) -> list[dict[str, Any]]:
    """What keeps an online box from counting, as a list of problems for the page (empty: none).

    `now` is aware, in the store's zone; `broker_since` is when the console last reached the
    broker (None while it is not connected: the page says so itself). Problems, in this order:
    `{"problem": "no_status"}` (nothing heard from the box), `{"problem": "no_camera"}` (not one
    camera streaming), `{"problem": "camera", "camera": id, "state": state}` for each camera not
    streaming, `{"problem": "storage", "detail": ...}`, `{"problem": "quiet", "since": iso}`
    (nobody counted since `since`, within opening hours, for `quiet_after` or longer).
    """
    if status is None:
        late = broker_since is not None and now - broker_since >= NO_STATUS_AFTER
        return [{"problem": "no_status"}] if late else []
    if status.get("state") != "online":
        return []
    problems: list[dict[str, Any]] = []
    cameras = status.get("cameras")
    cameras = cameras if isinstance(cameras, dict) else {}
    streaming = [c for c, state in cameras.items() if state == "streaming"]
    if not streaming:
        problems.append({"problem": "no_camera"})
    problems += [{"problem": "camera", "camera": c, "state": state}
                 for c, state in sorted(cameras.items()) if state != "streaming"]
    storage = status.get("storage")
    if isinstance(storage, str) and storage != "ok":
        problems.append({"problem": "storage", "detail": storage})
    if streaming and hours is not None:
        quiet = _quiet_since(status, counts, now, hours)
        if quiet is not None and now - quiet >= quiet_after:
            problems.append({"problem": "quiet", "since": quiet.isoformat(timespec="milliseconds")})
    return problems


def _quiet_since(status: dict[str, Any], counts: dict[str, Any] | None, now: datetime,
                 hours: tuple[time, time]) -> datetime | None:
    """Since when an open store has had nothing counted: the latest of the opening, the box coming
    online and the last change of its counts. None when the store is closed."""
    opened = open_since(now, hours)
    if opened is None:
        return None
    marks = [opened] + [t for t in (_time(status), _time(counts)) if t is not None]
    return max(t.astimezone(now.tzinfo) for t in marks)
