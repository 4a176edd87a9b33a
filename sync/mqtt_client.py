"""The one way a paho client is made: broker URL, protocol, credentials and TLS set alike everywhere.

Every part that talks to a broker (the store's publisher, the guide console, `doctor`, the demo,
the benchmarks, HQ's collector and reconciler) asks `make_client` for its client and adds only
its own callbacks and connect options. Credentials come from `MqttConfig.secret()` (file,
environment or systemd credential), TLS from `mqtt.ca_file`/`cert_file`/`key_file` for an
`mqtts://` URL; a ConfigError names the key of a file that is missing or cannot be loaded.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from footfall.config.schema import ConfigError, MqttConfig

Protocol = Literal["5", "3.1.1"]


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """mqtt://host[:port] or mqtts://host[:port] -> (host, port, tls); default ports 1883 and 8883."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker URL must look like mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


def apply_credentials(client: paho.Client, config: MqttConfig, tls: bool) -> None:
    """Username/password and, for mqtts, TLS with the configured CA and client certificate;
    a ConfigError names the key of a missing or unloadable file."""
    if config.username is not None:
        client.username_pw_set(config.username, config.secret())
    if not tls:
        return
    files = {"mqtt.ca_file": config.ca_file, "mqtt.cert_file": config.cert_file, "mqtt.key_file": config.key_file}
    for key, path in files.items():
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}: no such file: {path}")
    try:
        client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None,
                       certfile=str(config.cert_file) if config.cert_file else None,
                       keyfile=str(config.key_file) if config.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        given = ", ".join(k for k, v in files.items() if v is not None) or "the system's CA store"
        raise ConfigError(f"{given}: cannot load for TLS: {exc}") from None


def local_config(port: int) -> MqttConfig:
    """Settings for a broker on this machine's loopback without credentials (demo, benchmarks)."""
    return MqttConfig.model_validate({"url": f"mqtt://127.0.0.1:{port}"})


def make_client(config: MqttConfig, client_id: str, *, protocol: Protocol | None = None,
                persistent: bool = False, manual_ack: bool = False) -> paho.Client:
    """A paho client (callback API v2) for `config`'s broker with its credentials and TLS applied.

    `protocol` overrides `config.protocol` for a part that needs MQTT 5 (HQ's shared subscriptions).
    `persistent`: the broker keeps the session. Under 3.1.1 that is the client's clean-session flag;
    under MQTT 5 the caller connects with `clean_start=False` and a SessionExpiryInterval.
    `manual_ack`: QoS 1 messages are acknowledged by the caller once handled.
    Not connected: the caller adds its callbacks, then connects.
    """
    _, _, tls = parse_broker_url(config.url)
    v5 = (protocol or config.protocol) == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
                         clean_session=None if v5 else not persistent, manual_ack=manual_ack)
    apply_credentials(client, config, tls)
    return client


class LocalSubscriber:
    """A client of the broker on this machine's loopback, subscribed (QoS 1) to `topic`, that hands
    every JSON object it receives to `keep` (on the client's thread); for the benchmarks."""

    def __init__(self, port: int, client_id: str, topic: str, keep: Callable[[dict[str, Any]], None], *,
                 name: str, timeout: float = 10) -> None:
        """Subscribed before it returns; RuntimeError naming the subscriber (`name`) when the broker
        has not granted the subscription within `timeout` seconds."""
        self._keep = keep
        subscribed = threading.Event()
        self.client = make_client(local_config(port), client_id, protocol="5")
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(timeout):
            raise RuntimeError(f"{name} could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(payload, dict):
            self._keep(payload)

    def close(self) -> None:
        """Disconnect and stop the client's thread."""
        self.client.disconnect()
        self.client.loop_stop()
