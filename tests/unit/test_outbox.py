"""Specification of the persistent outbox (CONTRACT, "MQTT": none is lost; alerts expire).

Time is a fake wall clock the tests move by hand; the database is a real
SQLite file in a temporary directory, reopened to prove what reached the disk.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from footfall.storage.sqlite import StorageError
from footfall.sync.outbox import OUTBOX_FILE, Outbox

TTL = timedelta(minutes=2)
VISITS = "footfall/sh-001/visits"
ARRIVALS = "footfall/sh-001/alerts/arrival"


class FakeWallClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kwargs: float) -> None:
        self.t += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / OUTBOX_FILE


def open_outbox(path: Path, clock: FakeWallClock, **kw) -> Outbox:
    return Outbox(path, alert_ttl=TTL, now=clock, **kw)


@pytest.fixture
def outbox(path, clock):
    box = open_outbox(path, clock)
    yield box
    box.close()


def add_visit(box: Outbox, n: int) -> int:
    return box.add(VISITS, {"n": n}, event_id=f"visit-{n}", alert=False)


def add_alert(box: Outbox, n: int) -> int:
    return box.add(ARRIVALS, {"n": n}, event_id=f"alert-{n}", alert=True)


# -- durability and order -----------------------------------------------------------

def test_an_added_row_is_on_disk_when_add_returns(path, clock):
    writer = open_outbox(path, clock)
    seq = writer.add(VISITS, {"kind": "visit", "名": "李"}, event_id="e-1", alert=False)
    # A second, independent connection (as after a crash and restart) sees the committed row.
    reader = open_outbox(path, clock)
    [row] = reader.pending(10)
    assert (row.seq, row.event_id, row.topic, row.payload) == (seq, "e-1", VISITS, {"kind": "visit", "名": "李"})
    reader.close()
    writer.close()


def test_the_file_is_private_and_journaled(outbox, path):
    add_visit(outbox, 1)
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rows_leave_in_the_order_they_entered_across_topics(outbox):
    seqs = [add_visit(outbox, 1), add_alert(outbox, 2), add_visit(outbox, 3), add_alert(outbox, 4)]
    assert seqs == sorted(seqs)
    assert [r.event_id for r in outbox.pending(10)] == ["visit-1", "alert-2", "visit-3", "alert-4"]
    assert [r.event_id for r in outbox.pending(2)] == ["visit-1", "alert-2"]
    assert [r.event_id for r in outbox.pending(10, after=seqs[1])] == ["visit-3", "alert-4"]


def test_adding_the_same_event_twice_keeps_one_row(outbox):
    first = outbox.add(VISITS, {"n": 1}, event_id="same", alert=False)
    again = outbox.add(VISITS, {"n": 1}, event_id="same", alert=False)
    assert first == again
    assert len(outbox.pending(10)) == 1 and outbox.stats().pending == 1


def test_retain_and_alert_flags_are_kept(outbox):
    outbox.add("footfall/sh-001/counts", {"visits": 3}, event_id="c-1", alert=False, retain=True)
    add_alert(outbox, 1)
    counts, alert = outbox.pending(10)
    assert (counts.retain, counts.alert) == (True, False)
    assert (alert.retain, alert.alert) == (False, True)


def test_a_payload_that_is_not_json_is_refused_before_touching_the_disk(outbox):
    with pytest.raises(TypeError):
        outbox.add(VISITS, {"ts": datetime.now(UTC)}, event_id="bad", alert=False)
    assert outbox.stats().pending == 0


# -- sent rows -----------------------------------------------------------------------

def test_a_row_marked_sent_is_not_pending_any_more_even_after_a_restart(path, clock):
    box = open_outbox(path, clock)
    a, b, c = (add_visit(box, n) for n in (1, 2, 3))
    box.mark_sent(a, c)
    assert [r.seq for r in box.pending(10)] == [b]
    box.close()
    again = open_outbox(path, clock)
    assert [r.seq for r in again.pending(10)] == [b]
    stats = again.stats()
    assert (stats.pending, stats.sent) == (1, 2)
    again.close()


def test_stats_report_the_age_of_the_oldest_unsent_row(outbox, clock):
    assert outbox.stats().oldest_pending_age_s is None
    add_visit(outbox, 1)
    clock.advance(seconds=90)
    add_visit(outbox, 2)
    assert outbox.stats().oldest_pending_age_s == pytest.approx(90)


# -- alert expiry (wall clock) --------------------------------------------------------

def test_an_alert_still_unsent_after_the_ttl_is_dropped_and_counted(outbox, clock, caplog):
    add_alert(outbox, 1)
    clock.advance(seconds=119)
    assert [r.event_id for r in outbox.pending(10)] == ["alert-1"]
    clock.advance(seconds=1)
    with caplog.at_level(logging.WARNING, logger="footfall.sync.outbox"):
        assert outbox.pending(10) == []
    assert outbox.stats().expired_alerts == 1 and outbox.stats().pending == 0
    assert "alert-1" in caplog.text


def test_visits_never_expire(outbox, clock):
    add_visit(outbox, 1)
    add_alert(outbox, 2)
    clock.advance(days=3)
    assert [r.event_id for r in outbox.pending(10)] == ["visit-1"]


def test_the_ttl_runs_from_when_the_alert_entered_the_outbox(outbox, clock):
    add_alert(outbox, 1)
    clock.advance(seconds=100)
    add_alert(outbox, 2)
    clock.advance(seconds=30)
    [row] = outbox.pending(10)
    assert row.event_id == "alert-2"
    assert outbox.expires_in(row) == timedelta(seconds=90)
    assert outbox.expires_in(outbox.pending(1)[0]) == timedelta(seconds=90)


def test_rows_already_handed_out_are_not_expired_under_the_publisher(outbox, clock):
    seq = add_alert(outbox, 1)
    clock.advance(minutes=5)
    assert outbox.pending(10, after=seq) == []
    assert outbox.stats().expired_alerts == 0  # in flight: its PUBACK decides
    assert outbox.pending(10) == [] and outbox.stats().expired_alerts == 1


def test_a_sent_alert_is_not_expired(outbox, clock):
    outbox.mark_sent(add_alert(outbox, 1))
    clock.advance(minutes=5)
    outbox.pending(10)
    assert outbox.stats().expired_alerts == 0 and outbox.stats().sent == 1


# -- bounded disk ----------------------------------------------------------------------

def test_over_the_limit_the_oldest_sent_rows_make_room(path, clock):
    box = open_outbox(path, clock, max_rows=5)
    seqs = [add_visit(box, n) for n in range(5)]
    box.mark_sent(*seqs[:3])
    add_visit(box, 5)
    add_visit(box, 6)
    stats = box.stats()
    assert stats.dropped_sent == 2 and stats.pending == 4 and stats.sent == 1 and not stats.over_limit
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")] == seqs[2:] + [seqs[-1] + 1, seqs[-1] + 2]
    box.close()


def test_unsent_rows_are_never_dropped_to_make_room(path, clock, caplog):
    box = open_outbox(path, clock, max_rows=3)
    with caplog.at_level(logging.WARNING, logger="footfall.sync.outbox"):
        for n in range(6):
            add_visit(box, n)
    stats = box.stats()
    assert stats.pending == 6 and stats.over_limit and stats.dropped_sent == 0
    assert "over the limit" in caplog.text
    # Once sent, the rows go, and the outbox is back under its limit.
    box.mark_sent(*(r.seq for r in box.pending(10)))
    add_visit(box, 6)
    stats = box.stats()
    assert not stats.over_limit and stats.pending == 1 and stats.sent + stats.pending == 3
    box.close()


# -- a disk that refuses -----------------------------------------------------------------

def test_a_full_disk_raises_a_storage_error_naming_the_file_and_keeps_earlier_rows(path, clock):
    box = open_outbox(path, clock)
    add_visit(box, 1)
    add_visit(box, 2)
    # SQLite's own "disk full": the file may not grow by a single page.
    pages = box._conn.execute("PRAGMA page_count").fetchone()[0]
    box._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageError) as err:
        box.add(VISITS, {"blob": "x" * 200_000}, event_id="too-big", alert=False)
    assert str(path) in str(err.value) and "full" in str(err.value)
    assert box.stats().last_error == str(err.value)
    # The outbox still works for what fits, and nothing earlier was lost.
    add_visit(box, 3)
    box.close()
    again = open_outbox(path, clock)
    assert [r.event_id for r in again.pending(10)] == ["visit-1", "visit-2", "visit-3"]
    again.close()


def test_a_read_only_file_raises_a_storage_error_naming_the_file(path, clock):
    add_visit(writer := open_outbox(path, clock), 1)
    writer.close()
    box = open_outbox(path, clock)
    # The same refusal a read-only filesystem gives, without needing one (tests may run as root).
    box._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(StorageError, match=str(path)):
        add_visit(box, 2)
    box.close()
    again = open_outbox(path, clock)
    assert [r.event_id for r in again.pending(10)] == ["visit-1"]
    again.close()


def test_a_file_that_is_not_an_outbox_is_refused_by_name(path, clock):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=str(path)):
        open_outbox(path, clock)


# -- concurrency -----------------------------------------------------------------------------

def test_producers_and_the_publisher_may_share_it_across_threads(outbox):
    def produce(k: int) -> None:
        for n in range(50):
            outbox.add(VISITS, {"n": n}, event_id=f"{k}-{n}", alert=False)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    sent = 0
    while any(t.is_alive() for t in threads) or outbox.stats().pending:
        rows = outbox.pending(20)
        outbox.mark_sent(*(r.seq for r in rows))
        sent += len(rows)
    for t in threads:
        t.join(10)
    assert sent == 200 and outbox.stats().sent == 200


def test_erasing_a_member_removes_the_error_reports_that_quote_them_and_keeps_the_others(outbox, path):
    outbox.add("footfall/sh-001/errors", {"topic": "footfall/sh-001/members/upsert",
                                           "reason": "member m-1: consent is required"}, event_id="e-1", alert=False)
    outbox.add("footfall/sh-001/errors", {"topic": "footfall/sh-001/members/upsert",
                                           "reason": "member m-12: consent is required"}, event_id="e-2", alert=False)
    outbox.add("footfall/sh-001/visits", {"member_id": "m-1", "visitor_id": "m-1"}, event_id="v-1", alert=False)
    outbox.add("footfall/sh-001/visits", {"member_id": None, "visitor_id": "v-m-1"}, event_id="v-2", alert=False)
    assert outbox.forget_member("m-1") == (0, 2)
    assert [r.event_id for r in outbox.pending(10)] == ["e-2", "v-2"]
    raw = b"".join(p.read_bytes() for p in path.parent.glob(OUTBOX_FILE + "*"))
    assert b"member m-1:" not in raw
