"""What a collector holds, logs and keeps is bounded whatever the stores send, through the real path:
a store -> Mosquitto -> the collector -> PostgreSQL.

The collector announces its Receive Maximum and Maximum Packet Size in CONNECT (the broker then
sends neither more unacknowledged QoS 1 messages nor larger packets); QoS 0 messages, which the
Receive Maximum does not cover, wait within `qos0_buffer_bytes` and the rest are dropped and
counted; rejections are logged at a bounded rate with a count of the rest; `ingest_errors` keeps
at most `ingest_errors_max_rows` rows and nothing older than `ingest_errors_max_age`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.broker import Broker, mosquitto_path, wait_until
from support.hq import recent_visit, scalar
from support.hq_collector import Store, collecting, config_for

from footfall.hq.bounds import BoundedLog
from footfall.hq.collector import Collector, connect_pool

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")


@contextlib.contextmanager
def database_held(url: str) -> Iterator[None]:
    """Every write of the collector waits while this lock is held (as behind a slow database)."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE stores IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "mosquitto", extra_conf="max_queued_messages 100000\nmax_inflight_messages 0\n").start()
    yield b
    b.stop()


# -- what the collector announces in CONNECT -----------------------------------------------------

def first_packet(server: socket.socket) -> bytes:
    """The first MQTT packet a client sends to `server` (its CONNECT), read whole."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(5)
        data = b""
        while True:
            data += conn.recv(4096)
            length, multiplier, i = 0, 1, 1
            while i < len(data) and data[i] & 0x80:
                length += (data[i] & 0x7F) * multiplier
                multiplier *= 128
                i += 1
            if i < len(data):
                length += data[i] * multiplier
                if len(data) >= i + 1 + length:
                    return data[:i + 1 + length]


def connect_properties(packet: bytes) -> Properties:
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 1                                               # past the fixed header
    i += 2 + int.from_bytes(packet[i:i + 2], "big")      # protocol name
    i += 1 + 1 + 2                                       # version, flags, keep alive
    props = Properties(PacketTypes.CONNECT)
    props.unpack(packet[i:])
    return props


@pytest.mark.parametrize("settings, receive_maximum, packet_size", [
    ({}, 1000, 128 * 1024),                                          # twice batch_size; 64 KiB + 64 KiB
    ({"batch_size": 100, "max_message_bytes": 8192}, 200, 8192 + 64 * 1024),
    ({"receive_maximum": 37, "max_packet_bytes": 150_000}, 37, 150_000),
])
def test_the_collector_announces_receive_maximum_and_maximum_packet_size_in_connect(
        hq_db: str, settings: dict[str, Any], receive_maximum: int, packet_size: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    config = config_for(hq_db, f"mqtt://127.0.0.1:{server.getsockname()[1]}", **settings)
    pool = connect_pool(config)
    collector = Collector(config, pool)
    try:
        collector.start()
        props = connect_properties(first_packet(server))
    finally:
        collector.client.loop_stop()
        pool.close()
        server.close()
    assert getattr(props, "ReceiveMaximum") == receive_maximum  # noqa: B009  (set by unpack, unknown to mypy)
    assert getattr(props, "MaximumPacketSize") == packet_size  # noqa: B009


def test_the_broker_never_sends_the_collector_a_message_over_its_packet_size(broker: Broker, hq_db: str) -> None:
    config = config_for(hq_db, broker.url)
    store = Store(broker.port)
    try:
        with collecting(config) as collector:
            store.send("footfall/sh-001/visits", recent_visit("sh-001", profile="x" * 300_000))  # 300 KB
            after = recent_visit("sh-001")
            store.send("footfall/sh-001/visits", after)
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits WHERE event_id = %s", after["event_id"]),
                       10, "the visit sent after the large one")
            time.sleep(0.3)
            assert collector.stats.rejected == 0, "the large message never reached the collector"
        assert scalar(hq_db, "SELECT count(*) FROM ingest_errors") == 0
    finally:
        store.close()


# -- memory while the database holds a batch ------------------------------------------------------

def test_qos0_messages_wait_within_their_buffer_and_the_rest_are_dropped_and_counted(
        broker: Broker, hq_db: str) -> None:
    limit = 256 * 1024
    sent = 2000
    config = config_for(hq_db, broker.url, qos0_buffer_bytes=limit, batch_size=20)
    store = Store(broker.port)
    try:
        with collecting(config) as collector:
            with database_held(hq_db):
                for _ in range(sent):  # about 4.3 KB each, 8.6 MB in all
                    store.send("footfall/sh-001/visits", recent_visit("sh-001", profile="x" * 4000), qos=0)
                wait_until(lambda: collector.stats.received + collector.qos0.dropped == sent, 30,
                           "every QoS 0 message delivered or dropped")
                held_peak, kept, dropped = collector.qos0.peak, collector.stats.received, collector.qos0.dropped
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") == kept, 30, "every kept visit stored")
        print(f"QoS 0: {sent} sent, {kept} kept, {dropped} dropped, peak buffered {held_peak} bytes")
        assert held_peak <= limit
        assert dropped > 0 and kept + dropped == sent
        assert kept * 4300 < 2 * limit + 20 * 4400, "no more than the buffer and the batch in hand were kept"
    finally:
        store.close()


def test_qos1_messages_unacknowledged_at_once_stay_within_the_receive_maximum(broker: Broker, hq_db: str) -> None:
    config = config_for(hq_db, broker.url, receive_maximum=20, batch_size=10)
    store = Store(broker.port)
    try:
        with collecting(config) as collector:
            with database_held(hq_db):
                def send_all() -> None:
                    for _ in range(300):
                        store.send("footfall/sh-001/visits", recent_visit("sh-001"))

                sender = threading.Thread(target=send_all)
                sender.start()
                time.sleep(2.0)
                received_while_held = collector.stats.received
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") == 300, 30, "all 300 visits")
            sender.join(30)
        assert 0 < received_while_held <= 20
    finally:
        store.close()


# -- the log and the table -------------------------------------------------------------------------

def test_rejections_are_logged_at_a_bounded_rate_and_the_rest_counted(
        broker: Broker, hq_db: str, caplog: pytest.LogCaptureFixture) -> None:
    config = config_for(hq_db, broker.url, rejections_logged_per_minute=5)
    store = Store(broker.port)
    caplog.set_level(logging.WARNING, logger="footfall.hq.collector")
    try:
        with collecting(config):
            for _ in range(200):
                store.send("footfall/sh-001/visits", b"{not json")
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM ingest_errors") == 200, 20, "200 ingest errors")
    finally:
        store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "footfall.hq.collector"]
    assert len([line for line in lines if line.startswith("rejected ")]) == 5
    assert "195 more rejected message(s) not logged one by one (each is in ingest_errors)" in lines


def test_the_bounded_log_sums_up_each_minute_once_it_is_over() -> None:
    now = [0.0]
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.bounded")
    logger.addHandler(Capture())
    logger.propagate = False
    bounded = BoundedLog(logger, 2, "%d more not logged", clock=lambda: now[0])
    for i in range(10):
        bounded.warning("line %d", i)
    bounded.tick()
    assert records == ["line 0", "line 1"]
    now[0] = 60.0
    bounded.tick()
    assert records == ["line 0", "line 1", "8 more not logged"]
    bounded.warning("line %d", 10)
    assert records[-1] == "line 10" and bounded.suppressed_total == 8


def test_ingest_errors_keep_the_newest_rows_and_nothing_older_than_their_age(broker: Broker, hq_db: str) -> None:
    with psycopg.connect(hq_db) as conn:
        conn.execute("INSERT INTO ingest_errors (received_at, topic, reason, payload_bytes, payload_excerpt) "
                     "SELECT now() - interval '40 days', 'footfall/old/visits', 'old', 1, 'old' "
                     "FROM generate_series(1, 30)")
    config = config_for(hq_db, broker.url, ingest_errors_max_rows=100, ingest_errors_max_age="720h")
    store = Store(broker.port)
    markers = [f"flood-{i:04d}-{uuid.uuid4().hex[:8]}" for i in range(1000)]
    try:
        with collecting(config) as collector:
            started = time.monotonic()
            for marker in markers:
                store.send("footfall/sh-001/visits", json.dumps({"event_id": marker}).encode())
            wait_until(lambda: collector.stats.rejected == len(markers), 30, "every flood message rejected")
            flood_s = time.monotonic() - started
            kept = scalar(hq_db, "SELECT count(*) FROM ingest_errors")
        print(f"ingest_errors: {len(markers)} rejected in {flood_s:.1f} s, {kept} rows kept")
        assert kept <= 100
        assert scalar(hq_db, "SELECT count(*) FROM ingest_errors WHERE received_at < now() - interval '30 days'") == 0
        newest = scalar(hq_db, "SELECT payload_excerpt FROM ingest_errors ORDER BY id DESC LIMIT 1")
        assert markers[-1] in newest
        assert scalar(hq_db, "SELECT count(*) FROM ingest_errors WHERE strpos(payload_excerpt, %s) > 0",
                      markers[0]) == 0
    finally:
        store.close()
