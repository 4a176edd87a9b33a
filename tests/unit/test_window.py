"""Specification of the visit window (CONTRACT, "Counting rule").

An entry is a re-entry when the same person's previous entry was less than 3 h
earlier on the same store day (Asia/Shanghai here); otherwise a new visit, with
a new opaque visitor id. Faces are hand-made unit vectors; time is a fake
timeline on 23 November 2026.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from footfall.dedup.vectors import vectors_to_keep
from footfall.dedup.window import MAX_VECTORS, VisitWindow, pick_visitor, store_day_end
from footfall.storage.sqlite import StorageError

DIM = 64
TZ = ZoneInfo("Asia/Shanghai")
THRESHOLD, MARGIN = 0.5, 0.1


def at(hour: int, minute: int = 0, second: int = 0, day: int = 23) -> datetime:
    """A moment of the store's local time."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=TZ)


def faces(n: int, seed: int = 0) -> np.ndarray:
    """n different people: orthonormal random vectors (distinctive bytes, similarity 0 to each other)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, n)))
    return q.T.astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def another_look(face: np.ndarray, seed: int) -> np.ndarray:
    """The same person on another entry: similarity ~0.9."""
    noise = np.random.default_rng(seed).standard_normal(DIM)
    noise -= (noise @ face) * face
    return unit(face + 0.45 * unit(noise))


def make_window(db_path: Path | None = None, **overrides) -> VisitWindow:
    options: dict[str, Any] = dict(dim=DIM, window=timedelta(hours=3), timezone="Asia/Shanghai",
                                   threshold=THRESHOLD, margin=MARGIN, same_entry=timedelta(seconds=10),
                                   db_path=db_path)
    return VisitWindow(**(options | overrides))


@pytest.fixture
def window():
    w = make_window()
    yield w
    w.close()


@pytest.fixture
def people() -> np.ndarray:
    return faces(8)


# -- the counting rule ----------------------------------------------------------------

def test_a_stranger_entering_again_40_minutes_later_is_a_reentry_of_the_same_visitor(window, people):
    first = window.enter_anonymous(people[0], at(10, 0))
    again = window.enter_anonymous(another_look(people[0], 1), at(10, 40))
    assert (first.kind, again.kind) == ("visit", "reentry")
    assert again.visitor_id == first.visitor_id
    assert again.visit_started == first.ts == at(10, 0) and again.ts == at(10, 40)
    assert first.member_id is None and first.score is None
    assert again.score == pytest.approx(0.9, abs=0.02)


def test_the_window_runs_from_the_last_entry_so_a_visit_can_outlast_three_hours(window, people):
    visit = window.enter_anonymous(people[0], at(10, 0))
    window.enter_anonymous(another_look(people[0], 1), at(10, 40))
    late = window.enter_anonymous(another_look(people[0], 2), at(13, 10))  # 2h30 after the last, 3h10 after the first
    assert late.kind == "reentry" and late.visitor_id == visit.visitor_id
    assert late.visit_started == at(10, 0)


def test_three_hours_10_after_the_last_entry_is_a_new_visit_with_a_new_visitor_id(window, people):
    first = window.enter_anonymous(people[0], at(10, 0))
    window.enter_anonymous(another_look(people[0], 1), at(10, 40))
    back = window.enter_anonymous(another_look(people[0], 2), at(13, 50))
    assert back.kind == "visit"
    assert back.visitor_id != first.visitor_id
    assert back.visit_started == at(13, 50)


def test_exactly_three_hours_after_the_last_entry_is_no_longer_a_reentry(window, people):
    window.enter_anonymous(people[0], at(10, 0))
    assert window.enter_anonymous(another_look(people[0], 1), at(13, 0)).kind == "visit"


def test_an_entry_after_local_midnight_starts_a_new_visit(window, people):
    evening = window.enter_anonymous(people[0], at(23, 30))
    after_midnight = window.enter_anonymous(another_look(people[0], 1), at(0, 10, day=24))
    assert after_midnight.kind == "visit"
    assert after_midnight.visitor_id != evening.visitor_id


def test_the_store_day_is_the_local_one_not_utc(window, people):
    # 07:30 and 08:10 in Shanghai straddle midnight UTC: still the same store day.
    first = window.enter_anonymous(people[0], at(7, 30))
    again = window.enter_anonymous(another_look(people[0], 1), at(8, 10))
    assert again.kind == "reentry" and again.visitor_id == first.visitor_id


def test_two_different_strangers_are_two_visitors(window, people):
    a = window.enter_anonymous(people[0], at(10, 0))
    b = window.enter_anonymous(people[1], at(10, 1))
    assert (a.kind, b.kind) == ("visit", "visit")
    assert a.visitor_id != b.visitor_id
    assert window.open_windows() == 2


def test_visitor_ids_are_random_opaque_hex(window, people):
    ids = {window.enter_anonymous(face, at(10, i)).visitor_id for i, face in enumerate(people)}
    assert len(ids) == len(people)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_the_same_person_seen_again_within_seconds_is_the_same_entry_and_keeps_the_last_entry(window, people):
    first = window.enter_anonymous(people[0], at(10, 0, 0))
    second_camera = window.enter_anonymous(another_look(people[0], 1), at(10, 0, 5))
    assert second_camera.kind == "same_entry" and second_camera.visitor_id == first.visitor_id
    # 12 s after the first entry (7 s after the ignored one): a new entry, since the last entry is still 10:00:00.
    assert window.enter_anonymous(another_look(people[0], 2), at(10, 0, 12)).kind == "reentry"


def test_a_face_close_to_two_open_windows_is_a_new_visitor_not_a_guess(window, people):
    a = window.enter_anonymous(people[0], at(10, 0))
    b = window.enter_anonymous(people[1], at(10, 1))
    between = unit(people[0] + people[1])  # 0.71 to both: above the threshold, no margin
    ambiguous = window.enter_anonymous(between, at(10, 30))
    assert ambiguous.kind == "visit"
    assert ambiguous.visitor_id not in (a.visitor_id, b.visitor_id)


def test_a_face_resembling_two_windows_goes_to_the_one_it_clearly_resembles_more(window, people):
    a = window.enter_anonymous(people[0], at(10, 0))
    window.enter_anonymous(people[1], at(10, 1))
    closer_to_a = unit(people[2] + 2 * people[0] + people[1])  # 0.82 to a, 0.41 to b: a clear lead
    match = window.enter_anonymous(closer_to_a, at(10, 40))
    assert (match.kind, match.visitor_id) == ("reentry", a.visitor_id)


def crowded_window(w: VisitWindow, people: np.ndarray) -> tuple[str, np.ndarray]:
    """Opens A, C, and B between them (0.71 to both: a new visitor by the margin rule), so A has
    a look-alike inside the window; returns A's id and a face 0.70 to A, 0.49 to B, 0 to C."""
    first = w.enter_anonymous(people[0], at(10, 0))
    w.enter_anonymous(people[1], at(10, 1))
    assert w.enter_anonymous(unit(people[0] + people[1]), at(10, 2)).kind == "visit"
    return first.visitor_id, unit(0.7 * people[0] + 0.714 * people[3])


def test_a_face_is_not_merged_into_a_window_that_has_a_closer_look_alike_inside(window, people):
    """Mutual nearest: 0.70 to A leads B by 0.21, but A and B are 0.71 alike: A is no safe match."""
    a_id, face = crowded_window(window, people)
    entry = window.enter_anonymous(face, at(10, 30))
    assert entry.kind == "visit" and entry.visitor_id != a_id


def test_without_the_mutual_nearest_check_the_same_face_would_be_merged(people):
    w = make_window(mutual_nearest=False)
    try:
        a_id, face = crowded_window(w, people)
        assert w.enter_anonymous(face, at(10, 30)).visitor_id == a_id
    finally:
        w.close()


def test_a_face_below_the_threshold_is_a_new_visitor(window, people):
    window.enter_anonymous(people[0], at(10, 0))
    weak = unit(0.45 * people[0] + np.sqrt(1 - 0.45**2) * people[1])
    assert window.enter_anonymous(weak, at(10, 5)).kind == "visit"


def test_the_window_follows_a_changing_look_and_still_knows_the_first_one(window, people):
    # Each look is 40 degrees from the previous: similar to the last one, not to the first after three steps.
    angles = np.radians([0, 40, 80, 120, 160])
    looks = [unit(np.cos(t) * people[0] + np.sin(t) * people[1]) for t in angles]
    entries = [window.enter_anonymous(look, at(10 + i, 0)) for i, look in enumerate(looks)]
    assert [e.kind for e in entries] == ["visit"] + ["reentry"] * 4
    assert window.enter_anonymous(looks[0], at(15, 0)).visitor_id == entries[0].visitor_id


def test_members_are_windowed_by_member_id(window):
    arrival = window.enter_member("M-1001", at(10, 0))
    back = window.enter_member("M-1001", at(11, 30))
    other = window.enter_member("M-2002", at(11, 31))
    assert (arrival.kind, back.kind, other.kind) == ("visit", "reentry", "visit")
    assert arrival.visitor_id == arrival.member_id == "M-1001"
    assert back.visit_started == at(10, 0) and back.score is None
    assert window.enter_member("M-1001", at(14, 31)).kind == "visit"


def test_every_entry_first_closes_the_windows_that_ended(window, people):
    window.enter_anonymous(people[0], at(10, 0))
    window.enter_member("M-1", at(11, 0))
    assert window.open_windows() == 2
    window.enter_anonymous(people[1], at(13, 30))
    assert window.open_windows() == 2  # the 10:00 visitor's closed, the newcomer's opened
    assert window.expire(at(14, 0)) == 1 and window.open_windows() == 1


def test_a_late_timestamp_counts_as_the_last_seen_time(window, people):
    window.enter_anonymous(people[0], at(12, 0))
    late = window.enter_anonymous(people[1], at(11, 0))
    assert late.ts == at(12, 0)


def test_forget_erases_a_window(window, people):
    visitor = window.enter_anonymous(people[0], at(10, 0)).visitor_id
    assert window.forget(visitor) is True
    assert window.forget(visitor) is False
    assert window.enter_anonymous(people[0], at(10, 5)).kind == "visit"


def test_naive_timestamps_and_foreign_vectors_are_refused(window, people):
    with pytest.raises(ValueError, match="timezone-aware"):
        window.enter_anonymous(people[0], datetime(2026, 11, 23, 10))
    with pytest.raises(ValueError, match="dimension 64"):
        window.enter_anonymous(np.ones(128, dtype=np.float32) / np.sqrt(128), at(10))
    with pytest.raises(ValueError, match="L2-normalised"):
        window.enter_anonymous(2 * people[0], at(10))


# -- the rules as pure functions ------------------------------------------------------

def test_the_store_day_ends_at_local_midnight():
    assert store_day_end(at(23, 59), TZ) == at(0, 0, day=24)
    assert store_day_end(at(0, 0, day=24), TZ) == at(0, 0, day=25)


def test_a_match_needs_the_threshold_and_a_margin_over_the_second_visitor_above_zero():
    assert pick_visitor([("a", 0.8), ("b", 0.2)], 0.5, 0.1) == ("a", 0.8)
    assert pick_visitor([("a", 0.45)], 0.5, 0.1) is None
    assert pick_visitor([("a", 0.8), ("b", 0.75)], 0.5, 0.1) is None
    assert pick_visitor([("a", 0.55), ("b", -0.5)], 0.5, 0.9) == ("a", 0.55)  # a negative second is no rival
    assert pick_visitor([], 0.5, 0.1) is None


def test_a_visitor_keeps_the_first_and_the_most_recent_vectors():
    assert vectors_to_keep([1, 2], MAX_VECTORS) == [1, 2]
    assert vectors_to_keep([1, 2, 3, 4, 5], MAX_VECTORS) == [1, 4, 5]


# -- persistence and privacy ------------------------------------------------------------

def raw(path: Path) -> bytes:
    """Everything SQLite keeps for a database: the main file and its WAL."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_a_restart_keeps_who_is_inside_the_window(tmp_path, people):
    db = tmp_path / "state" / "window.db"
    with make_window(db) as before:
        first = before.enter_anonymous(people[0], at(10, 0))
        before.enter_member("M-1", at(10, 5))
    with make_window(db) as after:
        assert after.open_windows() == 2
        again = after.enter_anonymous(another_look(people[0], 1), at(11, 0))
        assert (again.kind, again.visitor_id, again.visit_started) == ("reentry", first.visitor_id, at(10, 0))
        assert after.enter_member("M-1", at(11, 5)).kind == "reentry"


def test_windows_that_closed_while_the_process_was_down_are_gone_after_the_restart(tmp_path, people):
    db = tmp_path / "window.db"
    with make_window(db) as before:
        first = before.enter_anonymous(people[0], at(10, 0))
        before.enter_anonymous(people[1], at(12, 30))
    with make_window(db, now=at(14, 0)) as after:
        assert after.open_windows() == 1
        back = after.enter_anonymous(another_look(people[0], 1), at(14, 0))
        assert back.kind == "visit" and back.visitor_id != first.visitor_id
    assert people[0].tobytes() not in raw(db)


def test_a_closed_windows_vectors_are_gone_from_the_database_file_and_its_wal(tmp_path, people):
    db = tmp_path / "window.db"
    with make_window(db) as window:
        stored = [people[0], another_look(people[0], 1), another_look(people[0], 2), another_look(people[0], 3)]
        for i, look in enumerate(stored):
            window.enter_anonymous(look, at(10, 10 * i))
        for i, face in enumerate(people[1:]):  # others come and stay, so the file keeps changing
            window.enter_anonymous(face, at(12, i))
        assert all(look.tobytes() in raw(db) for look in stored)  # the check can see them

        window.expire(at(13, 31))  # 3 h after the first person's last entry
        assert window.open_windows() == len(people) - 1
        leftovers = raw(db)
        assert not any(look.tobytes() in leftovers for look in stored)
        assert people[1].tobytes() in leftovers

        window.expire(at(15, 30))
        assert window.open_windows() == 0
        assert not any(face.tobytes() in raw(db) for face in people)


def test_a_forgotten_visitor_leaves_nothing_in_the_files(tmp_path, people):
    db = tmp_path / "window.db"
    with make_window(db) as window:
        visitor = window.enter_anonymous(people[0], at(10, 0)).visitor_id
        window.enter_member("M-ERASE-ME", at(10, 1))
        window.forget(visitor)
        window.forget("M-ERASE-ME")
        leftovers = raw(db)
    assert people[0].tobytes() not in leftovers
    assert b"M-ERASE-ME" not in leftovers and visitor.encode() not in leftovers


def test_the_state_files_are_private(tmp_path, people):
    db = tmp_path / "state" / "window.db"
    with make_window(db) as window:
        window.enter_anonymous(people[0], at(10, 0))
        for path in (db, db.with_name("window.db-wal"), db.with_name("window.db-shm")):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700


def test_memory_mode_writes_no_file(tmp_path, monkeypatch, people):
    monkeypatch.chdir(tmp_path)
    with make_window(None) as window:
        window.enter_anonymous(people[0], at(10, 0))
        window.enter_member("M-1", at(10, 1))
        window.expire(at(20, 0))
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path):
    bogus = tmp_path / "window.db"
    bogus.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StorageError, match="window.db: not a usable SQLite database"):
        make_window(bogus)


def test_a_damaged_database_is_refused_by_name(tmp_path):
    db = tmp_path / "window.db"
    with make_window(db) as window:
        for i, face in enumerate(faces(60, seed=3)):
            window.enter_anonymous(face, at(10, i))
    damaged = bytearray(db.read_bytes())
    damaged[4096:3 * 4096] = np.random.default_rng(0).integers(0, 256, 2 * 4096, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(damaged))
    with pytest.raises(StorageError, match="window.db: cannot read the open visit windows"):
        make_window(db)


def test_a_failed_commit_leaves_no_open_transaction_and_keeps_its_cause(tmp_path):
    import sqlite3

    from footfall.storage.sqlite import open_db, transaction

    conn = open_db(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("PRAGMA max_page_count = 2")  # the file is full after a few rows: a real SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError, match="full"):
        with transaction(conn):
            conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100_000)])
    assert not conn.in_transaction
    with transaction(conn):  # the connection is usable again
        conn.execute("DELETE FROM t")
    conn.close()


# -- one person, one visit, whoever recognised them when (issue: a member recognised late) ------

def test_a_member_recognised_late_reenters_the_anonymous_visit_they_started(window, people):
    unrecognised = window.enter_anonymous(people[0], at(10, 0))
    late = window.enter_member("m-1", at(11, 30), another_look(people[0], 2))
    assert (unrecognised.kind, late.kind) == ("visit", "reentry")
    assert late.visitor_id == unrecognised.visitor_id and late.member_id == "m-1"
    assert late.visit_started == at(10, 0) and late.recognised_late
    # the visit is the member's from now on, whichever way they are recognised next
    again = window.enter_member("m-1", at(12, 0))
    assert (again.kind, again.visitor_id, again.member_id) == ("reentry", unrecognised.visitor_id, "m-1")
    assert not again.recognised_late
    assert window.open_windows() == 1


def test_a_member_unlike_every_open_anonymous_visit_starts_their_own(window, people):
    window.enter_anonymous(people[1], at(10, 0))
    entry = window.enter_member("m-1", at(10, 5), people[0])
    assert (entry.kind, entry.visitor_id, entry.member_id) == ("visit", "m-1", "m-1")
    assert window.open_windows() == 2


def test_a_member_does_not_take_over_another_members_visit(window, people):
    window.enter_member("m-2", at(10, 0), people[0])
    entry = window.enter_member("m-1", at(10, 30), another_look(people[0], 3))
    assert (entry.kind, entry.visitor_id) == ("visit", "m-1")


def test_an_unrecognised_passage_of_a_member_inside_is_that_members_entry(window, people):
    member = window.enter_member("m-1", at(10, 0), people[0])
    second_camera = window.enter_anonymous(another_look(people[0], 4), at(10, 0, 5))
    assert second_camera.kind == "same_entry" and second_camera.member_id == "m-1"
    later = window.enter_anonymous(another_look(people[0], 5), at(11, 0))
    assert (later.kind, later.visitor_id, later.member_id) == ("reentry", member.visitor_id, "m-1")


def test_the_member_id_of_a_visit_taken_over_survives_a_restart(tmp_path, people):
    w = make_window(tmp_path / "w.db")
    first = w.enter_anonymous(people[0], at(10, 0))
    w.enter_member("m-1", at(10, 30), another_look(people[0], 6))
    w.close()
    w = make_window(tmp_path / "w.db")
    entry = w.enter_member("m-1", at(11, 0))
    assert (entry.kind, entry.visitor_id) == ("reentry", first.visitor_id)
    assert w.forget("m-1") and w.open_windows() == 0
    w.close()


# -- a passage judged at its own time -----------------------------------------------------

def test_a_passage_decided_late_is_judged_as_of_its_own_time(people):
    w = make_window(late=timedelta(seconds=10))
    try:
        first = w.enter_anonymous(people[0], at(10, 0))
        w.expire(at(13, 0, 5))  # the clock is past the window's end, by less than `late`
        again = w.enter_anonymous(another_look(people[0], 1), at(12, 59, 58))  # ... but not the passage
        assert again.kind == "reentry" and again.visitor_id == first.visitor_id
        assert again.visit_started == first.visit_started
    finally:
        w.close()


def test_a_passage_after_the_window_ended_is_a_new_visit_even_while_the_window_is_kept(people):
    w = make_window(late=timedelta(seconds=10))
    try:
        first = w.enter_anonymous(people[0], at(10, 0))
        later = w.enter_anonymous(another_look(people[0], 1), at(13, 0, 2))  # 3 h 2 s after the entry
        assert later.kind == "visit" and later.visitor_id != first.visitor_id
    finally:
        w.close()


def test_a_window_is_kept_no_longer_than_late_past_its_end(people):
    w = make_window(late=timedelta(seconds=10))
    try:
        w.enter_anonymous(people[0], at(10, 0))
        w.expire(at(13, 0, 9))
        assert w.open_windows() == 1
        w.expire(at(13, 0, 10))
        assert w.open_windows() == 0
    finally:
        w.close()
