"""The HQ read API (hq/read.py) on a real PostgreSQL, fed through the same checks and writer as the collector."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from support.hq import NOW, ingest, message, visit

from footfall.hq import read
from footfall.hq.collector import Zones

DAY = date(2026, 11, 23)


def arrival(store: str, ts: str, visit_event_id: str, member: str = "m-1") -> tuple[str, bytes]:
    return message(store, "alerts/arrival", ts, member_id=member, name="x", tier="gold",
                   visit_event_id=visit_event_id, appointment=None)


def appointment(store: str, appointment_id: str, channel: str, scheduled: str) -> tuple[str, bytes]:
    return f"footfall/{store}/appointments/upsert", json.dumps(
        {"appointment_id": appointment_id, "member_id": "m-" + appointment_id, "scheduled_at": scheduled,
         "channel": channel, "advisor": "Li"}).encode()


@pytest.fixture
def chain(hq_db):
    zones = Zones({"sh-001": "Asia/Shanghai", "sh-002": "Asia/Shanghai"}, {})
    messages = [
        visit("sh-001", "2026-11-23T10:05:00.000+08:00"),
        visit("sh-001", "2026-11-23T10:20:00.000+08:00", kind="reentry"),
        visit("sh-001", "2026-11-23T11:00:00.000+08:00", member="m-1"),
        visit("sh-001", "2026-11-22T18:00:00.000+08:00"),
        visit("sh-002", "2026-11-23T15:30:00.000+08:00", identified=False),
        message("sh-001", "status", "2026-11-23T09:00:00.000+08:00", state="online", version="0.1.0",
                cameras={"door-1": "streaming"}, storage="ok"),
        message("sh-002", "status", "2026-11-23T09:00:00.000+08:00", state="stopped", version="0.1.0",
                cameras={}, storage="ok"),
        # the box's own counts: sh-001 has an entry line, 2 people left through it
        message("sh-001", "counts", "2026-11-23T11:30:00.000+08:00", date="2026-11-23", visits=2, reentries=1,
                member_visits=1, unidentified=0, exits=2, by_hour=[0] * 10 + [1, 1] + [0] * 12),
        # conversion: wechat 2 booked (1 came, 1 no-show), phone 1 booked (flagged, then came late)
        appointment("sh-001", "a1", "wechat", "2026-11-23T11:00:00.000+08:00"),
        appointment("sh-001", "a2", "wechat", "2026-11-23T14:00:00.000+08:00"),
        appointment("sh-002", "a3", "phone", "2026-11-23T10:00:00.000+08:00"),
        message("sh-001", "alerts/appointment", "2026-11-23T10:58:00.000+08:00", appointment_id="a1",
                member_id="m-a1", scheduled_at="2026-11-23T11:00:00.000+08:00", channel="wechat", advisor="Li",
                minutes_early=2),
        message("sh-001", "alerts/no_show", "2026-11-23T14:30:00.000+08:00", appointment_id="a2",
                member_id="m-a2", scheduled_at="2026-11-23T14:00:00.000+08:00", grace_minutes=30),
        message("sh-002", "alerts/no_show", "2026-11-23T10:30:00.000+08:00", appointment_id="a3",
                member_id="m-a3", scheduled_at="2026-11-23T10:00:00.000+08:00", grace_minutes=30),
        message("sh-002", "alerts/appointment", "2026-11-23T10:40:00.000+08:00", appointment_id="a3",
                member_id="m-a3", scheduled_at="2026-11-23T10:00:00.000+08:00", channel="phone", advisor="Li",
                minutes_early=-40),
        # response times: three arrivals in sh-001 acked after 10 s, 30 s and never
        arrival("sh-001", "2026-11-23T11:00:00.000+08:00", "v1"),
        arrival("sh-001", "2026-11-23T12:00:00.000+08:00", "v2"),
        arrival("sh-001", "2026-11-23T13:00:00.000+08:00", "v3"),
        message("sh-001", "alerts/ack", "2026-11-23T11:00:10.000+08:00", visit_event_id="v1", guide="g1"),
        message("sh-001", "alerts/ack", "2026-11-23T11:00:50.000+08:00", visit_event_id="v1", guide="g2"),
        message("sh-001", "alerts/ack", "2026-11-23T12:00:30.000+08:00", visit_event_id="v2", guide="g1"),
    ]
    written = ingest(hq_db, messages, zones=zones, now=NOW)
    assert written.rejected == 0
    with psycopg.connect(hq_db) as conn:
        yield conn


def test_chain_by_day_fills_every_day_of_the_range(chain):
    assert read.chain_by_day(chain, date(2026, 11, 21), DAY) == [
        {"day": "2026-11-21", "visits": 0, "reentries": 0, "member_visits": 0, "unidentified": 0, "adopted_hours": 0},
        {"day": "2026-11-22", "visits": 1, "reentries": 0, "member_visits": 0, "unidentified": 0, "adopted_hours": 0},
        {"day": "2026-11-23", "visits": 3, "reentries": 1, "member_visits": 1, "unidentified": 1, "adopted_hours": 0},
    ]


def test_store_table_has_the_days_totals_state_and_silence(chain):
    with chain.cursor() as cur:
        cur.execute("UPDATE stores SET last_seen = %s WHERE store_id = 'sh-002'", (NOW - timedelta(hours=1),))
        cur.execute("UPDATE stores SET last_seen = %s WHERE store_id = 'sh-001'", (NOW - timedelta(minutes=1),))
    rows = {r["store_id"]: r for r in read.store_table(chain, DAY, timedelta(minutes=10), NOW)}
    assert rows["sh-001"]["visits"] == 2 and rows["sh-001"]["reentries"] == 1
    assert rows["sh-001"]["member_visits"] == 1
    assert (rows["sh-001"]["state"], rows["sh-001"]["silent"]) == ("online", False)
    assert rows["sh-001"]["cameras"] == {"door-1": "streaming"} and rows["sh-001"]["storage"] == "ok"
    assert (rows["sh-002"]["state"], rows["sh-002"]["silent"]) == ("stopped", True)
    assert rows["sh-002"]["unidentified"] == 1
    assert (rows["sh-001"]["exits"], rows["sh-002"]["exits"]) == (2, 0)  # sh-002 sent no counts
    assert datetime.fromisoformat(rows["sh-002"]["last_seen"]) == NOW - timedelta(hours=1)
    json.dumps(list(rows.values()))


def test_store_hourly_is_24_local_hours(chain):
    hours = read.store_hourly(chain, "sh-001", DAY)
    assert len(hours) == 24 and hours[10] == 1 and hours[11] == 1 and sum(hours) == 2


def test_conversion_by_channel_counts_a_late_arrival_as_arrived(chain):
    assert read.conversion_by_channel(chain, DAY, DAY) == [
        {"channel": "wechat", "booked": 2, "arrived": 1, "no_show": 1, "cancelled": 0, "conversion": 0.5},
        {"channel": "phone", "booked": 1, "arrived": 1, "no_show": 0, "cancelled": 0, "conversion": 1.0},
    ]


def cancel(store: str, appointment_id: str) -> tuple[str, bytes]:
    return f"footfall/{store}/appointments/delete", json.dumps({"appointment_id": appointment_id}).encode()


def test_a_booking_the_crm_cancelled_leaves_conversion_unless_the_store_already_acted_on_it(hq_db):
    """The CRM's appointments/delete is heard at head office: a booking cancelled before anything
    happened is counted apart, not as booked; one the member came for, or whose no-show was raised,
    stays; a new upsert books it again, the box's late word of the old booking does not."""
    zones = Zones({"sh-001": "Asia/Shanghai"}, {})
    slot = "2026-11-23T16:00:00.000+08:00"
    ingest(hq_db, [appointment("sh-001", a, "wechat", slot) for a in ("quiet", "came", "missed", "rebooked")],
           zones=zones, now=NOW)
    ingest(hq_db, [
        message("sh-001", "alerts/appointment", "2026-11-23T15:55:00.000+08:00", appointment_id="came",
                member_id="m-came", scheduled_at=slot, channel="wechat", advisor="Li", minutes_early=5),
        message("sh-001", "alerts/no_show", "2026-11-23T16:30:00.000+08:00", appointment_id="missed",
                member_id="m-missed", scheduled_at=slot, grace_minutes=30),
    ], zones=zones, now=NOW + timedelta(minutes=1))
    cancelled = [cancel("sh-001", a) for a in ("quiet", "came", "missed", "rebooked", "never-heard-of")]
    assert ingest(hq_db, cancelled, zones=zones, now=NOW + timedelta(minutes=2)).rejected == 0
    ingest(hq_db, cancelled, zones=zones, now=NOW + timedelta(minutes=2))  # a replay changes nothing
    ingest(hq_db, [
        appointment("sh-001", "rebooked", "wechat", slot),
        # the box's outbox delivers, late, its word of the booking it held before the cancellation
        message("sh-001", "appointments/booked", "2026-11-23T20:05:00.000+08:00", appointment_id="quiet",
                member_id="m-quiet", scheduled_at=slot, channel="wechat"),
    ], zones=zones, now=NOW + timedelta(minutes=3))
    with psycopg.connect(hq_db) as conn:
        assert read.conversion_by_channel(conn, DAY, DAY) == [
            {"channel": "wechat", "booked": 3, "arrived": 1, "no_show": 1, "cancelled": 1, "conversion": 1 / 3}]
        assert conn.execute("SELECT count(*) FROM cancellations").fetchone() == (5,)


def test_within_one_batch_the_crms_last_word_on_a_booking_decides(hq_db):
    """Messages of one batch share the HQ clock: their order tells a cancellation from a re-booking."""
    slot = "2026-11-23T16:00:00.000+08:00"
    ingest(hq_db, [appointment("sh-001", "then-cancelled", "phone", slot), cancel("sh-001", "then-cancelled"),
                   cancel("sh-001", "then-booked"), appointment("sh-001", "then-booked", "phone", slot)],
           zones=Zones({"sh-001": "Asia/Shanghai"}, {}))
    with psycopg.connect(hq_db) as conn:
        assert [(r["booked"], r["cancelled"]) for r in read.conversion_by_channel(conn, DAY, DAY)] == [(1, 1)]
        assert conn.execute("SELECT appointment_id FROM cancellations").fetchall() == [("then-cancelled",)]


def test_a_cancellation_without_an_appointment_id_is_kept_as_an_ingest_error(hq_db):
    written = ingest(hq_db, [("footfall/sh-001/appointments/delete", b'{"appointment_id": ""}'),
                             ("footfall/sh-001/appointments/delete", b'{"member_id": "m-1"}')])
    assert written.rejected == 2
    with psycopg.connect(hq_db) as conn:
        assert conn.execute("SELECT count(*) FROM cancellations").fetchone() == (0,)
        reasons = [r for (r,) in conn.execute("SELECT reason FROM ingest_errors ORDER BY reason")]
    assert reasons == ["appointment_id is required", "appointment_id must not be empty"]


def test_no_show_list_names_whom_to_follow_up_with_the_booking_channel(chain):
    rows = read.no_show_list(chain, DAY, DAY)
    assert [(r["store_id"], r["appointment_id"], r["member_id"], r["channel"], r["grace_minutes"]) for r in rows] == [
        ("sh-001", "a2", "m-a2", "wechat", 30.0)]
    assert datetime.fromisoformat(rows[0]["scheduled_at"]) == datetime.fromisoformat("2026-11-23T14:00:00+08:00")
    assert rows[0]["scheduled_at"].startswith("2026-11-23T14:00:00"), "in the store's time, as booked"


def test_response_times_measure_alert_to_first_ack(chain):
    (row,) = read.response_times(chain, DAY, DAY)
    assert (row["store_id"], row["alerts"], row["acked"]) == ("sh-001", 3, 2)
    assert row["p50_s"] == pytest.approx(20.0) and row["p95_s"] == pytest.approx(29.0)


def test_disagreements_show_the_latest_check_only(chain):
    with chain.cursor() as cur:
        cur.execute("INSERT INTO reconcile_checks (store_id, store_day, checked_at, answered, differences) "
                    "VALUES ('sh-001', %s, %s, true, 1) RETURNING id", (DAY, NOW - timedelta(hours=2)))
        old = cur.fetchone()[0]
        cur.execute("INSERT INTO reconcile_differences VALUES (%s, 10, 1, 2, 0, 0)", (old,))
        cur.execute("INSERT INTO reconcile_checks (store_id, store_day, checked_at, answered, differences) "
                    "VALUES ('sh-001', %s, %s, true, 1) RETURNING id", (DAY, NOW))
        new = cur.fetchone()[0]
        cur.execute("INSERT INTO reconcile_differences VALUES (%s, 11, 1, 3, 0, 0)", (new,))
        cur.execute("INSERT INTO reconcile_checks (store_id, store_day, checked_at, answered, reason) "
                    "VALUES ('sh-002', %s, %s, false, 'no answer')", (DAY, NOW))
    rows = read.disagreements(chain, DAY, DAY)
    assert [(r["store_id"], r["day"], r["hour"], r["hq_visits"], r["store_visits"], r["reason"]) for r in rows] == [
        ("sh-001", "2026-11-23", 11, 1, 3, "differs"), ("sh-002", "2026-11-23", None, None, None, "no answer")]


def test_counts_group_by_store_day_and_hour(chain):
    assert [(r["store_id"], r["visits"]) for r in read.counts(chain, DAY, DAY, "store")] == [("sh-001", 2), ("sh-002", 1)]
    assert [(r["day"], r["visits"]) for r in read.counts(chain, date(2026, 11, 22), DAY, "day")] == [
        ("2026-11-22", 1), ("2026-11-23", 3)]
    assert [(r["hour"], r["visits"], r["reentries"]) for r in read.counts(chain, DAY, DAY, "hour", "sh-001")] == [
        (10, 1, 1), (11, 1, 0)]
    with pytest.raises(ValueError, match="by must be"):
        read.counts(chain, DAY, DAY, "week")


def test_hq_counts_command_prints_counts_and_flags_silent_boxes(chain, hq_db, tmp_path, capsys):
    from footfall.cli.main import main

    with chain.cursor() as cur:
        cur.execute("UPDATE stores SET last_seen = now() - interval '1 hour' WHERE store_id = 'sh-002'")
    chain.commit()
    config = tmp_path / "hq.toml"
    config.write_text(f'silent_after = "10m"\n[database]\nurl = "{hq_db}"\n')
    assert main(["hq", "counts", "--config", str(config), "--from", "2026-11-23", "--by", "store", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["store_id"], r["visits"]) for r in out["counts"]] == [("sh-001", 2), ("sh-002", 1)]
    assert {f["store_id"]: f["silent"] for f in out["fleet"]} == {"sh-001": False, "sh-002": True}
    assert main(["hq", "counts", "--config", str(config), "--from", "2026-11-23", "--by", "hour"]) == 0
    text = capsys.readouterr().out
    assert "SILENT" in text and "1 silent" in text


def test_hq_commands_name_an_unreachable_database(tmp_path, capsys):
    from footfall.cli.main import main

    config = tmp_path / "hq.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"\n')
    assert main(["hq", "counts", "--config", str(config)]) == 1
    assert "HQ database is not reachable (database.url)" in capsys.readouterr().err


def test_hq_counts_without_a_day_counts_each_stores_today_in_its_own_zone(hq_db, tmp_path, capsys):
    """25 hours apart, Kiritimati's and Pago Pago's dates always differ, and one of them always
    differs from the UTC date: HQ's own date would miss a store's day."""
    from zoneinfo import ZoneInfo

    from footfall.cli.main import main

    now = datetime.now(UTC)
    stores = {"ki-001": "Pacific/Kiritimati", "pp-001": "Pacific/Pago_Pago"}
    messages = []
    for store, zone in stores.items():
        here = now.astimezone(ZoneInfo(zone)) - timedelta(minutes=1)
        messages += [visit(store, here.isoformat(timespec="milliseconds")),  # today, there
                     visit(store, (here - timedelta(days=1)).isoformat(timespec="milliseconds"))]  # yesterday
    assert ingest(hq_db, messages, zones=Zones(stores, {}), now=now).rejected == 0
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "{hq_db}"\n')  # the zones are those recorded in `stores`
    assert main(["hq", "counts", "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["store_id"], r["visits"]) for r in out["counts"]] == [("ki-001", 1), ("pp-001", 1)]
    days = {store: date.fromisoformat(day) for store, day in out["today"].items()}
    assert days == {store: datetime.now(UTC).astimezone(ZoneInfo(zone)).date() for store, zone in stores.items()}
    assert days["ki-001"] != days["pp-001"]
    assert main(["hq", "counts", "--config", str(config), "--by", "hour", "--store", "pp-001"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"each store's today, in its own time zone: {days['pp-001']}")
    assert f"{days['pp-001']}" in text.splitlines()[2] and "ki-001" not in text
    with psycopg.connect(hq_db) as conn:  # a zone in hq.toml comes first
        assert read.store_days(conn, now, {"pp-001": "UTC"})["pp-001"] == now.date()
