"""A store's bookings, no-shows and status reach head office through the real path: appointments
imported on the box (`footfall appointments import`), a store daemon on Mosquitto, the collector,
PostgreSQL. Head office is away while the no-show is raised and for longer than an alert lives;
it still gets every booking and the no-show when it comes back, so conversion counts them all."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from support.broker import Broker, Subscriber, mosquitto_path, wait_until
from support.hq import scalar
from support.hq_collector import collecting, config_for

from footfall.cli.main import main
from footfall.config.schema import load_config
from footfall.edge.daemon import Daemon
from footfall.hq import read

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")

BERLIN = ZoneInfo("Europe/Berlin")  # a zone with daylight saving: a fixed offset would be wrong half the year


def test_bookings_made_on_the_box_and_a_no_show_raised_while_hq_was_away_reach_hq(
        tmp_path, hq_db, default_analyzer):
    broker = Broker(tmp_path / "mosquitto", extra_conf="max_queued_messages 100000\n").start()
    hq = config_for(hq_db, broker.url, client_id="hq-bookings")
    watch = Subscriber(broker.port, "footfall/sh-001/#")
    daemon = None
    try:
        with collecting(hq):
            pass  # head office has its session at the broker, then goes away (an upgrade, a restart)

        store = tmp_path / "store.toml"
        store.write_text(f'store_id = "sh-001"\ntimezone = "Europe/Berlin"\n[mqtt]\nurl = "{broker.url}"\n'
                         f'[storage]\ndir = "{tmp_path / "state"}"\n[alerts]\nttl = "1s"\n'
                         f'[appointments]\nno_show_grace = "15m"\n')
        now = datetime.now(UTC)
        bookings = tmp_path / "appointments.jsonl"
        bookings.write_text("".join(json.dumps(line) + "\n" for line in (
            {"appointment_id": "a-missed", "member_id": "m-1", "scheduled_at": (now - timedelta(hours=2)).isoformat(),
             "channel": "wechat", "advisor": "Li Na"},
            {"appointment_id": "a-later", "member_id": "m-2", "scheduled_at": (now + timedelta(hours=2)).isoformat(),
             "channel": "phone", "advisor": "Zhao Lei"})))
        assert main(["appointments", "import", "--config", str(store), str(bookings)]) == 0  # no daemon runs yet

        daemon = Daemon(load_config(store), analyzer=default_analyzer)
        threading.Thread(target=daemon.run, daemon=True).start()
        watch.wait_for(lambda ms: any(m.topic.endswith("alerts/no_show") for m in ms), 30, "the no-show published")
        booked = [m.payload for m in watch.messages if m.topic.endswith("/appointments/booked")]
        assert sorted(b["appointment_id"] for b in booked) == ["a-later", "a-missed"]
        assert all(set(b) == {"appointment_id", "member_id", "scheduled_at", "channel", "event_id", "store_id", "ts"}
                   for b in booked), "ids, channel and slot only: no advisor, no name"
        time.sleep(2.5)  # longer than an alert lives (alerts.ttl): an expiring no-show would be gone now
        daemon.stop()
        wait_until(lambda: any(m.topic.endswith("/status") and m.payload.get("state") == "stopped"
                               for m in watch.messages), 30, "the box stopped")
        assert (scalar(hq_db, "SELECT count(*) FROM no_shows") or 0) == 0, "head office was away"

        with collecting(hq):  # back: what the broker kept for its session arrives
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM no_shows") == 1
                       and scalar(hq_db, "SELECT count(*) FROM appointments") == 2
                       and scalar(hq_db, "SELECT state FROM store_status") == "stopped", 30,
                       "the bookings, the no-show and the last status at head office")
        with psycopg.connect(hq_db) as conn:
            today = now.astimezone(BERLIN).date()
            by_channel = {r["channel"]: r for r in read.conversion_by_channel(conn, today - timedelta(days=1),
                                                                               today + timedelta(days=1))}
            assert {c: (r["booked"], r["arrived"], r["no_show"]) for c, r in by_channel.items()} == {
                "wechat": (1, 0, 1), "phone": (1, 0, 0)}, "every booking counts, not only the no-show"
            assert conn.execute("SELECT appointment_id, member_id, channel, advisor FROM appointments "
                                "ORDER BY appointment_id").fetchall() == [
                ("a-later", "m-2", "phone", None), ("a-missed", "m-1", "wechat", None)]
            # the box's status told head office its zone, its outbox backlog and its dead letters
            assert conn.execute("SELECT timezone, tz_source FROM stores").fetchone() == ("Europe/Berlin", "status")
            assert conn.execute("SELECT outbox_backlog, dead_letters FROM store_status").fetchone() == (0, 0)
            (day,) = conn.execute("SELECT store_day FROM no_shows").fetchone()
            assert day == (now - timedelta(hours=2)).astimezone(BERLIN).date()
    finally:
        if daemon is not None:
            daemon.stop()
        watch.close()
        broker.stop()
