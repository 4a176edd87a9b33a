"""`footfall counts`: visits, re-entries and member visits per hour or day, from the local store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from footfall.config.schema import Config
from footfall.sync.counts import CountStore, day_start, store_day


def parse_when(text: str, tz: ZoneInfo) -> datetime:
    """ISO 8601 date or date-time; without an offset it is the store's local time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=tz)


def counts_table(config: Config, start: str | None, end: str | None, by: str,
                 now: datetime | None = None) -> str:
    """The table `footfall counts` prints; default range: today so far."""
    tz = ZoneInfo(config.timezone)
    now = now or datetime.now(UTC)
    begin = parse_when(start, tz) if start else day_start(store_day(now, tz), tz)
    finish = parse_when(end, tz) if end else now
    if finish <= begin:
        raise ValueError(f"--to ({finish.isoformat()}) must be after --from ({begin.isoformat()})")
    store = CountStore(Path(config.storage.dir) / "counts.db", config.timezone)
    try:
        buckets = store.buckets(begin, finish, by)
    finally:
        store.close()
    # unidentified: visits counted without a usable face (turned away, blurred), part of `visits`;
    # exits: people out through an entry line
    columns = (("visits", 7), ("reentries", 11), ("member_visits", 14), ("unidentified", 13), ("exits", 6))

    def line(start: str, values: list) -> str:
        return f"{start:<30} " + " ".join(f"{v:>{w}}" for v, (_, w) in zip(values, columns))

    rows = [line("start", ["visits", "re-entries", "member visits", "unidentified", "exits"])]
    rows += [line(b["start"], [b[k] for k, _ in columns]) for b in buckets]
    rows.append(line("total", [sum(b[k] for b in buckets) for k, _ in columns]))
    return "\n".join(rows)
