"""Erasure at head office: a store's `members/deleted` takes the member's id out of every table of
the chain at once, the counts stay, and a day replayed later cannot bring the id back. Real
PostgreSQL (a throw-away cluster); one case through a real Mosquitto and the collector."""

from __future__ import annotations

from datetime import date

import psycopg
from support.broker import wait_until
from support.hq import ERASED_AT, ingest, member_day, message, query, scalar, visit
from support.hq_collector import Store, collecting, fixed_day_settings

from footfall.config.hq import parse_hq_config
from footfall.hq.read import no_show_list

MEMBER, OTHER = "m-7", "m-8"


def holding(url: str, needle: str) -> dict[str, int]:
    """Every table with a row whose text holds `needle`, and how many rows."""
    tables = [t for (t,) in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    found = {t: query(url, f"SELECT count(*) FROM {t} x WHERE strpos(row_to_json(x)::text, %s) > 0", needle)[0][0]
             for t in tables}
    return {t: n for t, n in found.items() if n}


def hourly(url: str) -> list[tuple]:
    return query(url, "SELECT store_hour, visits, reentries, member_visits FROM hourly ORDER BY store_hour")


def test_an_erasure_removes_the_member_id_from_every_table_and_keeps_the_counts(hq_db):
    ingest(hq_db, member_day(MEMBER) + member_day(OTHER, "sh-002"))
    assert set(holding(hq_db, MEMBER)) == {"visits", "alerts", "no_shows", "appointments", "ingest_errors"}
    counts = hourly(hq_db)
    written = ingest(hq_db, [message("sh-001", "members/deleted", ts=ERASED_AT, member_id=MEMBER, removed=True)])
    assert written.inserted == 1
    assert holding(hq_db, MEMBER) == {}, "no trace of the id in any table, the tombstone included"
    assert hourly(hq_db) == counts, "the counts stay"
    assert query(hq_db, "SELECT count(*) FROM visits WHERE role = 'member'") == [(4,)]
    assert query(hq_db, "SELECT count(*) FROM alerts") == [(4,)]
    assert set(holding(hq_db, OTHER)) == {"visits", "alerts", "no_shows", "appointments", "ingest_errors"}
    with psycopg.connect(hq_db) as conn:
        followed = [r["member_id"] for r in no_show_list(conn, date(2026, 11, 23), date(2026, 11, 23))]
    assert followed == [OTHER], "an erased member's no-show is not followed up"


def test_a_day_replayed_after_the_erasure_does_not_bring_the_id_back_but_a_new_consent_does(hq_db):
    ingest(hq_db, [message("sh-001", "members/deleted", ts=ERASED_AT, member_id=MEMBER, removed=True),
                   message("sh-002", "members/deleted", ts="2026-11-23T15:00:01.000+08:00", member_id=MEMBER,
                           removed=True)])
    replayed = ingest(hq_db, member_day(MEMBER)[:5])   # a box back online sends the morning late
    assert replayed.inserted == 5
    assert holding(hq_db, MEMBER) == {}
    assert query(hq_db, "SELECT sum(visits), sum(reentries), sum(member_visits) FROM hourly") == [(1, 1, 1)]
    # Enrolled again with a new consent: their visits after the erasure name them.
    ingest(hq_db, [visit("sh-001", "2026-11-23T16:00:00.000+08:00", member=MEMBER, visitor_id=MEMBER)])
    assert holding(hq_db, MEMBER) == {"visits": 1}


def test_a_booking_the_box_sent_before_the_erasure_that_arrives_after_it_loses_the_id(hq_db):
    ingest(hq_db, [message("sh-001", "members/deleted", ts=ERASED_AT, member_id=MEMBER, removed=True)])

    def booked(appointment: str, ts: str) -> tuple[str, bytes]:
        return message("sh-001", "appointments/booked", ts=ts, appointment_id=appointment, member_id=MEMBER,
                       scheduled_at="2026-11-24T10:00:00.000+08:00", channel="wechat")

    ingest(hq_db, [booked("a-before", "2026-11-23T09:00:00.000+08:00"),   # in flight when the member was erased
                   booked("a-after", "2026-11-23T16:00:00.000+08:00")])   # booked again after a new consent
    assert query(hq_db, "SELECT appointment_id, member_id FROM appointments ORDER BY appointment_id") == [
        ("a-after", MEMBER), ("a-before", None)]


def test_the_collector_applies_a_members_deleted_from_the_broker(hq_broker, hq_db):
    config = parse_hq_config(fixed_day_settings(hq_db, hq_broker.url, client_id="hq-erasure-1"))
    store = Store(hq_broker.port, max_inflight=200)
    try:
        with collecting(config):
            for topic, payload in member_day(MEMBER)[:5]:
                store.send(topic, payload)
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") == 2, 10, "the member's visits")
            topic, payload = message("sh-001", "members/deleted", ts=ERASED_AT, member_id=MEMBER, removed=True)
            store.send(topic, payload)
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM erasures") == 1, 10, "the erasure")
        assert holding(hq_db, MEMBER) == {}
    finally:
        store.close()
