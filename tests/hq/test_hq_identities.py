"""Each head-office program has a broker user (and so a client id) of its own, on a broker set up as
documented: config/mosquitto-footfall.conf.example (`use_username_as_clientid true`) and
config/mosquitto-acl.example.

With one user shared, reconciliation took the collector's client id with a clean start: the
broker dropped the collector's session and the messages it had not acknowledged, and visits the
stores had delivered were lost. Here a `footfall hq collect` process reconciles every second
while `footfall hq reconcile` runs beside it and a store publishes: every visit is stored.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, Subscriber, mosquitto_passwd_path, mosquitto_path, wait_until
from support.broker_settings import publish_as, shipped_acl, shipped_settings
from support.hq import scalar
from support.hq_collector import start_collector

from footfall.cli.main import main
from footfall.config.hq import parse_hq_config
from footfall.hq.collector import UPLINK
from footfall.tooling.processes import end_process

pytestmark = pytest.mark.skipif(mosquitto_path() is None or mosquitto_passwd_path() is None,
                                reason="mosquitto and mosquitto_passwd are not installed")

HQ_PASSWORD = "pw-hq"  # every head-office user has it, so that only the user names differ between them
USERS = {"sh-001": "pw-store", "hq-collector": HQ_PASSWORD, "hq-reconcile": HQ_PASSWORD, "hq": HQ_PASSWORD}
VISITS = 3000        # sent in 30 bursts over about 6 s, while reconciliation runs again and again
publish = functools.partial(publish_as, USERS)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The documented mosquitto settings (without the listener and file paths of a real host) and the shipped ACL."""
    b = Broker(tmp_path / "mosquitto", users=USERS, extra_conf=shipped_acl(tmp_path) + shipped_settings()).start()
    yield b
    b.stop()


def test_each_head_office_program_has_a_broker_user_of_its_own_by_default() -> None:
    config = parse_hq_config({})
    assert config.mqtt.username == "hq-collector"
    assert config.reconcile.mqtt_username == "hq-reconcile"
    assert config.reconcile.mqtt_username != config.mqtt.username


class Box:
    """Store sh-001 on its own broker user: publishes visits, and records the counts/get it is sent."""

    def __init__(self, port: int) -> None:
        self.requests: list[bytes] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="sh-001", protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set("sh-001", USERS["sh-001"])
        self.client.max_inflight_messages_set(50)
        self.client.on_message = lambda c, u, m: self.requests.append(bytes(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("footfall/sh-001/counts/get", qos=1)
        self.client.loop_start()

    def visits(self, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            ts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat(timespec="milliseconds")
            ids.append(str(uuid.uuid4()))
            body = {"event_id": ids[-1], "store_id": "sh-001", "ts": ts, "kind": "visit", "visitor_id": "v",
                    "member_id": None, "role": "visitor", "camera_id": "door-1", "first_seen_ts": ts,
                    "identified": True}
            self.client.publish("footfall/sh-001/visits", json.dumps(body), qos=1).wait_for_publish(10)
        return ids

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_reconciliation_beside_a_live_collector_loses_no_visit(
        broker: Broker, hq_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "{hq_db}"\n[mqtt]\nurl = "{broker.url}"\n'
                      f'[collector]\nbatch_interval = "0.05s"\nreconcile = true\nreconcile_every = "1s"\n'
                      f'[reconcile]\ntimeout = "0.5s"\n')
    monkeypatch.setenv("FOOTFALL_MQTT_PASSWORD", HQ_PASSWORD)  # the defaults name the users
    collector = start_collector(config, tmp_path / "collector.log")
    box = Box(broker.port)
    stop = threading.Event()
    runs: list[int] = []
    try:
        wait_until(lambda: b"connected to" in (tmp_path / "collector.log").read_bytes(), 30, "the collector")
        time.sleep(0.5)
        probe = box.visits(1)
        wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits"), 20, "the first visit at HQ")

        def reconcile_by_hand() -> None:  # an operator's `footfall hq reconcile`, again and again
            while not stop.is_set():
                runs.append(main(["hq", "reconcile", "--config", str(config), "--store", "sh-001", "--json"]))

        operator = threading.Thread(target=reconcile_by_hand)
        operator.start()
        sent = probe
        for _ in range(30):
            sent += box.visits(VISITS // 30)
            time.sleep(0.15)
        stop.set()
        operator.join(30)
        wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM visits") == len(sent), 30,
                   f"all {len(sent)} visits at HQ")
        time.sleep(1.0)
        stored = scalar(hq_db, "SELECT count(*) FROM visits WHERE event_id = ANY(%s)", sent)
        checks = scalar(hq_db, "SELECT count(*) FROM reconcile_checks")
        print(f"{len(sent)} visits sent, {stored} stored; {len(runs)} reconcile runs by hand, "
              f"{checks} store-day checks recorded, {len(box.requests)} counts/get at the store")
        assert stored == len(sent), f"{len(sent) - stored} visits lost"
        assert len(runs) >= 3 and box.requests, "reconciliation ran, and its requests reached the store through the ACL"
        assert b"broker connection lost" not in (tmp_path / "collector.log").read_bytes(), \
            "nothing took the collector's connection"
    finally:
        stop.set()
        box.close()
        end_process(collector, 10)


def test_the_shipped_acl_lets_the_collector_read_every_topic_it_subscribes_to(broker: Broker) -> None:
    collector = Subscriber(broker.port, "footfall/+/#", username="hq-collector", password=HQ_PASSWORD)
    try:
        for name in UPLINK:
            publish(broker.port, "hq", f"footfall/sh-001/{name}", b'{"probe": 1}')
        collector.wait_for(lambda ms: len(ms) >= len(UPLINK), 5, "every subscribed topic")
        assert sorted(m.topic for m in collector.messages) == sorted(f"footfall/sh-001/{n}" for n in UPLINK)
    finally:
        collector.close()


def test_the_acl_lets_each_head_office_user_do_its_own_job_only(broker: Broker) -> None:
    """Reconciliation cannot read the stores' events; the collector cannot write into a store's downlink."""
    store_downlink = Subscriber(broker.port, "footfall/sh-001/#", username="sh-001", password=USERS["sh-001"])
    try:
        publish(broker.port, "hq-collector", "footfall/sh-001/members/delete", b'{"member_id": "M-1"}')
        publish(broker.port, "hq-collector", "footfall/sh-001/counts/get", b'{"from": "collector"}')
        publish(broker.port, "hq-reconcile", "footfall/sh-001/counts/get", b'{"from": "reconcile"}')  # control
        store_downlink.wait_for(lambda ms: any(m.payload == {"from": "reconcile"} for m in ms), 5,
                                "reconciliation's request at the store")
        time.sleep(0.5)
        assert [m.payload for m in store_downlink.messages] == [{"from": "reconcile"}]
    finally:
        store_downlink.close()
    reconcile_spy = Subscriber(broker.port, "footfall/#", username="hq-reconcile", password=HQ_PASSWORD)
    try:
        publish(broker.port, "hq", "footfall/sh-002/visits", b'{"n": 1}')
        publish(broker.port, "hq", "footfall/sh-002/status", b'{"state": "online"}')
        publish(broker.port, "hq", "footfall/sh-002/replies/hq-x/0", b'{"buckets": []}')  # control: its own
        reconcile_spy.wait_for(lambda ms: len(ms) >= 1, 5, "an answer under replies/")
        time.sleep(0.5)
        assert [m.topic for m in reconcile_spy.messages] == ["footfall/sh-002/replies/hq-x/0"], \
            "reconciliation read what is not its own"
    finally:
        reconcile_spy.close()
