"""An erased member id, searched for in the raw bytes of the files that held it, not through queries.

On the box: the real daemon (`python -m footfall run`) sees an enrolled member walk in on a live
MJPEG camera and publishes the visit through a real Mosquitto; the CRM books and cancels an
appointment for them, then erases them (`members/delete`), while it is up. Within seconds of the
`members/deleted` confirmation leaving, no file under storage.dir (databases, their -wal and
-shm) holds the id, and the daemon is still running. A checkpoint that a reader held up at the
erasure is done by the store's next tick.

At head office: a real PostgreSQL; a member's day among 6 000 other visits is written by
the collector's writer, then the member's `members/deleted`. After a CHECKPOINT (so every page is
on disk) no row or index entry in the tables' heap and index files holds the id. Fragments may
stay in the pages' free space, which PostgreSQL does not clear, and in the cluster's WAL; the
operator's rewrite (VACUUM FULL) leaves none in the tables' files. docs/security.md says what a
database cannot promise.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from support.broker import Subscriber, wait_until
from support.clips import ClipCamera
from support.daemon import PREFIX, TWO_MEMBERS, camera_table, config_file, enrol
from support.daemon_run import footfall_running, online_status
from support.daemon_state import files_holding
from support.hq import ERASED_AT, ingest, member_day, message, visit

from footfall.config.schema import parse_config
from footfall.edge.store import Store
from footfall.sync import events
from footfall.tooling.scenario import Appearance, Clip, SpriteBank

MEMBER = "deepface_p05"
HQ_MEMBER = "m-erased-4711"
HQ_TABLES = ("visits", "alerts", "no_shows", "appointments", "ingest_errors")


def test_an_id_erased_while_the_daemon_runs_is_in_no_file_or_wal_before_it_stops(
        tmp_path, broker, hq, default_analyzer, faces_dir):
    bank = SpriteBank(faces_dir, default_analyzer)
    clip = Clip("door-1", datetime.now(UTC), 6.0, (Appearance(MEMBER, "1.jpg", 1.0),), fps=10)
    camera = ClipCamera(clip, bank, seed=5).start()
    config = config_file(tmp_path, broker, camera_table("door-1", camera.url))
    enrol(config, default_analyzer, faces_dir, TWO_MEMBERS)
    state, needle = tmp_path / "state", MEMBER.encode()
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        with footfall_running(config) as daemon:
            sub.wait_for(online_status({"door-1": "streaming"}), 60, "the daemon online with its camera streaming")
            camera.play()
            sub.wait_for(lambda ms: any(m.topic == PREFIX + "alerts/arrival" and m.payload.get("member_id") == MEMBER
                                        for m in ms), 30, "the member recognised")
            sub.wait_for(lambda ms: any(m.topic == PREFIX + "visits" and m.payload.get("member_id") == MEMBER
                                        for m in ms), 30, "the member's visit")
            held = {name.removesuffix("-wal") for name in files_holding(state, needle)}
            assert {"gallery.db", "windows.db", "outbox.db"} <= held, held

            # A booking made and cancelled: its rows are gone, its page images stay in appointments.db-wal.
            booking = {"appointment_id": "A-1", "member_id": MEMBER, "channel": "wechat", "advisor": "Li",
                       "scheduled_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}
            hq.send("appointments/upsert", booking)
            wait_until(lambda: "appointments.db-wal" in files_holding(state, needle), 10, "the booking stored")
            before = files_holding(state, needle)
            # In the order sent: the cancellation, then the CRM's erasure.
            hq.send("appointments/delete", {"appointment_id": "A-1"})
            hq.send("members/delete", {"member_id": MEMBER})
            sub.wait_for(lambda ms: any(m.topic == PREFIX + "members/deleted" for m in ms), 10, "members/deleted")
            confirmed = time.monotonic()
            try:
                wait_until(lambda: not files_holding(state, needle), 5, "no file under storage.dir holding the id")
            except AssertionError:
                raise AssertionError(f"{MEMBER} still in {files_holding(state, needle)} (before the erasure: {before})"
                                     ) from None
            print(f"\nbefore the erasure: {before}; none {time.monotonic() - confirmed:.2f} s after members/deleted")
            assert daemon.process.poll() is None, "the daemon is still running"
            assert b"deepface_p03" in b"".join(p.read_bytes() for p in state.glob("gallery.db*")), "the search sees ids"
    finally:
        camera.stop()
        sub.close()
    assert needle not in daemon.output.encode()


def test_a_checkpoint_a_reader_held_up_after_an_erasure_is_done_a_second_later(tmp_path, default_analyzer):
    config = parse_config({"store_id": "sh-001", "timezone": "Asia/Shanghai", "storage": {"dir": str(tmp_path)}})
    booking = {"appointment_id": "A-1", "member_id": MEMBER, "channel": "wechat", "advisor": "Li",
               "scheduled_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}
    with Store(config, default_analyzer.pack.spec) as store:
        assert store.command(events.APPOINTMENTS_UPSERT, json.dumps(booking).encode()).ok
        assert store.command(events.APPOINTMENTS_DELETE, b'{"appointment_id": "A-1"}').ok
        reader = sqlite3.connect(tmp_path / "appointments.db", isolation_level=None)  # `footfall doctor`, say
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM appointments").fetchone()
        assert store.command(events.MEMBERS_DELETE, json.dumps({"member_id": MEMBER}).encode()).ok
        assert "appointments.db-wal" in files_holding(tmp_path, MEMBER.encode())
        reader.execute("COMMIT")
        reader.close()
        time.sleep(1.05)
        store.tick()
        # While the store is open, only the members/deleted notice (not yet sent) names the member.
        holding = files_holding(tmp_path, MEMBER.encode())
        assert set(holding) <= {"outbox.db", "outbox.db-wal"} and sum(holding.values()) == 1, holding


def relation_files(url: str, data_dir: Path, tables: tuple[str, ...]) -> dict[str, Path]:
    """Each table and each of its indexes, by name: its file in the cluster's data directory."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT c.relname, pg_relation_filepath(c.oid) FROM pg_class c
               WHERE c.oid = ANY(%s::regclass[])
                  OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ANY(%s::regclass[]))""",
            (list(tables), list(tables))).fetchall()
    return {name: data_dir / path for name, path in rows}


def checkpoint(url: str) -> int:
    """CHECKPOINT (every dirty page written out); returns the cluster's page size."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT current_setting('block_size')::int").fetchone()
    assert row is not None
    return row[0]


def split_pages(raw: bytes, page_size: int) -> tuple[bytes, bytes]:
    """The bytes of a relation file's items (headers, line pointers, rows or index entries) and the
    bytes of its pages' free space (between pd_lower and pd_upper), which PostgreSQL never clears."""
    items, free = [], []
    for start in range(0, len(raw), page_size):
        page = raw[start:start + page_size]
        lower, upper = struct.unpack_from("<HH", page, 12)
        if not lower <= upper <= len(page):  # an all-zero page (never used) has lower = upper = 0
            lower = upper = 0
        items += [page[:lower], page[upper:]]
        free.append(page[lower:upper])
    return b"\0".join(items), b"".join(free)


def holding(url: str, files: dict[str, Path], needle: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """After a CHECKPOINT: the relations whose items hold `needle`, and those whose free space does."""
    page_size = checkpoint(url)
    in_items, in_free = {}, {}
    for name, path in files.items():
        items, free = split_pages(path.read_bytes(), page_size)
        in_items[name], in_free[name] = items.count(needle), free.count(needle)
    return {n: c for n, c in in_items.items() if c}, {n: c for n, c in in_free.items() if c}


def test_an_id_erased_at_head_office_is_in_no_row_or_index_entry_of_the_files(postgres, hq_db):
    # Among a few thousand other visits, as in a chain's database: few pages hold the erased rows,
    # the case where a plain VACUUM leaves the indexes alone (INDEX_CLEANUP AUTO).
    crowd = [visit("sh-009", f"2026-11-23T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000+08:00",
                   member=f"m-{i}") for i in range(6000)]
    ingest(hq_db, crowd[:3000] + member_day(HQ_MEMBER) + crowd[3000:])
    files = relation_files(hq_db, postgres.data, HQ_TABLES)
    needle = HQ_MEMBER.encode()
    before, _ = holding(hq_db, files, needle)
    assert set(HQ_TABLES) | {"visits_member", "alerts_member", "no_shows_member", "appointments_member"} <= set(before)

    started = time.monotonic()
    ingest(hq_db, [message("sh-001", "members/deleted", ts=ERASED_AT, member_id=HQ_MEMBER, removed=True)])
    took = time.monotonic() - started
    assert relation_files(hq_db, postgres.data, HQ_TABLES) == files, "the same files: VACUUM, not a rewrite"
    in_items, in_free = holding(hq_db, files, needle)
    wal = sum(p.read_bytes().count(needle) for p in (postgres.data / "pg_wal").glob("0*") if p.is_file())
    print(f"\nbefore: {before}; the erasure with its VACUUM took {took:.2f} s; after it, in rows or entries: "
          f"{in_items}, in pages' free space: {in_free}; in the cluster's WAL: {wal}")
    assert in_items == {}, f"{HQ_MEMBER} still in a row or an index entry of {in_items}"

    # What an operator runs to leave no fragment in the tables' files (docs/security.md): a rewrite.
    with psycopg.connect(hq_db, autocommit=True) as conn:
        conn.execute(f"VACUUM FULL {', '.join(HQ_TABLES)}")
    rewritten = relation_files(hq_db, postgres.data, HQ_TABLES)
    assert holding(hq_db, rewritten, needle) == ({}, {})
