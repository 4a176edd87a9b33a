"""Specification of appointments, arrivals and no-shows (CONTRACT, `alerts/appointment`, `alerts/no_show`).

A member who enters on the day of their appointment has arrived, early or
late (`minutes_early` is negative when late); an appointment with no arrival
by scheduled_at + grace is a no-show, raised exactly once, also across a
restart. The store is in Asia/Shanghai; the day is 23 November 2026.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from footfall.sync.appointments import Appointment, AppointmentStore, minutes_early

TZ = ZoneInfo("Asia/Shanghai")
GRACE = timedelta(minutes=15)


def at(hour: int, minute: int = 0, second: int = 0, day: int = 23) -> datetime:
    """A moment of the store's local time."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=TZ)


def appointment(appointment_id: str = "A-1", member_id: str = "M-1", scheduled_at: datetime | None = None,
                **fields) -> Appointment:
    return Appointment(appointment_id, member_id, scheduled_at or at(11),
                       fields.get("channel", "wechat"), fields.get("advisor", "Zhang Min"))


@pytest.fixture
def store() -> Iterator[AppointmentStore]:
    with AppointmentStore(None, "Asia/Shanghai") as s:
        yield s


def raise_no_shows(store: AppointmentStore, now: datetime) -> list[str]:
    """What the daemon does on each tick: raise the due no-shows, then remember they were raised."""
    due = store.due_no_shows(now, GRACE)
    for a in due:
        store.mark_flagged(a.appointment_id)
    return [a.appointment_id for a in due]


# -- arrivals ----------------------------------------------------------------------

def test_minutes_early_is_positive_when_early_and_negative_when_late():
    assert minutes_early(at(11), at(10, 50)) == 10
    assert minutes_early(at(11), at(11, 7)) == -7
    assert minutes_early(at(11), at(10, 59, 31)) == 0  # rounded to whole minutes


def test_an_arrival_before_the_appointment_is_early(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    [arrival] = store.record_arrival("M-1", at(10, 48))
    assert arrival.appointment.appointment_id == "A-1"
    assert arrival.minutes_early == 12
    assert arrival.arrived_at == at(10, 48)


def test_an_arrival_after_the_appointment_is_late(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    [arrival] = store.record_arrival("M-1", at(11, 9))
    assert arrival.minutes_early == -9


def test_an_arrival_concerns_only_that_members_appointments_of_that_store_day(store: AppointmentStore):
    store.upsert(appointment("A-1", "M-1", at(11)))
    store.upsert(appointment("A-2", "M-1", at(11, day=24)))
    store.upsert(appointment("A-3", "M-2", at(11)))
    assert [a.appointment.appointment_id for a in store.record_arrival("M-1", at(9))] == ["A-1"]


def test_a_second_entry_the_same_day_reports_no_arrival_again(store: AppointmentStore):
    store.upsert(appointment())
    assert len(store.record_arrival("M-1", at(10))) == 1
    assert store.record_arrival("M-1", at(12)) == []


def test_the_store_day_is_local_not_utc(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(9)))  # 01:00 UTC
    arrival_utc = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 07:30 on the 23rd in Shanghai
    assert store.day_of(arrival_utc) == date(2026, 11, 23)
    assert len(store.record_arrival("M-1", arrival_utc)) == 1


def test_appointments_of_a_member_on_a_day_are_listed_earliest_first(store: AppointmentStore):
    store.upsert(appointment("A-2", scheduled_at=at(15)))
    store.upsert(appointment("A-1", scheduled_at=at(10)))
    store.upsert(appointment("A-3", scheduled_at=at(10, day=24)))
    found = store.for_member_on_day("M-1", store.day_of(at(8)))
    assert [a.appointment_id for a in found] == ["A-1", "A-2"]
    assert found[0].scheduled_at == at(10) and found[0].advisor == "Zhang Min"


# -- no-shows ----------------------------------------------------------------------

def test_no_no_show_before_the_grace_has_passed(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    assert raise_no_shows(store, at(11, 14, 59)) == []


def test_a_no_show_is_raised_once_the_grace_has_passed_and_only_once(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    assert raise_no_shows(store, at(11, 15)) == ["A-1"]
    assert raise_no_shows(store, at(11, 16)) == []
    assert raise_no_shows(store, at(18)) == []


def test_no_no_show_for_a_member_who_arrived_early(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    store.record_arrival("M-1", at(10, 30))
    assert raise_no_shows(store, at(12)) == []


def test_an_arrival_late_but_within_the_grace_counts_as_arrived(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    [arrival] = store.record_arrival("M-1", at(11, 10))
    assert arrival.minutes_early == -10
    assert raise_no_shows(store, at(12)) == []


def test_a_no_show_survives_a_restart_and_is_raised_exactly_once(tmp_path: Path):
    path = tmp_path / "appointments.db"
    with AppointmentStore(path, "Asia/Shanghai") as first:
        first.upsert(appointment("A-1", scheduled_at=at(11)))
        first.upsert(appointment("A-2", "M-2", scheduled_at=at(14)))
        assert raise_no_shows(first, at(11, 20)) == ["A-1"]
    with AppointmentStore(path, "Asia/Shanghai") as second:
        assert raise_no_shows(second, at(11, 30)) == []
        assert raise_no_shows(second, at(14, 15)) == ["A-2"]


def test_an_arrival_survives_a_restart(tmp_path: Path):
    path = tmp_path / "appointments.db"
    with AppointmentStore(path, "Asia/Shanghai") as first:
        first.upsert(appointment(scheduled_at=at(11)))
        first.record_arrival("M-1", at(10, 55))
    with AppointmentStore(path, "Asia/Shanghai") as second:
        assert raise_no_shows(second, at(12)) == []
        assert second.record_arrival("M-1", at(13)) == []


def test_a_resent_unchanged_upsert_keeps_the_no_show_raised(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    assert raise_no_shows(store, at(11, 20)) == ["A-1"]
    store.upsert(appointment(scheduled_at=at(11)))  # QoS 1 re-delivery
    assert raise_no_shows(store, at(11, 30)) == []


def test_a_rescheduled_appointment_can_be_a_no_show_at_its_new_time(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    assert raise_no_shows(store, at(11, 20)) == ["A-1"]
    store.upsert(appointment(scheduled_at=at(16)))
    assert raise_no_shows(store, at(12)) == []
    assert raise_no_shows(store, at(16, 15)) == ["A-1"]


def test_a_member_who_arrived_stays_arrived_when_the_time_moves_within_the_day(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    store.record_arrival("M-1", at(10, 50))
    store.upsert(appointment(scheduled_at=at(11, 30)))
    assert raise_no_shows(store, at(13)) == []


def test_an_arrival_after_the_no_show_is_still_reported_late(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    raise_no_shows(store, at(11, 20))
    [arrival] = store.record_arrival("M-1", at(11, 40))
    assert arrival.minutes_early == -40


# -- upsert and delete -------------------------------------------------------------

def test_delete_says_whether_the_appointment_existed(store: AppointmentStore):
    store.upsert(appointment())
    assert store.delete("A-1") is True
    assert store.delete("A-1") is False
    assert store.appointments() == []


def test_a_deleted_appointment_is_never_a_no_show(store: AppointmentStore):
    store.upsert(appointment(scheduled_at=at(11)))
    store.delete("A-1")
    assert raise_no_shows(store, at(12)) == []


def test_erasing_a_member_removes_all_their_appointments(tmp_path: Path):
    with AppointmentStore(tmp_path / "a.db", "Asia/Shanghai") as store:
        store.upsert(appointment("A-1", "M-1"))
        store.upsert(appointment("A-2", "M-1", at(12, day=24)))
        store.upsert(appointment("A-3", "M-2"))
        assert store.delete_member("M-1") == 2
        assert [a.appointment_id for a in store.appointments()] == ["A-3"]


def test_settled_appointments_of_past_days_are_pruned_and_open_ones_kept(tmp_path: Path):
    with AppointmentStore(tmp_path / "a.db", "Asia/Shanghai") as store:
        store.upsert(appointment("arrived", "M-1", at(11, day=21)))
        store.record_arrival("M-1", at(10, 50, day=21))
        store.upsert(appointment("no-show", "M-2", at(11, day=21)))
        raise_no_shows(store, at(12, day=21))
        store.upsert(appointment("pending", "M-3", at(23, 50, day=21)))  # its no-show not raised yet
        store.upsert(appointment("yesterday", "M-4", at(9, day=22)))
        store.record_arrival("M-4", at(9, day=22))
        assert store.prune(date(2026, 11, 22)) == 2
        assert [a.appointment_id for a in store.appointments()] == ["pending", "yesterday"]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("a.db*"))
    assert b"M-1" not in raw and b"M-2" not in raw


def test_an_upsert_replaces_the_fields(store: AppointmentStore):
    store.upsert(appointment(advisor="Zhang Min"))
    store.upsert(appointment(advisor="Wang Fang"))
    updated = store.get("A-1")
    assert updated is not None and updated.advisor == "Wang Fang"
    assert len(store.appointments()) == 1


def test_naive_times_are_refused(store: AppointmentStore):
    with pytest.raises(ValueError, match="scheduled_at must be timezone-aware"):
        store.upsert(appointment(scheduled_at=datetime(2026, 11, 23, 11)))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record_arrival("M-1", datetime(2026, 11, 23, 11))
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        store.due_no_shows(datetime(2026, 11, 23, 11), GRACE)
