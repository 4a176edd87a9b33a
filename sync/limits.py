"""Rate limits for what outside parties can make the box do (answers, error reports)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """At most `per_minute` events a minute, in bursts of up to `burst` (default: a tenth, at least 1).

    `take()` says whether one more may happen now; refused ones are counted in `refused`
    until `pop_refused()` reads and clears the count.
    """

    def __init__(self, per_minute: int, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be >= 1, got {per_minute}")
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, per_minute // 10))
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self.refused = 0

    def available(self) -> bool:
        """Whether `take()` would succeed now (nothing is used or counted)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens >= 1.0

    def take(self) -> bool:
        """True (and one token used) if allowed now; False (and counted) otherwise."""
        if self.available():
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False

    def pop_refused(self) -> int:
        """How many were refused since the last call; the count starts again at 0."""
        refused, self.refused = self.refused, 0
        return refused
