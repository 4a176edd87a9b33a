"""HQ storage on a real PostgreSQL: migrations, idempotent batches, roll-ups, bad input, privacy."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from support.hq import NOW, ingest, query, visit

from footfall.hq.collector import Zones
from footfall.hq.ingest import Rejection, Row, parse
from footfall.hq.migrate import migrate, migrations
from footfall.hq.writer import write_batch


def test_migrations_apply_in_order_once_and_are_recorded(hq_db):
    with psycopg.connect(hq_db) as conn:
        assert migrate(conn) == []  # the fixture applied them already
        recorded = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert recorded == [(v, n) for v, n, _ in migrations()]
    assert recorded[0] == (1, "0001_init.sql")


def test_every_time_column_is_timestamptz_and_no_column_can_hold_an_image_or_embedding(hq_db):
    columns = query(hq_db, "SELECT table_name, column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'public'")
    assert columns
    for table, column, data_type in columns:
        assert data_type not in ("timestamp without time zone", "bytea"), (table, column)
        assert not any(word in column for word in ("embedding", "image", "photo", "vector")), (table, column)


def test_a_replayed_batch_changes_nothing_and_the_rollup_counts_once(hq_db):
    batch = [visit("sh-001", "2026-11-23T10:15:00.000+08:00"),
             visit("sh-001", "2026-11-23T10:45:00.000+08:00", kind="reentry"),
             visit("sh-001", "2026-11-23T11:05:00.000+08:00", member="m-1"),
             visit("sh-001", "2026-11-23T11:06:00.000+08:00", identified=False)]
    first = ingest(hq_db, batch)
    again = ingest(hq_db, batch + batch[:2])
    assert (first.inserted, first.duplicates) == (4, 0)
    assert (again.inserted, again.duplicates) == (0, 6)
    assert query(hq_db, "SELECT count(*) FROM visits") == [(4,)]
    assert query(hq_db, "SELECT store_day, store_hour, visits, reentries, member_visits, unidentified "
                        "FROM hourly ORDER BY store_hour") == [
        (date(2026, 11, 23), 10, 1, 1, 0, 0), (date(2026, 11, 23), 11, 2, 0, 1, 1)]


def test_store_day_and_hour_follow_the_configured_zone_else_the_event_offset(hq_db):
    # 23:30 UTC on the 22nd is 07:30 on the 23rd in Shanghai; a store without a configured zone
    # takes the offset its events carry (-05:00 here).
    zones = Zones({"sh-001": "Asia/Shanghai"}, {})
    ingest(hq_db, [visit("sh-001", "2026-11-22T23:30:00.000+00:00"),
                   visit("ny-001", "2026-11-23T01:30:00.000-05:00")], zones=zones)
    assert query(hq_db, "SELECT store_id, store_day, store_hour FROM visits ORDER BY store_id") == [
        ("ny-001", date(2026, 11, 23), 1), ("sh-001", date(2026, 11, 23), 7)]
    assert query(hq_db, "SELECT store_id, timezone, tz_source FROM stores ORDER BY store_id") == [
        ("ny-001", "-05:00", "offset"), ("sh-001", "Asia/Shanghai", "config")]


def test_a_zone_reported_by_the_box_outranks_an_event_offset_but_not_the_config(hq_db):
    """Berlin keeps summer time: by its offset alone (+01:00 in winter) a July visit at 23:30 would
    be placed at 22h. Once the box's status names its zone, the hours are Berlin's own."""
    zones = Zones({"sh-001": "Asia/Shanghai"}, {})
    ingest(hq_db, [visit("de-001", "2026-01-10T10:00:00.000+01:00")], zones=zones)
    status = ("footfall/de-001/status", json.dumps({
        "event_id": str(uuid.uuid4()), "store_id": "de-001", "ts": "2026-07-10T09:00:00.000+02:00", "state": "online",
        "version": "0.1.0", "cameras": {}, "timezone": "Europe/Berlin", "outbox_backlog": 3, "dead_letters": 1}).encode())
    (row,) = [parse(*status, prefix="footfall", now=NOW, tz_for=zones, max_bytes=65536, max_future=timedelta(hours=2),
                    max_past=timedelta(days=3000))]
    assert isinstance(row, Row) and row.values["timezone"] == "Europe/Berlin"
    zones.learn("de-001", row.values["timezone"])  # what the collector does with a status it checked
    zones.learn("sh-001", "Europe/Paris")  # a configured zone stays
    assert ingest(hq_db, [visit("de-001", "2026-07-10T23:30:00.000+02:00"),
                          visit("sh-001", "2026-07-10T10:00:00.000+00:00")],
                  zones=zones, now=datetime(2026, 7, 11, tzinfo=UTC)).rejected == 0
    with psycopg.connect(hq_db) as conn:
        write_batch(conn, [row], [], {"de-001": zones.names["de-001"]})
    assert query(hq_db, "SELECT store_id, store_day, store_hour FROM visits ORDER BY ts") == [
        ("de-001", date(2026, 1, 10), 10), ("sh-001", date(2026, 7, 10), 18), ("de-001", date(2026, 7, 10), 23)]
    assert query(hq_db, "SELECT store_id, timezone, tz_source FROM stores ORDER BY store_id") == [
        ("de-001", "Europe/Berlin", "status"), ("sh-001", "Asia/Shanghai", "config")]
    assert query(hq_db, "SELECT outbox_backlog, dead_letters FROM store_status") == [(3, 1)]
    refused = parse("footfall/de-001/status", status[1].replace(b"Europe/Berlin", b"Mars/Olympus"), prefix="footfall",
                    now=NOW, tz_for=zones, max_bytes=65536, max_future=timedelta(hours=2), max_past=timedelta(days=3000))
    assert isinstance(refused, Rejection) and "timezone" in refused.reason and "Mars/Olympus" in refused.reason


BAD = {
    "malformed JSON": ("footfall/sh-001/visits", b'{"event_id": "x", '),
    "unknown message kind": ("footfall/sh-001/alerts/teleport", b"{}"),
    "unknown visit kind": visit("sh-001", "2026-11-23T10:00:00.000+08:00", kind="teleport"),
    "ahead of the HQ clock": visit("sh-001", "2026-11-26T10:00:00.000+08:00"),
    "differs from the topic": ("footfall/sh-001/visits", visit("sh-002", "2026-11-23T10:00:00.000+08:00")[1]),
    "over the limit": visit("sh-001", "2026-11-23T10:00:00.000+08:00", padding="x" * 70_000),
    "visitor_id is required": ("footfall/sh-001/visits", json.dumps(
        {"event_id": "e1", "store_id": "sh-001", "ts": "2026-11-23T10:00:00.000+08:00", "kind": "visit",
         "role": "visitor", "identified": True, "first_seen_ts": "2026-11-23T10:00:00.000+08:00"}).encode()),
    "not a JSON object": ("footfall/sh-001/status", b"[1, 2]"),
}


def test_bad_messages_become_ingest_errors_with_their_reason_and_good_ones_still_land(hq_db):
    good = visit("sh-001", "2026-11-23T10:00:00.000+08:00")
    written = ingest(hq_db, [*BAD.values(), good])
    assert (written.inserted, written.rejected) == (1, len(BAD))
    errors = query(hq_db, "SELECT reason, payload_bytes, length(payload_excerpt), topic_store_id FROM ingest_errors")
    for expected in BAD:
        assert any(expected in reason for reason, *_ in errors), expected
    assert all(excerpt <= 512 for _, _, excerpt, _ in errors)
    assert max(size for _, size, _, _ in errors) > 70_000  # the size is kept, the payload is not
    assert {store for *_, store in errors} == {"sh-001"}
    # the store named only in a payload got nothing
    assert query(hq_db, "SELECT store_id FROM visits") == [("sh-001",)]
    assert query(hq_db, "SELECT store_id FROM stores") == [("sh-001",)]


def test_payload_extras_such_as_an_embedding_or_image_are_never_stored(hq_db):
    secret = "QUJDREVGR0hJSktMTU5PUA=="
    topic, body = visit("sh-001", "2026-11-23T10:00:00.000+08:00", member="m-1",
                        embedding=[0.125] * 256, image=secret)
    arrival = {"event_id": str(uuid.uuid4()), "store_id": "sh-001", "ts": "2026-11-23T10:00:01.000+08:00",
               "member_id": "m-1", "name": "Ada", "tier": "gold", "visit_event_id": json.loads(body)["event_id"],
               "appointment": None, "images": [secret], "embeddings": [[0.125] * 256], "last_purchase": "x"}
    written = ingest(hq_db, [(topic, body), ("footfall/sh-001/alerts/arrival", json.dumps(arrival).encode())])
    assert written.inserted == 2
    with psycopg.connect(hq_db) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        dump = "".join(str(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)
    assert secret not in dump and "0.125" not in dump and "Ada" not in dump


def test_a_store_cannot_pre_empt_another_stores_event_ids(hq_db):
    shared_id = str(uuid.uuid4())
    ingest(hq_db, [visit("sh-001", "2026-11-23T10:00:00.000+08:00", event_id=shared_id),
                   visit("sh-002", "2026-11-23T10:00:00.000+08:00", event_id=shared_id)])
    assert query(hq_db, "SELECT store_id FROM visits ORDER BY 1") == [("sh-001",), ("sh-002",)]


def test_the_latest_status_is_the_newest_by_the_boxes_clock_whatever_the_arrival_order(hq_db):
    def status(state: str, ts: str) -> tuple[str, bytes]:
        return "footfall/sh-001/status", json.dumps(
            {"event_id": str(uuid.uuid4()), "store_id": "sh-001", "ts": ts, "state": state, "version": "0.1.0",
             "cameras": {"door-1": "streaming"}, "storage": "ok"}).encode()

    ingest(hq_db, [status("stopped", "2026-11-23T11:00:00.000+08:00")])
    ingest(hq_db, [status("online", "2026-11-23T10:00:00.000+08:00")])
    assert query(hq_db, "SELECT state FROM store_status") == [("stopped",)]
    assert query(hq_db, "SELECT count(*) FROM status_history") == [(2,)]


@pytest.mark.parametrize("run", range(8))  # event ids are random: the order they sort in must not matter
def test_a_last_will_with_the_connections_own_time_wins_over_its_online_in_the_same_batch(hq_db, run):
    connected = "2026-11-23T10:00:00.000+08:00"  # the online statuses and the will of one connection share it

    def status(state: str) -> tuple[str, bytes]:
        return "footfall/sh-001/status", json.dumps(
            {"event_id": str(uuid.uuid4()), "store_id": "sh-001", "ts": connected, "state": state,
             "version": "0.1.0", "cameras": {}, "storage": "ok"}).encode()

    ingest(hq_db, [status("online"), status("online"), status("offline")])  # SIGKILL: the broker sends the will
    assert query(hq_db, "SELECT state FROM store_status") == [("offline",)]


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"null", b'{"store_id": 5}', b"1e999"])
def test_parse_never_raises(payload):
    result = parse("footfall/sh-001/visits", payload, prefix="footfall", now=NOW, tz_for=Zones({}, {}),
                   max_bytes=1024, max_future=timedelta(hours=2))
    assert isinstance(result, Rejection) and result.reason
