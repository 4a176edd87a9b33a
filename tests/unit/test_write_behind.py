"""What a state file refuses waits in memory, in order, and is written when the file takes writes again.

The file here is a list that refuses writes, as a full disk does, while told to; the clock paces
the retries and is moved by hand.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

from footfall.edge.write_behind import WriteBehind


class File:
    """A state file that takes writes, or refuses them like a full disk (`full`, or once `room` rows
    more were written)."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.full = False
        self.room: int | None = None

    def write(self, row: str) -> None:
        if self.full or self.room == 0:
            raise sqlite3.OperationalError("database or disk is full")
        self.rows.append(row)
        if self.room is not None:
            self.room -= 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def file() -> File:
    return File()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def behind(file: File, clock: Clock, **options) -> WriteBehind[str]:
    return WriteBehind("counts.db", file.write, clock=clock, **options)


def test_an_item_the_file_takes_is_written_at_once_and_nothing_is_held(file, clock):
    pending = behind(file, clock)
    assert pending.add("a") is True
    assert file.rows == ["a"] and len(pending) == 0 and pending.error is None


def test_a_refused_item_waits_and_later_ones_queue_behind_it_so_the_order_holds(file, clock):
    pending = behind(file, clock)
    file.full = True
    assert pending.add("a") is False
    assert pending.error == "counts.db: database or disk is full"
    file.full = False
    clock.now += 0.1  # the retry is not due, but a new item brings the held ones in first
    assert pending.add("b") is True
    assert file.rows == ["a", "b"] and pending.error is None


def test_while_the_file_refuses_everything_waits_in_the_order_it_came(file, clock):
    pending = behind(file, clock)
    file.full = True
    for row in "abc":
        pending.add(row)
    assert list(pending) == ["a", "b", "c"] and file.rows == []


def test_retries_wait_a_second_after_a_refusal_unless_forced(file, clock):
    pending = behind(file, clock)
    file.full = True
    pending.add("a")
    file.full = False
    clock.now += 0.5
    assert pending.flush() is False and file.rows == []
    clock.now += 0.5
    assert pending.flush() is True and file.rows == ["a"]
    file.full = True
    pending.add("b")
    file.full = False
    assert pending.flush(force=True) is True and file.rows == ["a", "b"]


def test_a_retry_stops_at_the_first_refusal_and_keeps_the_rest_in_order(file, clock):
    pending = behind(file, clock)
    file.full = True
    for row in "abc":
        pending.add(row)
    file.full, file.room = False, 1
    assert pending.flush(force=True) is False
    assert file.rows == ["a"] and list(pending) == ["b", "c"] and "full" in (pending.error or "")


def test_beyond_the_limit_the_oldest_is_dropped_counted_and_logged_by_its_description(file, clock, caplog):
    pending = behind(file, clock, limit=2, describe=lambda row: f"row {row}")
    file.full = True
    with caplog.at_level(logging.ERROR, logger="footfall.edge.write_behind"):
        for row in "abc":
            pending.add(row)
    assert list(pending) == ["b", "c"] and pending.dropped == 1
    assert any("the oldest is dropped row a" in r.getMessage() for r in caplog.records)


def test_a_refusal_is_logged_once_per_reason(file, clock, caplog):
    pending = behind(file, clock)
    file.full = True
    with caplog.at_level(logging.ERROR, logger="footfall.edge.write_behind"):
        for row in "abcd":
            pending.add(row)
    assert len([r for r in caplog.records if "database or disk is full" in r.getMessage()]) == 1


def test_a_refusal_elsewhere_is_reported_until_a_write_succeeds(file, clock):
    pending = behind(file, clock)
    pending.refused("counts.db: cannot mark it: disk I/O error")
    assert pending.error == "counts.db: cannot mark it: disk I/O error" and len(pending) == 0
    assert pending.flush(force=True) and pending.error is not None, "nothing was written: still refusing"
    pending.add("a")
    assert pending.error is None


def test_an_item_held_for_a_refusal_elsewhere_is_written_by_the_next_retry(file, clock):
    pending = behind(file, clock)
    pending.refused(sqlite3.OperationalError("disk I/O error"))
    pending.hold("resync")
    assert pending.flush() is False, "not before a second has passed"
    clock.now += 1
    assert pending.flush() is True and file.rows == ["resync"] and pending.error is None


def test_what_is_not_a_storage_error_is_not_held_but_raised(clock):
    def broken(row: str) -> None:
        raise ValueError("not an event")

    pending = WriteBehind("outbox.db", broken, clock=clock)
    with pytest.raises(ValueError, match="not an event"):
        pending.add("a")
    assert len(pending) == 0


def test_held_items_an_erasure_picks_are_dropped_and_never_written():
    written: list[str] = []
    behind = WriteBehind[str]("outbox.db", written.append)
    for item in ("m-1 visit", "m-2 visit", "m-1 alert"):
        behind.hold(item)
    assert behind.discard(lambda item: item.startswith("m-1")) == 2
    assert behind.flush(force=True) and written == ["m-2 visit"]
