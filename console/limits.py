"""A limit that outside parties could otherwise grow: the console's acks of today.

Login limits are shared with the HQ dashboard (`web/limits.py`). See docs/security.md, "Guide console".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any


class AckBook:
    """The acks seen today (store time), first per visit wins, at most `max_acks` (oldest go first).

    A visit being published is reserved, so two clicks at once publish one ack.
    """

    def __init__(self, max_acks: int, today: Callable[[], date]) -> None:
        self.max_acks = max_acks
        self.today = today
        self._day: date | None = None
        self._acks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, dict[str, Any]] = {}

    def _prune(self) -> None:
        day = self.today()
        if day != self._day:
            self._day = day
            self._acks.clear()
        while len(self._acks) > self.max_acks:
            self._acks.popitem(last=False)

    def get(self, visit: str) -> dict[str, Any] | None:
        """The kept ack of `visit` (or the one being published for it), else None."""
        self._prune()
        return self._acks.get(visit) or self._pending.get(visit)

    def reserve(self, visit: str, ack: dict[str, Any]) -> dict[str, Any] | None:
        """Reserve `visit` for `ack`; returns the ack that already holds it instead, if any."""
        existing = self.get(visit)
        if existing is not None:
            return existing
        self._pending[visit] = ack
        return None

    def release(self, visit: str) -> None:
        self._pending.pop(visit, None)

    def record(self, ack: dict[str, Any]) -> dict[str, Any]:
        """Keep `ack` unless its visit already has one; returns the ack kept."""
        self._prune()
        visit = ack["visit_event_id"]
        kept = self._acks.get(visit)
        if kept is not None:
            return kept
        self._acks[visit] = ack
        self._prune()
        return ack

    def for_visits(self, visits: set[str]) -> list[dict[str, Any]]:
        """Today's acks of the given visits (what a page replaying those alerts needs)."""
        self._prune()
        return [a for v, a in self._acks.items() if v in visits]

    def __len__(self) -> int:
        self._prune()
        return len(self._acks)
