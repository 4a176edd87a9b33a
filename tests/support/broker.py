"""A real Mosquitto for tests, and a subscriber that records what reaches it.

`Broker` writes its own mosquitto.conf into a temporary directory (loopback
listener on a free port, persistence in that directory so queued QoS 1
messages of persistent sessions survive a restart), and can be stopped and
started again on the same port. Tests import it with `from support.broker import ...`
and skip, naming the reason, when Mosquitto
is not installed.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def mosquitto_path() -> str | None:
    """The mosquitto binary: on PATH, or where Debian installs it."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def mosquitto_passwd_path() -> str | None:
    return shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if os.access("/usr/bin/mosquitto_passwd", os.X_OK) else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Broker:
    """A Mosquitto process on 127.0.0.1 with its config, log and persistence in `workdir`."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, extra_conf: str = "") -> None:
        binary = mosquitto_path()
        if binary is None:  # a test that needs a broker is skipped where it asks for one; the rest run
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if users else 'true'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto switches to the "mosquitto" user, who cannot use a private temp dir.
            lines.append(f"user {getpass.getuser()}")
        self.password_file = self.workdir / "passwd"
        if users:
            self.set_users(users)
            lines.append(f"password_file {self.password_file}")
        self.conf.write_text("\n".join(lines) + "\n" + extra_conf)

    def set_users(self, users: dict[str, str]) -> None:
        """Write the password file (mosquitto_passwd -b -c); a running broker reads it again on SIGHUP."""
        tool = mosquitto_passwd_path()
        if tool is None:
            raise FileNotFoundError("mosquitto_passwd is not installed")
        for i, (user, password) in enumerate(users.items()):
            args = [tool, "-b"] + (["-c"] if i == 0 else []) + [str(self.password_file), user, password]
            subprocess.run(args, check=True, capture_output=True, timeout=10)
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGHUP)

    def start(self, timeout: float = 5.0) -> Broker:
        """Start mosquitto and wait until its port accepts connections."""
        if self.running:
            return self
        log = open(self.log_file, "ab")
        self._proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout:g} s:\n{self.log()}") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait for the exit."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@dataclass(frozen=True)
class Received:
    """One message as a consumer saw it: `payload` is the JSON object ({} if the body is not one)."""

    topic: str
    payload: dict[str, Any]
    retain: bool
    qos: int
    properties: Properties | None
    body: bytes = b""


class Subscriber:
    """A paho consumer (MQTT 5, persistent session) that records every message under a topic filter."""

    def __init__(self, port: int, topic_filter: str, *, client_id: str | None = None,
                 persistent: bool = False, username: str | None = None, password: str | None = None) -> None:
        self.topic_filter = topic_filter
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-sub-{free_port()}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.2, 0.5)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect_async("127.0.0.1", port, 30, clean_start=not persistent, properties=props)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, 5, f"subscription to {topic_filter}")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic_filter, qos=1)

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:  # a test may send garbage on purpose; keep it, raw, in `body`
            payload = None
        received = Received(message.topic, payload if isinstance(payload, dict) else {}, bool(message.retain),
                            message.qos, getattr(message, "properties", None), bytes(message.payload))
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], Any], timeout: float = 5.0, what: str = "") -> list[Received]:
        """Block until `predicate(messages)` holds; AssertionError (with what arrived) after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m.topic, m.payload.get("state") or m.payload.get("event_id")) for m in self.messages]
                    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'messages'}; got {got}")
                self._cond.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
