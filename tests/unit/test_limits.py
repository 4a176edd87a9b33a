"""The rate limiter behind error reports and counts/get answers: bursts, refill, refused counts."""

from __future__ import annotations

import pytest

from footfall.sync.limits import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_then_one_per_interval_and_the_refused_are_counted_once():
    clock = Clock()
    bucket = TokenBucket(60, clock=clock)  # one a second, bursts of 6
    assert [bucket.take() for _ in range(8)] == [True] * 6 + [False] * 2
    assert not bucket.available() and bucket.refused == 2
    clock.t = 0.5
    assert not bucket.take()
    clock.t = 1.0
    assert bucket.available() and bucket.take()
    assert bucket.pop_refused() == 3 and bucket.pop_refused() == 0


def test_tokens_never_pile_up_beyond_the_burst():
    clock = Clock()
    bucket = TokenBucket(30, burst=2, clock=clock)
    clock.t = 3600.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("per_minute, burst", [(0, None), (10, 0)])
def test_a_limit_below_one_is_refused(per_minute, burst):
    with pytest.raises(ValueError):
        TokenBucket(per_minute, burst)
