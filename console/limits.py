"""Limits that outside parties could otherwise grow: login attempts and password hashing (the
guide console's and the HQ dashboard's), and the console's acks.

Bookkeeping with an injected clock; the HTTP servers (console/server.py, hq/dashboard.py) ask
before they do any work. See docs/security.md, "Guide console" and "HQ dashboard".
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _Client:
    failures: int = 0
    blocked_until: float = 0.0


class LoginLimiter:
    """Per client address: after `failures_free` failed logins, a wait of `backoff`, doubling with
    every further failure up to `backoff_max`; for all clients together: `per_minute` attempts.

    `admit()` is asked before a password is hashed; `failed()`/`succeeded()` report the outcome.
    At most `max_clients` addresses are remembered (the least recently seen is forgotten first),
    so rotating addresses cannot grow the table; the global rate still holds for them.
    """

    def __init__(self, *, failures_free: int, backoff: float, backoff_max: float, per_minute: int,
                 max_clients: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_free, self.backoff, self.backoff_max = failures_free, backoff, backoff_max
        self.per_minute, self.max_clients, self.clock = per_minute, max_clients, clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._recent: deque[float] = deque()

    def admit(self, address: str) -> float:
        """0 if a login attempt from `address` may go ahead now (and counts it), else the seconds to wait."""
        with self._lock:
            now = self.clock()
            client = self._clients.get(address)
            if client is not None:
                self._clients.move_to_end(address)
                if client.blocked_until > now:
                    return client.blocked_until - now
            while self._recent and self._recent[0] <= now - 60.0:
                self._recent.popleft()
            if len(self._recent) >= self.per_minute:
                return self._recent[0] + 60.0 - now
            self._recent.append(now)
            return 0.0

    def failed(self, address: str) -> None:
        """A wrong name or password from `address`: past the free failures, it must wait (doubling)."""
        with self._lock:
            client = self._clients.pop(address, None) or _Client()
            self._clients[address] = client
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            client.failures += 1
            over = client.failures - self.failures_free
            if over >= 0:
                wait = min(self.backoff_max, self.backoff * 2 ** min(over, 32))
                client.blocked_until = self.clock() + wait

    def succeeded(self, address: str) -> None:
        """A good login clears the address's failures."""
        with self._lock:
            self._clients.pop(address, None)

    def tracked(self) -> int:
        with self._lock:
            return len(self._clients)


class HashingBusy(Exception):
    """Every hashing slot is taken: answer "try again" rather than queue the attempt."""


class HashingGate:
    """At most `concurrency` password checks at once, on that many threads of their own; a check
    beyond them is refused (HashingBusy), never queued.

    Each scrypt takes 16 MiB, and the C allocator keeps that memory per thread: hashing on every
    request thread would keep it many times over, and a queue of waiting attempts would hold
    their requests' memory too.
    """

    def __init__(self, concurrency: int, name: str) -> None:
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix=name)

    def run(self, check: Callable[..., T], *args: Any) -> T:
        """`check(*args)` on a hashing thread, if a slot is free now; else HashingBusy."""
        if not self._slots.acquire(blocking=False):
            raise HashingBusy
        try:
            return self._threads.submit(check, *args).result()
        finally:
            self._slots.release()

    def close(self) -> None:
        """Stop the hashing threads (checks not started are dropped)."""
        self._threads.shutdown(wait=False, cancel_futures=True)


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
