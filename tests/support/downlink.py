"""Head office's side of the downlink: a client publishing on store sh-001's command topics, and
the messages it sends (members with vectors, counts requests).

Registered in tests/conftest.py, so `hq` (head office's client on the test's `broker`) is a
fixture of every test module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from footfall.edge.daemon import Daemon
from support.broker import Broker, Subscriber
from support.daemon import PREFIX


class Hq:
    """Head office's client: publishes downlink messages (QoS 1 unless told otherwise)."""

    def __init__(self, port: int, protocol: str = "5") -> None:
        version = MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hq-{time.monotonic_ns()}", protocol=version)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, name: str, payload: dict[str, Any] | bytes, *, qos: int = 1, retain: bool = False,
             properties: Properties | None = None, wait: bool = True) -> None:
        """Publish `payload` (JSON unless bytes) on the store's `name` topic; `wait` for its PUBACK."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(PREFIX + name, body, qos=qos, retain=retain, properties=properties)
        if wait:
            info.wait_for_publish(10)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def hq(broker: Broker) -> Iterator[Hq]:
    """Head office's client on the test's broker, closed at the end."""
    client = Hq(broker.port)
    yield client
    client.close()


def counts_request(hq: Hq, response_topic: str | None = None, correlation: bytes = b"c", **payload: Any) -> None:
    """A counts/get request; with `response_topic`, MQTT 5's ResponseTopic and CorrelationData say where to answer."""
    props = None
    if response_topic is not None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
    hq.send("counts/get", payload, properties=props)


def upsert(member_id: str, **fields: Any) -> dict[str, Any]:
    """A members/upsert body for a consenting member, with `fields` added."""
    return {"member_id": member_id, "name": "Li Wei", "role": "member", "consent": True} | fields


def unit_vectors(n: int, seed: int = 0, dim: int = 256) -> list[list[float]]:
    """`n` orthogonal unit vectors of `dim` dimensions."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, n)))
    return q.T.astype(np.float32).tolist()


def with_embeddings(daemon: Daemon, member_id: str, n: int = 1, seed: int = 0, **fields: Any) -> dict[str, Any]:
    """An upsert carrying `n` vectors made for the daemon's recognizer."""
    pack = daemon.analyzer.pack
    assert pack is not None
    return upsert(member_id, embeddings=unit_vectors(n, seed, daemon.analyzer.embedder.dim),
                  embedding_model=pack.recognizer.sha256, **fields)


def reasons(sub: Subscriber) -> list[str]:
    """The reasons of the error reports `sub` received, in order."""
    return [m.payload["reason"] for m in sub.messages]
