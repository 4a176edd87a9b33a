"""The daemon's uplink on its own: an MQTT `Publisher` on an `Outbox`, fed events as the store feeds
them, and a `closing` fixture that ends whatever a test started, even when it fails.

Registered in tests/conftest.py, so `closing` is a fixture of every test module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from footfall.config.schema import MqttConfig
from footfall.sync import events
from footfall.sync.events import VisitEvent, topic
from footfall.sync.mqtt import Publisher
from footfall.sync.outbox import Outbox
from support.broker import Broker

T = TypeVar("T")

STORE = "sh-001"
VERSION = "0.1.0-test"
STATUS = topic("footfall", STORE, events.STATUS)
VISITS = topic("footfall", STORE, events.VISITS)


def wall() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


@pytest.fixture
def closing() -> Iterator[Callable[[T], T]]:
    """`closing(thing)` returns `thing`, and at the end of the test stops it (publishers, brokers) or
    closes it (subscribers, outboxes), even when the test fails."""
    things: list = []

    def keep(thing: T) -> T:
        things.append(thing)
        return thing

    yield keep
    for thing in reversed(things):
        if isinstance(thing, Publisher):
            thing.stop(1)
        elif isinstance(thing, Broker):
            thing.stop()
        else:
            thing.close()


def make_publisher(url: str, outbox: Outbox, *, protocol: str = "5", username: str | None = None,
                   password: str | None = None, **kw: Any) -> Publisher:
    """The store's publisher on `url`, reconnecting within tenths of a second; not started."""
    config = MqttConfig(url=url, protocol=protocol, username=username, password=password)
    return Publisher(config, STORE, outbox, version=VERSION, cameras=lambda: {"door-1": "streaming"},
                     reconnect_min=0.05, reconnect_max=0.3, **kw)


def submit(pub: Publisher, event: events.Event) -> None:
    """What the store does with an event: a row of the outbox, and the publisher told to look."""
    pub.outbox.add_event(pub.prefix, pub.store_id, event)
    pub.notify()


def a_visit(n: int) -> VisitEvent:
    """Visitor n walking in now."""
    now = wall()
    return VisitEvent("visit", f"visitor-{n}", None, "visitor", "door-1", now, store_id=STORE, ts=now)


def first_seen(ids: list[str]) -> list[str]:
    """De-duplication as a consumer does it: the first copy of each event_id, in arrival order."""
    return list(dict.fromkeys(ids))
