"""An HQ dashboard for the tests: its config and logins, a read side in memory that records
what it was asked (`MemoryReadSide`), and the fixture `served` that starts dashboards over it.

Registered in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from footfall.config.hq_dashboard import DashboardConfig
from footfall.hq import dashboard as dash
from footfall.web.passwords import hash_password

PASSWORD = "chain figures"
TOKEN = "analyst-token"
HASH = hash_password(PASSWORD)
USERS = {"Zhao Min": hash_password(TOKEN)}
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)       # 12:00 in Shanghai
TODAY = date(2026, 11, 23)


class MemoryReadSide:
    """The read side's functions over fixed rows; `calls` records every call and its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = False

    def _called(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.fail:
            raise OSError("connection refused")

    def chain_by_day(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        self._called("chain_by_day", day_from, day_to)
        days = [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]
        return [{"day": d.isoformat(), "visits": 10 + i, "reentries": 2, "member_visits": 3, "unidentified": 1}
                for i, d in enumerate(days)]

    def store_table(self, day: date, silent_after: timedelta, now: datetime) -> list[dict[str, Any]]:
        self._called("store_table", day, silent_after, now)
        return [{"store_id": "sh-001", "visits": 41, "reentries": 5, "member_visits": 7, "unidentified": 2,
                 "state": "online", "last_seen": "2026-11-23T11:58:00+08:00", "silent": False,
                 "outbox_backlog": 0, "dead_letters": 0, "cameras": {"door-1": "streaming"}, "storage": "ok"}]

    def store_hourly(self, store_id: str, day: date) -> list[int]:
        self._called("store_hourly", store_id, day)
        return [0] * 10 + [4, 9] + [0] * 12

    def adopted_hours(self, store_id: str, day: date) -> list[int]:
        self._called("adopted_hours", store_id, day)
        return [11]

    def diagnose(self) -> tuple[str, str] | None:
        return None  # the rows are in memory: nothing to log in to

    def conversion_by_channel(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        self._called("conversion_by_channel", day_from, day_to)
        return [{"channel": "wechat", "booked": 4, "arrived": 3, "no_show": 1, "conversion": 0.75}]

    def no_show_list(self, day_from: date, day_to: date, limit: int = 500) -> list[dict[str, Any]]:
        self._called("no_show_list", day_from, day_to, limit)
        return [{"store_id": "sh-001", "appointment_id": "a-2", "member_id": "m-2",
                 "scheduled_at": "2026-11-23T14:00:00+08:00", "channel": "phone", "grace_minutes": 30.0}]

    def response_times(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        self._called("response_times", day_from, day_to)
        return [{"store_id": "sh-001", "alerts": 3, "acked": 2, "p50_s": 20.0, "p95_s": 29.0}]

    def disagreements(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        self._called("disagreements", day_from, day_to)
        return [{"store_id": "sh-002", "day": "2026-11-23", "hour": None, "hq_visits": None, "store_visits": None,
                 "checked_at": "2026-11-23T12:00:00+08:00", "reason": "no answer"}]


def dashboard_config(**overrides: Any) -> DashboardConfig:
    """An English dashboard on a free loopback port with the shared password and Zhao Min's token."""
    return DashboardConfig.model_validate({"language": "en", "password_hash": HASH, "users": USERS,
                                           "listen": "127.0.0.1:0", **overrides})


@pytest.fixture
def served() -> Iterator[Callable[..., tuple[dash.Dashboard, MemoryReadSide]]]:
    """start(read=None, **dashboard keys): a dashboard on a free loopback port over `read` (a new
    MemoryReadSide by default), its clock at NOW, without the fixed wait after a failed login (the
    tests count, not time); stopped after the test."""
    started: list[dash.Dashboard] = []

    def start(read: MemoryReadSide | None = None, **overrides: Any) -> tuple[dash.Dashboard, MemoryReadSide]:
        read = read or MemoryReadSide()
        d = dash.Dashboard(dashboard_config(**overrides), read, silent_after=timedelta(minutes=10), clock=lambda: NOW)
        d.failure_delay = 0.0
        started.append(d.start())
        return d, read

    yield start
    for d in started:
        d.stop()
