"""A full disk under the running daemon, and damaged state files at start-up.

The outbox refusing a write (SQLite's own "disk full", through `PRAGMA max_page_count`)
must not stop the daemon: the event waits in memory, the status says `storage: "error: ..."`,
and it is stored on a later try, in order. A damaged state file stops the start with a message
naming it — it is never recreated behind the operator's back — and `footfall doctor` says how
to recover.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from support.broker import Subscriber, mosquitto_path
from support.clips import START
from support.daemon import PREFIX, NoBroker, book, camera_table, config_file, enrol
from support.daemon_run import footfall, run_once_to_the_end

from footfall.config.schema import load_config
from footfall.edge.daemon import Daemon
from footfall.storage.sqlite import StorageError
from footfall.sync import events
from footfall.sync.outbox import Outbox


def visit(n: int) -> events.VisitEvent:
    return events.VisitEvent(store_id="sh-001", ts=START + timedelta(seconds=n), kind="visit", visitor_id=f"v{n}",
                             member_id=None, role="visitor", camera_id="door-1", first_seen_ts=START,
                             event_id=f"visit-{n}")


def close(daemon: Daemon) -> None:
    daemon.close()


def outbox_ids(path: Path) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM outbox ORDER BY seq")]


def test_a_full_disk_holds_events_in_memory_reports_it_and_stores_them_later_in_order(tmp_path, default_analyzer):
    daemon = Daemon(load_config(config_file(tmp_path, NoBroker())), analyzer=default_analyzer)
    try:
        daemon.store._emit(visit(1))
        conn = daemon.store.outbox._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow by a page
        big = {"blob": "x" * 200_000}
        with pytest.raises(StorageError):  # what the daemon now survives
            daemon.store.outbox.add("footfall/sh-001/visits", big, event_id="probe", alert=False)
        # Events too big for what is left: refused, held, reported.
        for n in (2, 3):
            event = visit(n)
            object.__setattr__(event, "visitor_id", "v" * 100_000)
            daemon.store._emit(event)
        assert [e.event_id for e in daemon.store.unstored] == ["visit-2", "visit-3"]
        assert daemon.store.storage_summary().startswith("error: ") and "outbox.db" in daemon.store.storage_summary()
        status = daemon.publisher._status("online").to_json()
        assert status["storage"] == daemon.store.storage_summary() and "full" in status["storage"]
        daemon.store._emit(visit(4))  # small enough, but waits behind the held ones: order is kept
        assert [e.event_id for e in daemon.store.unstored] == ["visit-2", "visit-3", "visit-4"]
        daemon._housekeeping()  # a retry that still fails changes nothing
        assert len(daemon.store.unstored) == 3
        conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        daemon.store.unstored._next_try = 0.0  # the retry is due
        daemon._housekeeping()
        assert not daemon.store.unstored and daemon.store.storage_summary() == "ok"
        assert daemon.publisher._status("online").to_json()["storage"] == "ok"
        assert outbox_ids(daemon.store.outbox.path) == ["visit-1", "visit-2", "visit-3", "visit-4"]
    finally:
        close(daemon)


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_the_daemon_survives_an_outbox_that_refuses_writes_for_a_while(
        tmp_path, broker, entrance_clip, default_analyzer, faces_dir, monkeypatch):
    config = config_file(tmp_path, broker, camera_table("door-1", entrance_clip, start_time=START))
    enrol(config, default_analyzer, faces_dir)
    real_add = Outbox.add
    refusals = {"left": 6}

    def flaky_add(self, *args, **kwargs):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise StorageError(f"{self.path}: cannot store an event in the outbox: database or disk is full")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(Outbox, "add", flaky_add)
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        daemon = Daemon(load_config(config), once=True, analyzer=default_analyzer)
        run_once_to_the_end(daemon, sub, 240)
        assert refusals["left"] == 0
        visits = [m.payload for m in sub.on(PREFIX + "visits")]
        assert [v["kind"] for v in visits] == ["visit", "visit", "visit", "reentry"]
        assert len(sub.on(PREFIX + "alerts/arrival")) == 1
        storage = [m.payload.get("storage") for m in sub.on(PREFIX + "status")]
        assert any(s and s.startswith("error: ") and "disk is full" in s for s in storage), storage
        assert storage[-1] == "ok"
        assert sub.on(PREFIX + "counts")[-1].payload["visits"] == 3
    finally:
        sub.close()


def build_state(tmp_path: Path, analyzer) -> Path:
    """A storage dir holding every state file, as after a first start."""
    daemon = Daemon(load_config(config_file(tmp_path, NoBroker())), analyzer=analyzer)
    daemon.store._emit(visit(1))
    close(daemon)
    return tmp_path / "state"


@pytest.mark.parametrize("name, damage", [("windows.db", "garbage"), ("outbox.db", "pages"),
                                          ("outbox.db", "garbage")])
def test_a_damaged_state_file_stops_the_start_names_the_file_and_doctor_explains_the_way_back(
        tmp_path, default_analyzer, name, damage):
    state = build_state(tmp_path, default_analyzer)
    target = state / name
    if damage == "garbage":
        target.write_bytes(os.urandom(8192))
    else:  # a valid header, pages after it overwritten
        size = target.stat().st_size
        with open(target, "r+b") as fh:
            fh.seek(4096)
            fh.write(os.urandom(size - 4096))
    before = target.read_bytes()
    config = str(config_file(tmp_path, NoBroker()))

    done = footfall("run", "--config", config, timeout=120)
    assert done.returncode == 1, done.stderr
    assert str(target) in done.stderr and "doctor" in done.stderr
    assert target.read_bytes() == before, "the damaged file is left as it was, never recreated"

    doctor = footfall("doctor", "--config", config, timeout=120)
    assert doctor.returncode == 1
    (line,) = [x for x in doctor.stdout.splitlines() if "state files" in x]
    assert line.startswith("FAIL") and str(target) in line
    assert "stop the service" in line and "move the file aside" in line
    if name == "outbox.db":
        assert "unsent events in it would be lost" in line
    assert target.read_bytes() == before, "doctor opens state files read-only"


def test_doctor_passes_healthy_state_files(tmp_path, default_analyzer):
    build_state(tmp_path, default_analyzer)
    doctor = footfall("doctor", "--config", str(config_file(tmp_path, NoBroker())), timeout=120)
    (line,) = [x for x in doctor.stdout.splitlines() if "state files" in x]
    assert line.startswith("ok") and "5 file(s)" in line and "outbox.db" in line


# -- a disk full under every state file (issue 12, item 11) ---------------------------------------------

def fill_to_the_brim(conn: sqlite3.Connection) -> None:
    """SQLite's own "database or disk is full" for every later write that needs room: the file may not
    grow (`max_page_count`) and the free space left in its pages is taken by filler rows that no query of
    the daemon selects (ids and times far from the replayed day)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA ignore_check_constraints = ON")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%'")]
    n = 10 ** 12
    for table in tables:
        columns = [(name, (kind or "").upper()) for _, name, kind, *_ in conn.execute(f"PRAGMA table_info({table})")]
        for size in (2000, 400, 60, 8, 1):
            while True:
                n += 1
                values = [n if "INT" in kind or "REAL" in kind else
                          (b"\0" * size if "BLOB" in kind else f"~{n}" + "~" * size) for _, kind in columns]
                try:
                    conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values))})", values)
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc), exc
                    break
                except sqlite3.IntegrityError:
                    break
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA ignore_check_constraints = OFF")


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
@pytest.mark.parametrize("store", ["disk", "memory"])
def test_a_disk_full_under_every_state_file_loses_no_passage_and_never_crashes(
        tmp_path, broker, entrance_clip, default_analyzer, faces_dir, store):
    config = config_file(tmp_path, broker, camera_table("door-1", entrance_clip, start_time=START))
    enrol(config, default_analyzer, faces_dir)
    book(tmp_path / "state")
    if store == "memory":
        config.write_text(config.read_text().replace('[storage]', '[privacy]\nanonymous_store = "memory"\n[storage]'))
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        daemon = Daemon(load_config(config), once=True, analyzer=default_analyzer)
        full = [daemon.store.counts._conn, daemon.store.appointments._conn, daemon.store.gallery._conn]
        if store == "disk":
            full.append(daemon.store.window._conn)
        for conn in full:
            fill_to_the_brim(conn)
        run_once_to_the_end(daemon, sub, 240)
        visits = [m.payload for m in sub.on(PREFIX + "visits")]
        assert [v["kind"] for v in visits] == ["visit", "visit", "visit", "reentry"]
        assert daemon.decisions == 4
        storage = [m.payload.get("storage") for m in sub.on(PREFIX + "status")]
        assert any(s and s.startswith("error: ") and "full" in s for s in storage), storage
    finally:
        sub.close()


def test_open_windows_refused_by_a_full_disk_are_written_when_it_takes_writes_again(tmp_path):
    from footfall.dedup.window import VisitWindow

    path = tmp_path / "windows.db"

    def window() -> VisitWindow:
        return VisitWindow(dim=4, window=timedelta(hours=3), timezone="Asia/Shanghai", threshold=0.9, margin=0.05,
                           same_entry=timedelta(seconds=5), db_path=path)

    w = window()
    try:
        fill_to_the_brim(w._conn)
        first = w.enter_anonymous([1.0, 0, 0, 0], START)
        again = w.enter_anonymous([1.0, 0, 0, 0], START + timedelta(minutes=10))
        assert (first.kind, again.kind, again.visitor_id) == ("visit", "reentry", first.visitor_id)
        assert "full" in w.storage_error
        assert not w.retry_storage()
        w._conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        assert w.retry_storage() and w.storage_error is None
        for table in ("window_vectors", "windows"):  # the filler, so that the file loads
            w._conn.execute(f"DELETE FROM {table} WHERE visitor_id LIKE '~%'")
    finally:
        w.close()
    reopened = window()
    try:
        back = reopened.enter_anonymous([1.0, 0, 0, 0], START + timedelta(minutes=20))
        assert (back.kind, back.visitor_id) == ("reentry", first.visitor_id)
    finally:
        reopened.close()
