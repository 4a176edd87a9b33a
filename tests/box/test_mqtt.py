"""Specification of the MQTT publisher against a real Mosquitto (CONTRACT, "MQTT").

Events go out QoS 1, in order per topic, from the persistent outbox: a broker
restart or a publisher restart loses none (consumers de-duplicate on
event_id); an alert that outlived its TTL is never sent; availability is a
retained status whose last will is "offline". Each test starts its own broker
on a free loopback port and bounds every wait with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.broker import Broker, Received, Subscriber, free_port, mosquitto_passwd_path, wait_until
from support.daemon import store_config
from support.daemon_tls import make_ca_and_server_cert
from support.daemon_uplink import (
    STATUS,
    STORE,
    VERSION,
    VISITS,
    a_visit,
    first_seen,
    make_publisher,
    submit,
    wall,
)
from support.downlink import Hq

from footfall.config.schema import ConfigError, MqttConfig
from footfall.sync import events
from footfall.sync.events import ArrivalAlert, topic
from footfall.sync.mqtt import Publisher, backoff_delay
from footfall.sync.mqtt_client import parse_broker_url
from footfall.sync.outbox import Outbox

ARRIVALS = topic("footfall", STORE, events.ALERT_ARRIVAL)
EVERYTHING = f"footfall/{STORE}/#"


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "state" / "outbox.db", alert_ttl=timedelta(minutes=2), now=wall)
    yield box
    box.close()


def an_arrival(n: int) -> ArrivalAlert:
    return ArrivalAlert(f"m-{n}", "Li Wei", "gold", f"visit-{n}", None, {"tags": ["vip"]}, store_id=STORE, ts=wall())


def event_ids(messages: list[Received], on: str | None = None) -> list[str]:
    return [m.payload["event_id"] for m in messages if on is None or m.topic == on]


def retained_status(port: int, closing) -> dict:
    """What a consumer subscribing now is told about the box."""
    late = closing(Subscriber(port, STATUS))
    [msg] = late.wait_for(lambda m: m, 5, "the retained status")
    assert msg.retain
    return msg.payload


# -- the broker URL and backoff (no broker needed) ---------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1", ("127.0.0.1", 1883, False)),
    ("mqtts://broker.example.com", ("broker.example.com", 8883, True)),
    ("mqtt://broker:1884", ("broker", 1884, False)),
    ("mqtts://broker:443/", ("broker", 443, True)),
])
def test_broker_urls_give_host_port_and_tls(url, expected):
    assert parse_broker_url(url) == expected


def test_a_broker_url_of_another_scheme_is_refused():
    with pytest.raises(ValueError, match="mqtt://"):
        parse_broker_url("http://broker:1883")


def test_reconnect_delays_grow_exponentially_with_jitter_up_to_a_cap():
    delays = [[backoff_delay(n, 1.0, 60.0) for n in range(1, 10)] for _ in range(50)]
    for attempt, cap in enumerate([1, 2, 4, 8, 16, 32, 60, 60, 60]):
        seen = [d[attempt] for d in delays]
        assert all(cap / 2 <= d <= cap for d in seen)
        assert len(set(seen)) > 40  # spread, so a thousand stores do not come back in the same instant


# -- availability -----------------------------------------------------------------------------

def test_online_is_retained_on_connect_and_stopped_on_a_clean_stop(broker, outbox, closing):
    pub = closing(make_publisher(broker.url, outbox))
    pub.start()
    wait_until(lambda: pub.connected, 5, "the publisher to connect")
    online = retained_status(broker.port, closing)
    assert online["state"] == "online" and online["version"] == VERSION
    assert online["cameras"] == {"door-1": "streaming"} and online["store_id"] == STORE

    watcher = closing(Subscriber(broker.port, STATUS))
    pub.stop(2)
    watcher.wait_for(lambda m: any(x.payload["state"] == "stopped" for x in m), 5, "stopped")
    assert retained_status(broker.port, closing)["state"] == "stopped"
    time.sleep(0.2)  # a last will would fire now; a clean DISCONNECT cancels it
    assert [m.payload["state"] for m in watcher.messages] == ["online", "stopped"]


CHILD = textwrap.dedent("""
    import sys, time
    from datetime import datetime, timedelta, timezone
    from pathlib import Path
    from footfall.config.schema import MqttConfig
    from footfall.sync.mqtt import Publisher
    from footfall.sync.outbox import Outbox
    url, db, ready = sys.argv[1:]
    box = Outbox(db, alert_ttl=timedelta(minutes=2), now=lambda: datetime.now(timezone.utc))
    pub = Publisher(MqttConfig(url=url), "sh-001", box, version="child", cameras=lambda: {})
    pub.start()
    while not pub.connected:
        time.sleep(0.01)
    Path(ready).touch()
    time.sleep(60)
""")


def test_offline_is_the_last_will_when_the_daemon_dies(broker, tmp_path, closing):
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", CHILD, broker.url, str(tmp_path / "child.db"), str(ready)])
    try:
        wait_until(ready.exists, 10, "the child publisher to connect")
        watcher = closing(Subscriber(broker.port, STATUS))
        watcher.wait_for(lambda m: m and m[-1].payload["state"] == "online", 5, "online")
        os.kill(child.pid, signal.SIGKILL)  # no chance to say goodbye
        child.wait(5)
        watcher.wait_for(lambda m: m[-1].payload["state"] == "offline", 5, "the last will")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    offline = retained_status(broker.port, closing)
    assert offline["state"] == "offline" and offline["version"] == "child" and offline["store_id"] == STORE



def newest_status(messages: list[Received]) -> dict:
    """The status a consumer keeps when it orders statuses by `ts`, a tie going to the later message
    (head office's rule: store_status is replaced when its ts <= the new one's)."""
    kept: dict = {}
    for m in messages:
        if not kept or datetime.fromisoformat(kept["ts"]) <= datetime.fromisoformat(m.payload["ts"]):
            kept = m.payload
    return kept


@pytest.mark.slow
def test_a_daemon_killed_with_sigkill_ends_offline_even_for_a_consumer_that_keeps_the_newest_status(
        broker, tmp_path, closing):
    config = store_config(tmp_path, broker)
    watcher = closing(Subscriber(broker.port, STATUS))
    daemon = subprocess.Popen([sys.executable, "-m", "footfall", "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        onlines = lambda ms: [m for m in ms if m.payload.get("state") == "online"]  # noqa: E731
        watcher.wait_for(lambda ms: onlines(ms), 60, "the daemon online")
        # A second connection, opened later than the daemon started: its will must be as new.
        time.sleep(0.05)
        broker.stop()
        broker.start()
        first = onlines(watcher.messages)[0].payload["ts"]
        watcher.wait_for(lambda ms: any(m.payload["ts"] > first for m in onlines(ms)), 30, "online again")
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        watcher.wait_for(lambda ms: ms[-1].payload.get("state") == "offline", 10, "the last will")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
    will = watcher.messages[-1].payload
    assert all(datetime.fromisoformat(m.payload["ts"]) <= datetime.fromisoformat(will["ts"])
               for m in onlines(watcher.messages)), "the will is older than an online status"
    assert newest_status(watcher.messages)["state"] == "offline"
    assert retained_status(broker.port, closing)["state"] == "offline"

# -- events -----------------------------------------------------------------------------------------

def test_events_arrive_qos1_in_order_on_their_topics(broker, outbox, closing):
    consumer = closing(Subscriber(broker.port, EVERYTHING))
    pub = closing(make_publisher(broker.url, outbox))
    pub.start()
    for n in range(30):
        submit(pub, a_visit(n) if n % 3 else an_arrival(n))
    assert pub.wait_sent(5)
    got = consumer.wait_for(lambda m: len([x for x in m if x.topic != STATUS]) >= 30, 5, "30 events")
    events_got = [m for m in got if m.topic != STATUS]
    assert {m.qos for m in events_got} == {1} and not any(m.retain for m in events_got)
    visits = [m.payload for m in events_got if m.topic == VISITS]
    arrivals = [m.payload for m in events_got if m.topic == ARRIVALS]
    assert [int(p["visitor_id"].split("-")[1]) for p in visits] == [n for n in range(30) if n % 3]
    assert [int(p["member_id"].split("-")[1]) for p in arrivals] == [n for n in range(30) if not n % 3]
    assert arrivals[0]["tags"] == ["vip"] and arrivals[0]["visit_event_id"] == "visit-0"
    assert outbox.stats().pending == 0 and outbox.stats().sent == 30


def test_alerts_carry_their_remaining_lifetime_and_visits_none(broker, outbox, closing):
    consumer = closing(Subscriber(broker.port, EVERYTHING))
    pub = closing(make_publisher(broker.url, outbox))
    pub.start()
    submit(pub, an_arrival(1))
    submit(pub, a_visit(2))
    got = consumer.wait_for(lambda m: {VISITS, ARRIVALS} <= {x.topic for x in m}, 5, "an alert and a visit")
    alert = next(m for m in got if m.topic == ARRIVALS)
    visit = next(m for m in got if m.topic == VISITS)
    assert 100 <= alert.properties.MessageExpiryInterval <= 120
    assert not hasattr(visit.properties, "MessageExpiryInterval")


def test_an_alert_that_outlived_its_ttl_is_never_published(broker, tmp_path, closing):
    offset = timedelta(0)
    box = closing(Outbox(tmp_path / "outbox.db", alert_ttl=timedelta(minutes=2), now=lambda: wall() + offset))

    def add(event: events.Event) -> str:
        box.add(topic("footfall", STORE, event.TOPIC), event.to_json(), event_id=event.event_id, alert=event.ALERT)
        return event.event_id

    stale, old_visit = add(an_arrival(1)), add(a_visit(2))
    offset = timedelta(minutes=2, seconds=1)  # the broker was unreachable for two minutes
    fresh = add(an_arrival(3))
    consumer = closing(Subscriber(broker.port, EVERYTHING))
    pub = closing(make_publisher(broker.url, box))
    pub.start()
    assert pub.wait_sent(5)
    got = consumer.wait_for(lambda m: fresh in event_ids(m), 5, "the fresh alert")
    assert stale not in event_ids(got)
    assert event_ids(got, VISITS) == [old_visit]
    assert box.stats().expired_alerts == 1


def test_nothing_is_lost_when_the_broker_restarts_mid_run(broker, outbox, closing, caplog):
    consumer = closing(Subscriber(broker.port, EVERYTHING, client_id="hq-consumer", persistent=True))
    pub = closing(make_publisher(broker.url, outbox))
    pub.start()
    wait_until(lambda: pub.connected, 5, "the publisher to connect")
    submitted: list[str] = []

    def produce() -> None:
        for n in range(240):
            event = a_visit(n) if n % 4 else an_arrival(n)
            submit(pub, event)
            submitted.append(event.event_id)
            time.sleep(0.004)

    producer = threading.Thread(target=produce)
    producer.start()
    wait_until(lambda: len(submitted) >= 60, 5, "the first events")
    broker.stop()  # SIGTERM: unacknowledged events stay in the outbox
    wait_until(lambda: not pub.connected, 5, "the publisher to notice")
    # The first reconnection attempt may already have replaced last_error; the log keeps both.
    wait_until(lambda: "lost" in caplog.text, 5, "the loss to be logged")
    time.sleep(0.2)
    broker.start()
    producer.join(10)
    assert pub.wait_sent(10), pub.last_error
    want = len(submitted)
    got = consumer.wait_for(lambda m: len(set(event_ids(m))) >= want + 2, 10,  # + online twice
                            f"all {want} events after de-duplication")
    got = [m for m in got if m.topic != STATUS]
    assert set(event_ids(got)) == set(submitted)
    for on in (VISITS, ARRIVALS):
        order = [e for e in submitted if e in set(event_ids(got, on))]
        assert first_seen(event_ids(got, on)) == order, f"order on {on}"


def test_a_restarted_publisher_sends_what_was_left_unsent(broker, tmp_path, closing):
    db = tmp_path / "outbox.db"
    box = Outbox(db, alert_ttl=timedelta(minutes=2), now=wall)
    broker.stop()
    down = make_publisher(broker.url, box)
    down.start()
    for n in range(5):
        submit(down, a_visit(n))
    wait_until(lambda: down.last_error and "nothing accepts connections" in down.last_error, 5, "a refusal")
    assert not down.connected
    down.stop(1)
    box.close()

    broker.start()
    consumer = closing(Subscriber(broker.port, VISITS))
    box = closing(Outbox(db, alert_ttl=timedelta(minutes=2), now=wall))
    assert box.stats().pending == 5
    up = closing(make_publisher(broker.url, box))
    up.start()
    got = consumer.wait_for(lambda m: len(m) >= 5, 5, "the five visits")
    assert [m.payload["visitor_id"] for m in got] == [f"visitor-{n}" for n in range(5)]
    assert up.wait_sent(5)


def test_stop_returns_within_its_timeout_when_the_broker_is_gone(broker, outbox):
    pub = make_publisher(broker.url, outbox)
    pub.start()
    wait_until(lambda: pub.connected, 5, "the publisher to connect")
    broker.stop()
    submit(pub, a_visit(1))
    started = time.monotonic()
    pub.stop(1)
    assert time.monotonic() - started < 2
    assert outbox.stats().pending == 1  # kept for the next start


def test_mqtt_3_1_1_works_too(broker, outbox, closing):
    consumer = closing(Subscriber(broker.port, EVERYTHING))
    pub = closing(make_publisher(broker.url, outbox, protocol="3.1.1"))
    pub.start()
    submit(pub, a_visit(1))
    submit(pub, an_arrival(2))
    got = consumer.wait_for(lambda m: len([x for x in m if x.topic != STATUS]) >= 2, 5, "two events")
    assert [m.topic for m in got if m.topic != STATUS] == [VISITS, ARRIVALS]
    assert retained_status(broker.port, closing)["state"] == "online"


def test_the_watchdog_sees_progress_while_idle(broker, outbox, closing):
    pub = closing(make_publisher(broker.url, outbox))
    pub.start()
    wait_until(lambda: pub.connected, 5, "the publisher to connect")
    before = pub.last_progress
    wait_until(lambda: pub.last_progress > before, 2, "an idle check")


# -- downlink and direct replies -------------------------------------------------------------------

def test_downlink_sent_while_the_box_was_offline_arrives_when_it_reconnects(broker, outbox, closing):
    upserts = topic("footfall", STORE, events.MEMBERS_UPSERT)
    received: list[paho.MQTTMessage] = []
    first = make_publisher(broker.url, outbox, subscriptions=[upserts], on_message=lambda m, ack: received.append(m))
    first.start()
    wait_until(lambda: first.connected, 5, "the publisher to connect")
    time.sleep(0.1)  # let the SUBACK land
    first.stop(1)

    crm = Hq(broker.port)
    crm.send(events.MEMBERS_UPSERT, b'{"member_id": "m-9"}')
    crm.close()

    again = closing(make_publisher(broker.url, outbox, subscriptions=[upserts],
                                   on_message=lambda m, ack: received.append(m)))
    again.start()
    wait_until(lambda: received, 5, "the upsert queued by the broker")
    assert received[0].topic == upserts and received[0].payload == b'{"member_id": "m-9"}'


def test_a_failing_downlink_handler_does_not_stop_the_publisher(broker, outbox, closing):
    requests = topic("footfall", STORE, events.COUNTS_GET)

    def broken(message: paho.MQTTMessage, ack: object) -> None:
        raise RuntimeError("bug in a handler")

    pub = closing(make_publisher(broker.url, outbox, subscriptions=[requests], on_message=broken))
    pub.start()
    wait_until(lambda: pub.connected, 5, "the publisher to connect")
    time.sleep(0.1)
    crm = Hq(broker.port)
    crm.send(events.COUNTS_GET, b"{}")
    crm.close()
    consumer = closing(Subscriber(broker.port, VISITS))
    submit(pub, a_visit(1))
    consumer.wait_for(lambda m: m, 5, "a visit after the failure")
    assert pub.connected


def test_publish_now_sends_a_reply_with_its_correlation_data(broker, outbox, closing):
    reply_to = "hq/replies/42"
    consumer = closing(Subscriber(broker.port, reply_to))
    pub = closing(make_publisher(broker.url, outbox))
    pub.start()
    wait_until(lambda: pub.connected, 5, "the publisher to connect")
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = b"req-42"
    pub.publish_now(reply_to, {"store_id": STORE, "buckets": []}, retain=False, qos=1, properties=props)
    [reply] = consumer.wait_for(lambda m: m, 5, "the reply")
    assert reply.payload == {"store_id": STORE, "buckets": []}
    assert reply.properties.CorrelationData == b"req-42"
    assert outbox.stats().pending == 0 and outbox.stats().sent == 0  # not an event: never stored


# -- refusals --------------------------------------------------------------------------------------

@pytest.mark.skipif(mosquitto_passwd_path() is None, reason="mosquitto_passwd is not installed")
def test_a_wrong_password_is_named_and_retried_until_the_broker_accepts_it(tmp_path, outbox, closing):
    broker = closing(Broker(tmp_path / "locked", users={"store-sh-001": "right horse"}).start())
    pub = closing(make_publisher(broker.url, outbox, username="store-sh-001", password="battery staple"))
    pub.start()
    wait_until(lambda: pub.last_error, 5, "the refusal")
    assert "mqtt.password" in pub.last_error and "not authorized" in pub.last_error.lower()
    time.sleep(0.5)  # several refused attempts: nothing raises, the thread keeps going
    assert not pub.connected and "refused" in pub.last_error

    # The broker is told the box's password (SIGHUP reloads it): the same publisher, still retrying, gets in.
    broker.set_users({"store-sh-001": "battery staple"})
    wait_until(lambda: pub.connected, 5, "the publisher's next attempt to succeed")
    assert pub.last_error is None


@pytest.mark.skipif(mosquitto_passwd_path() is None, reason="mosquitto_passwd is not installed")
@pytest.mark.parametrize("where", ["password_file", "environment", "systemd credential"])
def test_the_password_can_live_outside_the_config_file(tmp_path, outbox, closing, monkeypatch, where):
    broker = closing(Broker(tmp_path / "locked", users={"store-sh-001": "kept elsewhere"}).start())
    secret = tmp_path / "secret"
    secret.write_text("kept elsewhere\n")
    fields: dict = {}
    if where == "password_file":
        fields["password_file"] = secret
    elif where == "environment":
        monkeypatch.setenv("FOOTFALL_MQTT_PASSWORD", "kept elsewhere")
    else:
        (tmp_path / "creds").mkdir()
        (tmp_path / "creds" / "mqtt-password").write_text("kept elsewhere")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = MqttConfig(url=broker.url, username="store-sh-001", **fields)
    assert "kept elsewhere" not in repr(config)
    pub = closing(Publisher(config, STORE, outbox, version=VERSION, cameras=lambda: {}, reconnect_min=0.05,
                            reconnect_max=0.3))
    pub.start()
    wait_until(lambda: pub.connected, 5, "a connection with the password kept outside the config")


def test_an_unreadable_password_file_is_a_config_error_naming_the_key(tmp_path):
    config = MqttConfig(username="u", password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: cannot read"):
        config.secret()


def test_a_broker_certificate_from_another_ca_is_named_and_retried(tmp_path, outbox, closing):
    ca, cert, key = make_ca_and_server_cert(tmp_path / "tls", "store")
    other_ca, _, _ = make_ca_and_server_cert(tmp_path / "tls", "other")
    tls_port = free_port()
    broker = Broker(tmp_path / "tls-broker", extra_conf=(
        f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")).start()
    closing(broker)
    url = f"mqtts://127.0.0.1:{tls_port}"

    wrong = Publisher(MqttConfig(url=url, ca_file=other_ca), STORE, outbox, version=VERSION, cameras=dict,
                      reconnect_min=0.05, reconnect_max=0.3)
    closing(wrong)
    wrong.start()
    wait_until(lambda: wrong.last_error, 5, "the TLS refusal")
    assert "certificate" in wrong.last_error and "mqtt.ca_file" in wrong.last_error, wrong.last_error
    assert not wrong.connected
    wrong.stop(1)

    right = Publisher(MqttConfig(url=url, ca_file=ca), STORE, outbox, version=VERSION, cameras=dict,
                      reconnect_min=0.05, reconnect_max=0.3)
    closing(right)
    right.start()
    wait_until(lambda: right.connected, 5, "a TLS connection with the right CA")


def test_a_missing_ca_file_is_a_config_error_naming_the_key(tmp_path, outbox):
    with pytest.raises(ConfigError, match="mqtt.ca_file"):
        Publisher(MqttConfig(url="mqtts://127.0.0.1:8883", ca_file=tmp_path / "nowhere.pem"), STORE, outbox,
                  version=VERSION, cameras=dict)
