"""Login limits of the guide console and the HQ dashboard: attempts per client address and for
everybody (`LoginLimiter`), and passwords hashed at once (`HashingGate`).

Bookkeeping with an injected clock; the page servers ask before they do any work. See
docs/security.md, "Guide console" and "HQ dashboard".
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
