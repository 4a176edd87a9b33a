"""config/mosquitto-acl.example on a real Mosquitto: two stores and head office, each with a password.

A store may publish its own uplink and read its own downlink; it can neither read another store's
topics nor publish into another store's downlink. Every refusal is shown next to a control message
that did arrive, so "nothing arrived" cannot mean "nothing was sent".
"""

from __future__ import annotations

import functools
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, Subscriber, mosquitto_passwd_path, mosquitto_path, wait_until
from support.broker_settings import publish_as, shipped_acl, shipped_settings

pytestmark = pytest.mark.skipif(mosquitto_path() is None or mosquitto_passwd_path() is None,
                                reason="mosquitto and mosquitto_passwd are not installed")

USERS = {"sh-001": "pw-a", "sh-002": "pw-b", "hq": "pw-hq", "sh-001-console": "pw-c"}
publish = functools.partial(publish_as, USERS)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker", users=USERS, extra_conf=shipped_acl(tmp_path)).start()
    yield b
    b.stop()


@pytest.fixture
def bound_broker(tmp_path):
    """The ACL and the shipped settings: every client id is its user name (one connection per user)."""
    b = Broker(tmp_path / "broker", users=USERS, extra_conf=shipped_acl(tmp_path) + shipped_settings()).start()
    yield b
    b.stop()


def test_a_store_cannot_read_another_stores_topics_or_write_into_its_downlink(broker):
    def sub(user: str, topic_filter: str) -> Subscriber:
        return Subscriber(broker.port, topic_filter, username=user, password=USERS[user])

    hq = sub("hq", "footfall/#")
    b_downlink = sub("sh-002", "footfall/sh-002/members/upsert")
    a_spy = sub("sh-001", "footfall/sh-002/#")
    a_everything = sub("sh-001", "footfall/#")
    a_downlink = sub("sh-001", "footfall/sh-001/members/upsert")
    try:
        # Store B's events reach head office, never store A.
        publish(broker.port, "sh-002", "footfall/sh-002/visits", b'{"n": 1}')
        # Head office's downlink for B reaches B, never A.
        publish(broker.port, "hq", "footfall/sh-002/members/upsert", b'{"from": "hq"}')
        # A tries to feed B's downlink, and its own.
        publish(broker.port, "sh-001", "footfall/sh-002/members/upsert", b'{"from": "sh-001"}')
        publish(broker.port, "sh-001", "footfall/sh-001/members/upsert", b'{"from": "sh-001"}')
        # Control: A's own uplink goes through; head office's downlink for A reaches A.
        publish(broker.port, "sh-001", "footfall/sh-001/visits", b'{"n": 2}')
        publish(broker.port, "hq", "footfall/sh-001/members/upsert", b'{"from": "hq"}')

        hq.wait_for(lambda ms: {m.topic for m in ms} >= {"footfall/sh-002/visits", "footfall/sh-001/visits"},
                    5, "both stores' visits at head office")
        b_downlink.wait_for(lambda ms: len(ms) >= 1, 5, "head office's message in B's downlink")
        a_downlink.wait_for(lambda ms: len(ms) >= 1, 5, "head office's message in A's downlink")
        time.sleep(0.5)  # anything the ACL let through would be here by now

        assert a_spy.messages == [], "store A read store B's topics"
        assert [m.topic for m in a_everything.messages if not m.topic.startswith("footfall/sh-001/")] == []
        assert [m.payload for m in b_downlink.messages] == [{"from": "hq"}], "A wrote into B's downlink"
        assert [m.payload for m in a_downlink.messages] == [{"from": "hq"}], "A wrote into its own downlink"
        upserts = [m.payload for m in hq.messages if m.topic.endswith("/members/upsert")]
        assert upserts == [{"from": "hq"}, {"from": "hq"}]
        assert [m.payload for m in a_everything.messages if m.topic == "footfall/sh-001/visits"] == [], \
            "a store reads only its own status among its uplink topics"
    finally:
        for s in (hq, b_downlink, a_spy, a_everything, a_downlink):
            s.close()


def test_a_store_reads_its_own_retained_status_only(broker):
    publish_retained = [("sh-001", "footfall/sh-001/status"), ("sh-002", "footfall/sh-002/status")]
    for user, topic in publish_retained:
        publish(broker.port, user, topic, b'{"state": "online"}', retain=True)
    a = Subscriber(broker.port, "footfall/+/status", username="sh-001", password=USERS["sh-001"])
    hq = Subscriber(broker.port, "footfall/+/status", username="hq", password=USERS["hq"])
    try:
        hq.wait_for(lambda ms: len(ms) >= 2, 5, "both retained statuses at head office")
        a.wait_for(lambda ms: len(ms) >= 1, 5, "store A's own status")
        time.sleep(0.3)
        assert [m.topic for m in a.messages] == ["footfall/sh-001/status"]
    finally:
        a.close()
        hq.close()


def connect(port: int, user: str, client_id: str, *, clean: bool,
            subscribe: str | None = None) -> tuple[paho.Client, list[str], list[bytes]]:
    """A raw MQTT 5 connection; the lists collect the reasons it was disconnected and what it received."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    dropped: list[str] = []
    received: list[bytes] = []
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(user, USERS[user])
    client.on_disconnect = lambda c, u, flags, reason, props: dropped.append(str(reason))
    client.on_message = lambda c, u, message: received.append(bytes(message.payload))
    client.on_subscribe = lambda *a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 3600
    client.connect("127.0.0.1", port, clean_start=clean, properties=props)
    client.loop_start()
    if subscribe:
        client.subscribe(subscribe, qos=1)
        assert subscribed.wait(5), "subscribed"
    return client, dropped, received


def close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


def test_a_stores_credentials_cannot_take_another_stores_client_id(bound_broker):
    """Store A logs in with store B's client id and a clean start: B is not knocked off, and the
    downlink queued for B while it was away (a members/delete) is still delivered to it."""
    port, b_id, downlink = bound_broker.port, "footfall-sh-002", "footfall/sh-002/members/delete"
    box_b, _, _ = connect(port, "sh-002", b_id, clean=False, subscribe=downlink)
    close(box_b)  # B is away; its session and subscription wait at the broker
    publish(port, "hq", downlink, b'{"member_id": "M-1"}')  # queued for B
    intruder, _, _ = connect(port, "sh-001", b_id, clean=True)
    time.sleep(0.3)
    close(intruder)
    box_b, b_dropped, b_received = connect(port, "sh-002", b_id, clean=False)
    try:
        wait_until(lambda: b_received, 5, "the delete queued while B was away")
        assert b_received == [b'{"member_id": "M-1"}']
        intruder, _, _ = connect(port, "sh-001", b_id, clean=True)  # B is online now
        time.sleep(0.5)
        close(intruder)
        assert b_dropped == [], "store A took store B's connection"
        publish(port, "hq", downlink, b'{"member_id": "M-2"}')
        wait_until(lambda: len(b_received) == 2, 5, "a later delete on B's connection")
    finally:
        close(box_b)


def test_the_console_user_reads_alerts_and_writes_acks_of_its_store_only(broker):
    alerts = Subscriber(broker.port, "footfall/+/alerts/#", username="sh-001-console", password=USERS["sh-001-console"])
    hq = Subscriber(broker.port, "footfall/#", username="hq", password=USERS["hq"])
    try:
        publish(broker.port, "sh-002", "footfall/sh-002/alerts/arrival", b'{"store": "B"}')
        publish(broker.port, "sh-001", "footfall/sh-001/alerts/arrival", b'{"store": "A"}')
        publish(broker.port, "sh-001-console", "footfall/sh-001/alerts/ack", b'{"ack": 1}')
        publish(broker.port, "sh-001-console", "footfall/sh-001/members/delete", b'{"member_id": "M-1"}')
        publish(broker.port, "sh-001-console", "footfall/sh-002/alerts/ack", b'{"ack": 2}')
        hq.wait_for(lambda ms: any(m.topic == "footfall/sh-001/alerts/ack" for m in ms), 5, "the console's ack")
        alerts.wait_for(lambda ms: any(m.payload == {"ack": 1} for m in ms), 5, "its own ack")
        time.sleep(0.3)
        assert sorted(m.topic for m in hq.messages) == ["footfall/sh-001/alerts/ack", "footfall/sh-001/alerts/arrival",
                                                       "footfall/sh-002/alerts/arrival"]
        assert sorted(m.topic for m in alerts.messages) == ["footfall/sh-001/alerts/ack",
                                                           "footfall/sh-001/alerts/arrival"]
    finally:
        alerts.close()
        hq.close()


def test_the_console_user_hears_its_own_stores_erasures_only(broker):
    deleted = Subscriber(broker.port, "footfall/+/members/deleted", username="sh-001-console",
                         password=USERS["sh-001-console"])
    try:
        publish(broker.port, "sh-002", "footfall/sh-002/members/deleted", b'{"member_id": "B-1"}')
        publish(broker.port, "sh-001", "footfall/sh-001/members/deleted", b'{"member_id": "A-1"}')
        deleted.wait_for(lambda ms: ms, 5, "its store's erasure")
        time.sleep(0.3)
        assert [(m.topic, m.payload) for m in deleted.messages] == [
            ("footfall/sh-001/members/deleted", {"member_id": "A-1"})]
    finally:
        deleted.close()
