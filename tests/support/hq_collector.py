"""What the tests of head office's collector share: its settings for a test, a store-like publisher,
the collector on a thread of its own or as a process, and a broker that keeps what arrives while
it is away.

The `hq_broker` fixture is registered through the `pytest_plugins` of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from footfall.config.hq import HqConfig, parse_hq_config
from footfall.hq.collector import Collector, connect_pool
from support.broker import Broker, free_port
from support.hq import recent_visit


@pytest.fixture
def hq_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto that queues up to a million messages for a collector's session while it is away."""
    # Mosquitto keeps only 1000 messages per session by default, which a production broker must be sized beyond.
    broker = Broker(tmp_path / "mosquitto", extra_conf="max_queued_messages 1000000\n").start()
    yield broker
    broker.stop()


def hq_settings(db_url: str, broker_url: str, **collector: Any) -> dict[str, Any]:
    """Head office's settings on this database and broker: quick batches, no reconciliation, no broker user."""
    return {"database": {"url": db_url}, "mqtt": {"url": broker_url, "username": None},
            "collector": {"batch_interval": "0.05s", "reconcile": False, **collector}}


def config_for(db_url: str, broker_url: str, **collector: Any) -> HqConfig:
    """The parsed `hq_settings`."""
    return parse_hq_config(hq_settings(db_url, broker_url, **collector))


def fixed_day_settings(db_url: str, broker_url: str, **collector: Any) -> dict[str, Any]:
    """`hq_settings` for events of the tests' fixed store day (2026-11-23) at sh-001, in Shanghai."""
    # max_past at its largest: the fixed day stays inside the window of accepted times.
    settings = hq_settings(db_url, broker_url, max_past="87840h", **collector)
    settings["timezones"] = {"sh-001": "Asia/Shanghai"}
    return settings


class Store:
    """Publishes like a store box: MQTT 5, JSON bodies, QoS 1 unless asked otherwise."""

    def __init__(self, port: int, *, max_inflight: int = 100) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"store-{free_port()}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: dict[str, Any] | bytes, qos: int = 1) -> None:
        """Publish one message; at QoS 1 and 2, return once the broker has it."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, body, qos=qos)
        if qos:
            info.wait_for_publish(10)

    def visits(self, store: str, n: int) -> list[str]:
        """Send `n` visits of `store` stamped an hour ago; their event ids."""
        ids = [str(uuid.uuid4()) for _ in range(n)]
        for event_id in ids:
            self.send(f"footfall/{store}/visits", recent_visit(store, event_id))
        return ids

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def collecting(config: HqConfig, connect_timeout: float = 5) -> Iterator[Collector]:
    """A collector on its own thread, connected and subscribed; stopped (and its pool closed) at the end."""
    pool = connect_pool(config)
    collector = Collector(config, pool)
    thread = threading.Thread(target=collector.run)
    thread.start()
    try:
        assert collector.wait_connected(connect_timeout)
        time.sleep(0.3)  # the SUBACK
        yield collector
    finally:
        collector.stop()
        thread.join(15)
        pool.close()


def start_collector(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`footfall hq collect --config <config>` as a process of its own, writing unbuffered into `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "footfall", "hq", "collect", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
