"""One outbox row the broker can never take must not block the uplink (issue 12, item 9).

A Mosquitto with `max_packet_size` closes the connection on a larger PUBLISH. Over MQTT 5 it says
its Maximum Packet Size in the CONNACK, and the publisher dead-letters such a row without sending
it; over 3.1.1 it cannot know, so after a dropped connection it sends one row at a time and a row
that was alone in flight at `mqtt.max_attempts` drops is dead-lettered. Either way the rows behind
it arrive, in order, and `status` counts the dead letter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.broker import Broker, Subscriber, wait_until
from support.daemon_uplink import STATUS, VISITS, a_visit, first_seen, make_publisher, submit

from footfall.sync.outbox import Outbox

MAX_PACKET = 4096


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_oversized_row_is_dead_lettered_and_the_visits_behind_it_flow(tmp_path: Path, closing, protocol):
    broker = closing(Broker(tmp_path / "broker", extra_conf=f"max_packet_size {MAX_PACKET}\n").start())
    outbox = closing(Outbox(tmp_path / "state" / "outbox.db", alert_ttl=timedelta(minutes=2),
                            now=lambda: datetime.now(UTC)))
    consumer = closing(Subscriber(broker.port, "footfall/sh-001/#"))
    pub = closing(make_publisher(broker.url, outbox, protocol=protocol))  # mqtt.max_attempts = 5
    first, huge, last = a_visit(1), a_visit(2), a_visit(3)
    object.__setattr__(huge, "visitor_id", "v" * (2 * MAX_PACKET))  # an id echoed back, over the broker's limit
    for event in (first, huge, last):
        submit(pub, event)
    pub.start()

    got = consumer.wait_for(lambda ms: any(m.payload.get("event_id") == last.event_id for m in ms), 30,
                            "the visit behind the big one")
    # Consumers de-duplicate on event_id (a row in flight at a drop is sent again).
    assert first_seen([m.payload["event_id"] for m in got if m.topic == VISITS]) == [first.event_id, last.event_id]
    wait_until(lambda: outbox.stats().pending == 0, 5, "every other row acknowledged")
    assert outbox.stats().dead_letters == 1
    consumer.wait_for(lambda ms: any(m.topic == STATUS and m.payload.get("dead_letters") == 1 for m in ms),
                      10, "a status counting the dead letter")
    later = a_visit(4)
    submit(pub, later)  # and the uplink goes on
    consumer.wait_for(lambda ms: any(m.payload.get("event_id") == later.event_id for m in ms), 10, "a later visit")
