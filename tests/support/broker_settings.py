"""The shipped broker settings (config/mosquitto-footfall.conf.example) and ACL
(config/mosquitto-acl.example), installed for a test's Mosquitto, and publishing as one of its users."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

CONFIG = Path(__file__).resolve().parents[2] / "config"


def shipped_settings() -> str:
    """The settings lines of the shipped mosquitto.conf snippet, without its listener and the lines
    naming files (this broker has its own listener, password file and ACL)."""
    lines = [line.strip() for line in (CONFIG / "mosquitto-footfall.conf.example").read_text().splitlines()]
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("#")
                   and line.split()[0] not in ("listener", "certfile", "keyfile", "password_file", "acl_file",
                                                   "allow_anonymous"))


def shipped_acl(workdir: Path) -> str:
    """Copy the shipped ACL into `workdir`; the mosquitto.conf line that names the copy."""
    acl = workdir / "acl"
    acl.write_text((CONFIG / "mosquitto-acl.example").read_text())
    return f"acl_file {acl}\n"


def publish_as(passwords: dict[str, str], port: int, user: str, topic: str, body: bytes = b"{}", *,
               retain: bool = False) -> None:
    """Publish one message at QoS 1 on a connection of `user`'s own (password from `passwords`), then close it."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{user}-{time.monotonic_ns()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(user, passwords[user])
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, body, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
