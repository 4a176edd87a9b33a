"""The shipped broker settings (config/mosquitto-footfall.conf.example) installed as the docs say:
the file as it is in conf.d/ of a main config that has no listener of its own (Debian's), only its
certificate, key, password file, ACL and port set to this machine's.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, wait_until
from support.daemon_tls import make_ca_and_server_cert

SNIPPET = Path(__file__).resolve().parents[2] / "config" / "mosquitto-footfall.conf.example"
ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto-acl.example"
USERS = {"sh-001": "pw-a", "sh-002": "pw-b"}


def installed(snippet: str, *, port: int, cert: Path, key: Path, passwd: Path, acl: Path) -> str:
    """The snippet with only what names this machine changed: its port (on loopback) and its files."""
    replaced = {"listener": f"listener {port} 127.0.0.1", "certfile": f"certfile {cert}",
                "keyfile": f"keyfile {key}", "password_file": f"password_file {passwd}", "acl_file": f"acl_file {acl}"}
    lines = []
    for line in snippet.splitlines():
        word = line.split()[0] if line.strip() and not line.startswith("#") else ""
        lines.append(replaced.get(word, line))
    return "\n".join(lines) + "\n"


@pytest.fixture
def as_installed(tmp_path):
    """Mosquitto whose main config is Debian's shape (no listener, `include_dir conf.d`) with the
    shipped snippet in conf.d/; yields (broker, CA certificate)."""
    ca, cert, key = make_ca_and_server_cert(tmp_path / "certs", "broker")
    broker = Broker(tmp_path / "broker", users=USERS)
    main = broker.conf.read_text().splitlines()
    kept = [line for line in main if line.split()[0] not in ("listener", "allow_anonymous", "password_file")]
    conf_d = tmp_path / "broker" / "conf.d"
    conf_d.mkdir()
    acl = tmp_path / "acl"
    acl.write_text(ACL.read_text())
    (conf_d / "footfall.conf").write_text(installed(SNIPPET.read_text(), port=broker.port, cert=cert, key=key,
                                                    passwd=broker.password_file, acl=acl))
    broker.conf.write_text("\n".join(kept + ["log_type information", f"include_dir {conf_d}"]) + "\n")
    broker.start()
    yield broker, ca
    broker.stop()


def tls_client(port: int, ca: Path, user: str, client_id: str) -> tuple[paho.Client, list[str]]:
    """An MQTT 5 connection over TLS; the list collects the reasons it was disconnected."""
    dropped: list[str] = []
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(user, USERS[user])
    client.tls_set(ca_certs=str(ca))
    client.on_connect = lambda c, u, flags, reason, props: connected.set() if not reason.is_failure else None
    client.on_disconnect = lambda c, u, flags, reason, props: dropped.append(str(reason))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(5), f"{user} connected over TLS"
    return client, dropped


def test_the_shipped_snippet_opens_its_tls_listener_and_no_other(as_installed):
    broker, _ = as_installed
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2) as plain:
        plain.sendall(b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03box")  # a CONNECT without TLS
        plain.settimeout(2)
        try:
            answer = plain.recv(16)
        except (ConnectionResetError, TimeoutError, ssl.SSLError):
            answer = b""
    broker.stop()  # its log is complete once it has ended
    opened = {int(p) for p in re.findall(r"listen socket on port (\d+)", broker.log())}
    assert opened == {broker.port}, f"listeners opened: {opened} (a default listener would be 1883)"
    assert not answer.startswith(b"\x20"), "plain MQTT got a CONNACK: the listener is not TLS only"


def test_on_the_shipped_listener_a_login_takes_the_place_of_the_same_users_other_connection(as_installed):
    """The client id is the user name on the TLS listener itself: two connections with one user are
    one client, whatever ids they ask for (so one store can never hold another store's id)."""
    broker, ca = as_installed
    first, first_dropped = tls_client(broker.port, ca, "sh-001", "asked-for-one-id")
    second, second_dropped = tls_client(broker.port, ca, "sh-001", "asked-for-another-id")
    other, other_dropped = tls_client(broker.port, ca, "sh-002", "asked-for-one-id")
    try:
        wait_until(lambda: first_dropped, 5, "the first connection of sh-001 taken over by the second")
        time.sleep(0.3)
        assert second_dropped == [] and other_dropped == [], "another user's connection was touched"
    finally:
        for client in (first, second, other):
            client.disconnect()
            client.loop_stop()
