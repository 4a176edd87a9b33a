"""The one MQTT client factory: protocol, session, credentials and TLS are set the same way for every part.

The broker-free checks run everywhere; the connections go to a real Mosquitto on loopback and
are skipped (alone) when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from support.broker import Broker, mosquitto_passwd_path, mosquitto_path, wait_until

from footfall.config.schema import ConfigError, MqttConfig
from footfall.sync.mqtt_client import local_config, make_client, parse_broker_url

needs_broker = pytest.mark.skipif(mosquitto_path() is None or mosquitto_passwd_path() is None,
                                  reason="mosquitto is not installed (apt-get install mosquitto)")


def test_the_protocol_is_the_configured_one_unless_the_caller_needs_mqtt_5():
    v311 = MqttConfig(protocol="3.1.1")
    assert make_client(v311, "a").protocol == MQTTProtocolVersion.MQTTv311
    assert make_client(v311, "b", protocol="5").protocol == MQTTProtocolVersion.MQTTv5
    assert make_client(MqttConfig(), "c").protocol == MQTTProtocolVersion.MQTTv5


def test_credentials_come_from_the_secret_wherever_it_is_kept(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("kept elsewhere\n")
    client = make_client(MqttConfig(username="store-sh-001", password_file=secret), "box")
    assert (client.username, client.password) == ("store-sh-001", "kept elsewhere")
    anonymous = make_client(MqttConfig(), "box")
    assert anonymous.username is None and anonymous.password is None


def test_a_missing_tls_file_is_a_config_error_naming_its_key(tmp_path):
    config = MqttConfig(url="mqtts://broker.example.com", ca_file=tmp_path / "missing-ca.pem")
    with pytest.raises(ConfigError, match=r"^mqtt\.ca_file: no such file"):
        make_client(config, "box")


def test_tls_files_are_ignored_for_a_plain_mqtt_url(tmp_path):
    config = MqttConfig(url="mqtt://127.0.0.1:1883", ca_file=tmp_path / "missing-ca.pem")
    make_client(config, "box")  # no TLS on mqtt://: the file is not looked at


def test_a_local_broker_needs_only_its_port():
    assert parse_broker_url(local_config(18830).url) == ("127.0.0.1", 18830, False)


def _connect(client: paho.Client, url: str, **kw: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    client.on_connect = lambda c, u, flags, reason, p: answer.update(reason=reason, present=flags.session_present)
    host, port, _ = parse_broker_url(url)
    client.connect(host, port, keepalive=10, **kw)
    client.loop_start()
    try:
        wait_until(lambda: "reason" in answer, 5, "the broker's CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return answer


@needs_broker
def test_the_broker_accepts_the_configured_user_and_refuses_a_wrong_password(tmp_path: Path):
    broker = Broker(tmp_path / "broker", users={"store-sh-001": "battery staple"}).start()
    try:
        good = MqttConfig(url=broker.url, username="store-sh-001", password="battery staple")
        assert not _connect(make_client(good, "good"), broker.url)["reason"].is_failure
        bad = good.model_copy(update={"password": "wrong"})
        assert _connect(make_client(bad, "bad"), broker.url)["reason"].is_failure
    finally:
        broker.stop()


@needs_broker
def test_a_persistent_3_1_1_client_finds_its_session_again_and_a_plain_one_does_not(tmp_path: Path):
    broker = Broker(tmp_path / "broker").start()
    try:
        config = MqttConfig(url=broker.url, protocol="3.1.1")
        _connect(make_client(config, "kept", persistent=True), broker.url)
        assert _connect(make_client(config, "kept", persistent=True), broker.url)["present"] is True
        _connect(make_client(config, "fresh"), broker.url)
        assert _connect(make_client(config, "fresh"), broker.url)["present"] is False
    finally:
        broker.stop()
