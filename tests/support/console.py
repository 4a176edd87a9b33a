"""A guide console on a real Mosquitto for the tests: its config and logins, the store's
publisher, and the fixtures `console_broker`, `console`, `console_publisher` and `console_page`
(the page in headless Chromium, logged in).

Registered in tests/conftest.py. Tests marked `@browser` skip without chromium, chromedriver
and mosquitto.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from footfall.config.schema import Config, parse_config
from footfall.console import server as con
from footfall.sync import events
from footfall.sync.events import ArrivalAlert
from footfall.web.passwords import hash_password
from support.broker import Broker, mosquitto_path, wait_until
from support.browser import MISSING, chromium_paths, open_logged_in

SH = timezone(timedelta(hours=8))
STORE = "sh-001"
PASSWORD = "open sesame"
PASSWORD_HASH = hash_password(PASSWORD)
GUIDE_TOKEN = "li-na-token"
GUIDES = {"Li Na": hash_password(GUIDE_TOKEN)}

_needs_browser = pytest.mark.skipif(chromium_paths() is None or mosquitto_path() is None,
                                    reason=f"{MISSING} and mosquitto")


def browser(test: Any) -> Any:
    """A test in headless Chromium: skipped without chromium, chromedriver and mosquitto; slow."""
    return pytest.mark.slow(_needs_browser(test))


def console_config(url: str, mqtt: dict[str, Any] | None = None, **console: Any) -> Config:
    """Store sh-001's config on the broker at `url` (with `mqtt` keys), its console in English with
    the shared password and Li Na's token, and `console` keys."""
    return parse_config({"store_id": STORE, "timezone": "Asia/Shanghai", "mqtt": {"url": url, **(mqtt or {})},
                         "console": {"language": "en", "password_hash": PASSWORD_HASH, "guides": GUIDES,
                                     **console}})


def start_console(broker: Broker, mqtt: dict[str, Any] | None = None, **console: Any) -> con.Console:
    """A console (console_config's) on a free loopback port, once it is connected to `broker`."""
    c = con.Console(console_config(broker.url, mqtt, **console), listen="127.0.0.1:0").start()
    wait_until(lambda: c.broker_connected, 5, "the console's broker connection")
    return c


class Publisher:
    """What the store's box publishes, sent to the broker on `port` (as `username` if given)."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, event: events.Event) -> None:
        """Publish an event on its topic, retained as the contract says."""
        body = json.dumps(event.to_json(), ensure_ascii=False).encode()
        self.client.publish(events.topic("footfall", STORE, event.TOPIC), body, qos=1,
                            retain=event.RETAINED).wait_for_publish(5)

    def raw(self, name: str, body: bytes) -> None:
        """Publish `body` as it is on the store's topic `name`."""
        self.client.publish(events.topic("footfall", STORE, name), body, qos=1).wait_for_publish(5)

    def alert(self, visit: str, pad: int = 0) -> ArrivalAlert:
        """Publish an arrival of member m-1, Li Wei, for `visit` (with a profile note of `pad` characters)."""
        profile = {"note": "x" * pad} if pad else {}
        a = ArrivalAlert("m-1", "Li Wei", "gold", visit, None, profile, store_id=STORE, ts=datetime.now(SH))
        self.raw(events.ALERT_ARRIVAL, json.dumps(a.to_json()).encode())
        return a

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cards_of(driver: Any, member_id: str) -> list[Any]:
    """The cards on the console page that name a member."""
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f'#cards .card[data-member-id="{member_id}"]')


def lines(card: Any) -> dict[str, str]:
    """The appointment lines on a card: appointment id -> text."""
    from selenium.webdriver.common.by import By

    return {p.get_attribute("data-appointment-id"): p.text for p in card.find_elements(By.CSS_SELECTOR, ".minutes")}


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Mosquitto shared by the tests of a module."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def console(console_broker: Broker) -> Iterator[con.Console]:
    """A console on console_broker, shared by the tests of a module."""
    c = start_console(console_broker)
    yield c
    c.stop()


@pytest.fixture
def console_publisher(console_broker: Broker) -> Iterator[Publisher]:
    """The store's publisher on console_broker."""
    p = Publisher(console_broker.port)
    yield p
    p.close()


@pytest.fixture
def console_page(driver: Any, console: con.Console) -> Any:
    """The console page, logged in as "Wang Fang" with the shared password."""
    open_logged_in(driver, console.url, "Wang Fang", PASSWORD)
    return driver
