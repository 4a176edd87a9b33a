"""Appointments of members at this store: arrivals and no-shows (CONTRACT, `alerts/appointment`, `alerts/no_show`).

An appointment is *arrived* when its member enters on the store day it is
scheduled for, whether early or late; it is a *no-show* when scheduled_at +
grace has passed without an arrival. Both facts are kept in SQLite with the
appointment, so a no-show is flagged exactly once even across restarts, and
a re-delivered upsert (MQTT QoS 1) of an unchanged appointment keeps them.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from footfall.storage.sqlite import StoreFile, db_file, open_store, purge, transaction
from footfall.sync.counts import aware, day_bounds, from_us, store_day, to_us, zone

_SCHEMA = [
    """
    CREATE TABLE appointments (
        appointment_id TEXT PRIMARY KEY,
        member_id      TEXT NOT NULL,
        scheduled_us   INTEGER NOT NULL,  -- microseconds since 1970-01-01 UTC
        channel        TEXT NOT NULL,
        advisor        TEXT NOT NULL,
        arrived_us     INTEGER,           -- the member's arrival, NULL until they come
        flagged        INTEGER NOT NULL DEFAULT 0 CHECK (flagged IN (0, 1))  -- no-show raised
    );
    CREATE INDEX appointments_by_member ON appointments(member_id, scheduled_us);
    CREATE INDEX appointments_by_time ON appointments(scheduled_us);
    """,
]


@dataclass(frozen=True)
class Appointment:
    """A member's appointment at this store, as the CRM sent it."""

    appointment_id: str
    member_id: str
    scheduled_at: datetime  # timezone-aware
    channel: str
    advisor: str


@dataclass(frozen=True)
class Arrival:
    """A member arrived for an appointment: when, and how many minutes early (negative when late)."""

    appointment: Appointment
    arrived_at: datetime
    minutes_early: int


# -- pure rules --------------------------------------------------------------------

def check_appointment(appointment: Appointment) -> None:
    """Refuse an appointment that cannot be stored (ValueError naming the field)."""
    for name in ("appointment_id", "member_id"):
        value = getattr(appointment, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    for name in ("channel", "advisor"):
        if not isinstance(getattr(appointment, name), str):
            raise ValueError(f"{name} must be a string")
    aware(appointment.scheduled_at, "scheduled_at")


def minutes_early(scheduled_at: datetime, arrived_at: datetime) -> int:
    """Whole minutes between arrival and appointment, rounded; negative when the member is late."""
    return round((aware(scheduled_at) - aware(arrived_at)) / timedelta(minutes=1))


def is_due(scheduled_at: datetime, grace: timedelta, now: datetime) -> bool:
    """A no-show is due once scheduled_at + grace is reached."""
    return aware(scheduled_at) + grace <= aware(now, "now")


def keeps_arrival(old_member: str, old_day: date, new: Appointment, new_day: date) -> bool:
    """An updated appointment stays arrived while its member and store day are unchanged."""
    return old_member == new.member_id and old_day == new_day


# -- the store ---------------------------------------------------------------------

class AppointmentStore(StoreFile):
    """Appointments with their arrival and no-show state, in a private SQLite file (or in memory). Thread-safe."""

    _conn: sqlite3.Connection

    def __init__(self, db_path: Path | None, timezone: str) -> None:
        self.tz = zone(timezone)
        self._lock = threading.RLock()
        self._conn = open_store(db_path, _SCHEMA, "the appointments")

    def day_of(self, ts: datetime) -> date:
        """The store day (local date) `ts` falls on."""
        return store_day(ts, self.tz)

    def upsert(self, appointment: Appointment) -> None:
        """Add or replace an appointment.

        The no-show flag survives only when member and time are unchanged (a
        re-sent message); a recorded arrival survives while member and store
        day are unchanged.
        """
        check_appointment(appointment)
        new_us = to_us(appointment.scheduled_at)
        with self._lock, transaction(self._conn):
            old = self._conn.execute(
                "SELECT member_id, scheduled_us, arrived_us, flagged FROM appointments WHERE appointment_id = ?",
                (appointment.appointment_id,)).fetchone()
            arrived_us, flagged = None, 0
            if old is not None:
                old_member, old_us, old_arrived, old_flagged = old
                if keeps_arrival(old_member, self.day_of(from_us(old_us)), appointment,
                                 self.day_of(appointment.scheduled_at)):
                    arrived_us = old_arrived
                if old_member == appointment.member_id and old_us == new_us:
                    flagged = old_flagged
            self._conn.execute(
                """INSERT OR REPLACE INTO appointments
                   (appointment_id, member_id, scheduled_us, channel, advisor, arrived_us, flagged)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (appointment.appointment_id, appointment.member_id, new_us, appointment.channel,
                 appointment.advisor, arrived_us, flagged))

    def delete(self, appointment_id: str) -> bool:
        """Remove an appointment; False if it was unknown."""
        return self._changes("DELETE FROM appointments WHERE appointment_id = ?", appointment_id)

    def delete_member(self, member_id: str) -> int:
        """Remove every appointment of a member (erasure), from the WAL too; returns how many."""
        with self._lock:
            with transaction(self._conn):
                removed = self._conn.execute("DELETE FROM appointments WHERE member_id = ?", (member_id,)).rowcount
            if removed and db_file(self._conn):
                purge(self._conn)
        return removed

    def prune(self, before_day: date) -> int:
        """Forget settled appointments (arrived, or their no-show raised) scheduled before `before_day`
        began in store time, from the WAL too; returns how many. The CRM keeps the history."""
        start, _ = day_bounds(before_day, self.tz)
        with self._lock:
            with transaction(self._conn):
                removed = self._conn.execute(
                    """DELETE FROM appointments
                       WHERE scheduled_us < ? AND (arrived_us IS NOT NULL OR flagged = 1)""",
                    (to_us(start),)).rowcount
            if removed and db_file(self._conn):
                purge(self._conn)
        return removed

    def get(self, appointment_id: str) -> Appointment | None:
        """The appointment with this id, or None."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM appointments WHERE appointment_id = ?",
                                     (appointment_id,)).fetchone()
        return self._appointment(row) if row else None

    def appointments(self) -> list[Appointment]:
        """Every appointment held, ordered by id."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM appointments ORDER BY appointment_id").fetchall()
        return [self._appointment(r) for r in rows]

    def for_member_on_day(self, member_id: str, day: date) -> list[Appointment]:
        """A member's appointments scheduled on one store day, earliest first."""
        start, end = day_bounds(day, self.tz)
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT {_COLUMNS} FROM appointments
                    WHERE member_id = ? AND scheduled_us >= ? AND scheduled_us < ?
                    ORDER BY scheduled_us, appointment_id""",
                (member_id, to_us(start), to_us(end))).fetchall()
        return [self._appointment(r) for r in rows]

    def record_arrival(self, member_id: str, ts: datetime) -> list[Arrival]:
        """The member entered at `ts`: mark their not-yet-arrived appointments of that store day as arrived.

        Returns those appointments with `minutes_early` (negative when late),
        earliest first; a second entry the same day returns nothing. An arrival
        after a no-show was flagged still counts (the advisor wants to know).
        """
        aware(ts)
        start, end = day_bounds(self.day_of(ts), self.tz)
        with self._lock, transaction(self._conn):
            rows = self._conn.execute(
                f"""SELECT {_COLUMNS} FROM appointments
                    WHERE member_id = ? AND scheduled_us >= ? AND scheduled_us < ? AND arrived_us IS NULL
                    ORDER BY scheduled_us, appointment_id""",
                (member_id, to_us(start), to_us(end))).fetchall()
            self._conn.executemany("UPDATE appointments SET arrived_us = ? WHERE appointment_id = ?",
                                   [(to_us(ts), r[0]) for r in rows])
        arrivals = []
        for row in rows:
            appointment = self._appointment(row)
            arrivals.append(Arrival(appointment, ts.astimezone(self.tz), minutes_early(appointment.scheduled_at, ts)))
        return arrivals

    def due_no_shows(self, now: datetime, grace: timedelta) -> list[Appointment]:
        """Appointments with scheduled_at + grace <= now, no arrival and no no-show raised yet, earliest first."""
        aware(now, "now")
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT {_COLUMNS} FROM appointments
                    WHERE scheduled_us <= ? AND arrived_us IS NULL AND flagged = 0
                    ORDER BY scheduled_us, appointment_id""",
                (to_us(now - grace),)).fetchall()
        return [self._appointment(r) for r in rows]

    def mark_flagged(self, appointment_id: str) -> bool:
        """Record that the no-show of this appointment was raised; False if it is unknown."""
        return self._changes("UPDATE appointments SET flagged = 1 WHERE appointment_id = ?", appointment_id)

    def _changes(self, sql: str, appointment_id: str) -> bool:
        """Run `sql` on one appointment in its own transaction; whether it changed a row."""
        with self._lock, transaction(self._conn):
            return self._conn.execute(sql, (appointment_id,)).rowcount > 0

    def _appointment(self, row: tuple) -> Appointment:
        appointment_id, member_id, scheduled_us, channel, advisor = row
        return Appointment(appointment_id, member_id, from_us(scheduled_us).astimezone(self.tz), channel, advisor)


_COLUMNS = "appointment_id, member_id, scheduled_us, channel, advisor"
