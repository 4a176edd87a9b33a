"""The collector through the real path: a store-like publisher -> Mosquitto (MQTT 5 shared
subscriptions, persistent session) -> `footfall hq collect` -> PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest
from support.broker import mosquitto_path, wait_until
from support.hq import scalar
from support.hq_collector import Store, collecting, fixed_day_settings

from footfall.config.hq import parse_hq_config
from footfall.hq import read
from footfall.hq.collector import shared_filters
from footfall.tooling.processes import end_process

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")


def write_toml(path: Path, data: dict) -> Path:
    lines = []
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def send_day_visits(store: Store, store_id: str, n: int, hour: int = 10) -> list[str]:
    """Send `n` visits of the fixed store day at `hour`, one a minute; their event ids."""
    ids = []
    for i in range(n):
        event_id = str(uuid.uuid4())
        ts = f"2026-11-23T{hour:02d}:{i % 60:02d}:00.000+08:00"
        store.send(f"footfall/{store_id}/visits", {
            "event_id": event_id, "store_id": store_id, "ts": ts, "kind": "visit", "visitor_id": f"v{i}",
            "member_id": None, "role": "visitor", "camera_id": "door-1", "first_seen_ts": ts, "identified": True})
        ids.append(event_id)
    return ids


def test_the_collector_subscribes_to_every_uplink_topic_through_its_group():
    filters = shared_filters("hq", "footfall")
    assert "$share/hq/footfall/+/visits" in filters
    for name in ("alerts/arrival", "alerts/appointment", "alerts/no_show", "alerts/ack", "status", "counts",
                 "appointments/upsert", "appointments/delete"):
        assert f"$share/hq/footfall/+/{name}" in filters


def test_collector_stores_good_messages_keeps_bad_ones_as_errors_and_acknowledges_all(hq_broker, hq_db):
    config = parse_hq_config(fixed_day_settings(hq_db, hq_broker.url, client_id="hq-test-1"))
    store = Store(hq_broker.port, max_inflight=200)
    try:
        with collecting(config):
            ids = send_day_visits(store, "sh-001", 300)
            store.send("footfall/sh-001/visits", b"{not json")
            store.send("footfall/sh-001/visits", {"event_id": "e1", "store_id": "sh-001", "kind": "teleport",
                                                  "ts": "2026-11-23T10:00:00.000+08:00"})
            store.send("footfall/sh-001/visits", {"event_id": "e2", "store_id": "sh-002",
                                                  "ts": "2026-11-23T10:00:00.000+08:00"})
            store.send("footfall/sh-001/visits", b"{" + b" " * 70_000 + b"}")
            more = send_day_visits(store, "sh-001", 10, hour=11)  # after the bad ones: the collector is still working
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") == 310, 10, "310 visits in PostgreSQL")
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM ingest_errors") == 4, 5, "4 ingest errors")
            assert scalar(hq_db, "SELECT sum(visits) FROM hourly") == 310
            assert scalar(hq_db, "SELECT count(DISTINCT event_id) FROM visits") == len(set(ids + more))
        # Everything was acknowledged: the same session, back, is given nothing again.
        with collecting(config) as again:
            time.sleep(1.0)
            assert again.stats.inserted + again.stats.duplicates + again.stats.rejected == 0
            send_day_visits(store, "sh-001", 1, hour=12)
            wait_until(lambda: again.stats.inserted == 1, 5, "the next message")
    finally:
        store.close()


def test_a_booking_the_crm_cancels_on_the_broker_leaves_conversion_at_head_office(hq_broker, hq_db):
    """The CRM's downlink to a store (appointments/upsert, then appointments/delete) reaches the
    collector through Mosquitto as it reaches the box, and the cancelled booking leaves *booked*."""
    config = parse_hq_config(fixed_day_settings(hq_db, hq_broker.url, client_id="hq-cancel"))
    crm = Store(hq_broker.port)
    try:
        with collecting(config):
            for appointment_id in ("a-kept", "a-cancelled"):
                crm.send("footfall/sh-001/appointments/upsert", {
                    "appointment_id": appointment_id, "member_id": "m-1", "channel": "wechat", "advisor": "Li",
                    "scheduled_at": "2026-11-23T16:00:00.000+08:00"})
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM appointments") == 2, 10, "both bookings")
            crm.send("footfall/sh-001/appointments/delete", {"appointment_id": "a-cancelled"})
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM cancellations") == 1, 10, "the cancellation")
        with psycopg.connect(hq_db) as conn:
            day = date(2026, 11, 23)
            assert [(r["booked"], r["cancelled"]) for r in read.conversion_by_channel(conn, day, day)] == [(1, 1)]
    finally:
        crm.close()


def wait_subscribed(store: Store, db_url: str, timeout: float = 30) -> None:
    """Probe until a collector stores a message (a status from another store): its session is subscribed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.send("footfall/probe/status", {"event_id": str(uuid.uuid4()), "store_id": "probe", "state": "online",
                                             "ts": "2026-11-23T09:00:00.000+08:00", "version": "t", "cameras": {}})
        try:
            if scalar(db_url, "SELECT count(*) FROM store_status WHERE store_id = 'probe'"):
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.3)
    raise AssertionError("no collector subscribed")


def collect_process(config_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "footfall", "hq", "collect", "--config", str(config_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_collector_killed_mid_stream_loses_nothing_and_counts_nothing_twice(hq_broker, hq_db, tmp_path):
    config_path = write_toml(tmp_path / "hq.toml",
                             fixed_day_settings(hq_db, hq_broker.url, client_id="hq-kill", batch_size=100))
    proc = collect_process(config_path)
    store = Store(hq_broker.port, max_inflight=200)
    try:
        wait_subscribed(store, hq_db)
        total = 4000
        sender = threading.Thread(target=send_day_visits, args=(store, "sh-001", total))
        sender.start()
        wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") >= 300, 30, "the first batches")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at_kill = scalar(hq_db, "SELECT count(*) FROM visits")
        sender.join(60)
        assert at_kill < total, "the collector was killed too late to test anything"
        proc = collect_process(config_path)
        wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") == total, 60,
                   f"all {total} visits after the restart")
        time.sleep(0.5)
        assert scalar(hq_db, "SELECT count(*) FROM visits") == total
        assert scalar(hq_db, "SELECT sum(visits) FROM hourly") == total
    finally:
        end_process(proc, 10)
        store.close()
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""


@pytest.mark.slow
def test_bench_hq_reports_zero_lost_and_duplicated_with_a_collector_killed(tmp_path):
    from footfall.benchmarks.hq import bench_hq
    from footfall.tooling.local_postgres import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    result = bench_hq(stores=40, visits=40, progress=False)
    assert {"events", "events_per_s", "latency_ms_p50", "latency_ms_p99", "lost", "duplicated",
            "one_collector", "two_collectors", "bottleneck"} <= result.keys()
    assert result["events"] > 0 and result["lost"] == 0 and result["duplicated"] == 0
    assert result["two_collectors"]["killed_collector_at_rows"] is not None
