"""`footfall hq collect`: MQTT 5 shared subscriptions -> batched, idempotent PostgreSQL writes.

The paho network thread only queues what arrives; the main thread takes up to
`collector.batch_size` messages (or what came within `collector.batch_interval`), checks
them, writes them in one transaction, and only after the commit sends their PUBACKs
(`manual_ack`). A collector killed at any point therefore loses nothing: what it had not
acknowledged is redelivered by the broker (persistent session, clean start off), and the
database ignores what it already holds. A bad message becomes an `ingest_errors` row and is
acknowledged like any other; so does a message the database itself refuses (the batch is
split around it, hq/writer.py `write_bisecting`): no message can stop the collector. While the
database is unreachable nothing is acknowledged and the batch is retried.

Memory, log and table are bounded whatever the stores send (hq/bounds.py): the collector
announces a Receive Maximum (QoS 1 messages unacknowledged at once) and a Maximum Packet Size
(the broker drops larger messages rather than send them); QoS 0 messages, which the Receive
Maximum does not cover, wait within `qos0_buffer_bytes` and are dropped and counted beyond it;
rejections are logged at most `rejections_logged_per_minute` a minute, the rest counted; and
`ingest_errors` is pruned to `ingest_errors_max_rows` rows and `ingest_errors_max_age`.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from psycopg_pool import ConnectionPool

from footfall.config.hq import HqConfig
from footfall.hq.bounds import BoundedLog, Qos0Buffer, message_cost, prune_ingest_errors
from footfall.hq.db import Login
from footfall.hq.ingest import TOPICS, Rejection, Row, parse, rejection, zone_of
from footfall.hq.migrate import migrate
from footfall.hq.writer import Written, add, is_refusal, write_batch, write_bisecting
from footfall.sync.events import offset_name, topic_filter
from footfall.sync.mqtt_client import make_client, parse_broker_url

log = logging.getLogger(__name__)

UPLINK = tuple(TOPICS)  # every topic whose messages head office stores
_RETRY_MAX_S = 10.0
_AGE_PRUNE_EVERY_S = 60.0


def shared_filters(group: str, prefix: str) -> list[str]:
    """The shared-subscription filters of a collector group: `$share/<group>/<prefix>/+/<topic>`."""
    return [f"$share/{group}/{topic_filter(prefix, name)}" for name in UPLINK]


def connect_pool(config: HqConfig, *, min_size: int = 1) -> ConnectionPool:
    """A psycopg pool on `database.url` with the password from the environment or the password file.

    One login is tried first: LoginRefused (naming where the password came from) at once, rather
    than a pool retrying a password that cannot pass."""
    login = Login.of(config.database)
    login.check()
    kwargs: dict[str, Any] = {"autocommit": True}
    if login.password is not None:
        kwargs["password"] = login.password
    pool = ConnectionPool(config.database.url, min_size=min_size, max_size=max(min_size, config.database.pool_size),
                          kwargs=kwargs, open=False, name="hq")
    pool.open(wait=True, timeout=30)
    return pool


@dataclass
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(frozen=True)
class _Checked:
    """A message and what the checks made of it."""

    message: _Message
    outcome: Row | Rejection


@dataclass
class Stats:
    """Running totals of a collector."""

    batches: int = 0
    received: int = 0      # messages taken in from the broker (QoS 0 ones only when the buffer had room)
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused: int = 0       # messages the database refused, kept as ingest errors
    db_failures: int = 0
    last_commit: float = field(default=0.0)


class Zones:
    """Store id -> the zone its days and hours are computed in: configured, reported by the box's
    status (`learn`), known from `stores`, or from the event offset."""

    def __init__(self, configured: dict[str, str], known: dict[str, str]) -> None:
        self.configured = dict(configured)
        self.names: dict[str, tuple[str, str]] = {s: (tz, "offset") for s, tz in known.items()}
        self.names.update({s: (tz, "config") for s, tz in configured.items()})
        self._zones: dict[str, tzinfo] = {}

    def __call__(self, store_id: str, ts: datetime) -> tzinfo:
        if store_id not in self.names:
            self.names[store_id] = (offset_name(ts), "offset")
        if store_id not in self._zones:
            self._zones[store_id] = zone_of(self.names[store_id][0])
        return self._zones[store_id]

    def learn(self, store_id: str, name: str) -> None:
        """The zone a box's status reports: it replaces any but a configured one, for the rows after it."""
        if store_id in self.configured or self.names.get(store_id) == (name, "status"):
            return
        self.names[store_id] = (name, "status")
        self._zones.pop(store_id, None)


def load_zones(conn: psycopg.Connection, configured: dict[str, str]) -> Zones:
    """The zones already recorded in `stores`, with the configured ones on top."""
    known = {s: tz for s, tz in conn.execute("SELECT store_id, timezone FROM stores")}
    return Zones(configured, known)


class Collector:
    """One collector process of a shared-subscription group; `run()` until `stop()`."""

    def __init__(self, config: HqConfig, pool: ConnectionPool, *, client_id: str | None = None,
                 on_batch: Callable[[Written], None] | None = None) -> None:
        self.config = config
        self.pool = pool
        self.prefix = config.mqtt.topic_prefix
        c = config.collector
        self.client_id = client_id or c.client_id or f"hq-{c.group}-{socket.gethostname()}-{os.getpid()}"
        self.on_batch = on_batch
        self.login = Login.of(config.database)
        self.stats = Stats()
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self.qos0 = Qos0Buffer(c.qos0_buffer_bytes)
        self._rejections = BoundedLog(log, c.rejections_logged_per_minute,
                                      "%d more rejected message(s) not logged one by one (each is in ingest_errors)")
        self._drops = BoundedLog(log, 1, "%d more QoS 0 message(s) dropped: the QoS 0 buffer was full")
        self._age_pruned_at = -_AGE_PRUNE_EVERY_S
        self._stop = threading.Event()
        self._connected = threading.Event()
        with pool.connection() as conn:
            applied = migrate(conn)
            if applied:
                log.info("database schema: applied %s", ", ".join(applied))
            conn.autocommit = True
            self.zones = load_zones(conn, config.timezones)
        self._host, self._port, _ = parse_broker_url(config.mqtt.url)
        client = make_client(config.mqtt, self.client_id, protocol="5", manual_ack=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- network thread -------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the collector: %s", reason)
            return
        log.info("connected to %s:%s as %s (session present: %s)", self._host, self._port, self.client_id,
                 flags.session_present)
        # Subscribing again on a present session is harmless and covers a session the broker lost.
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in shared_filters(self.config.collector.group, self.prefix)])
        self._connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("broker connection lost (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # An exception here would end paho's network thread; a topic that is not UTF-8 is still kept.
        topic = bytes(message._topic).decode("utf-8", errors="replace")
        payload = bytes(message.payload)
        if message.qos == 0 and not self.qos0.admit(message_cost(topic, payload)):
            self._drops.warning("QoS 0 message on %s dropped: %d bytes already wait (qos0_buffer_bytes)",
                                topic, self.qos0.held)
            return
        self.stats.received += 1
        self._inbox.put(_Message(topic, payload, message.mid, message.qos))

    # -- main thread ----------------------------------------------------------------
    def start(self) -> None:
        """Connect (persistent session, clean start off) and start the network thread."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.config.collector.session_expiry.total_seconds())
        props.ReceiveMaximum = self.config.collector.receive_max()
        props.MaximumPacketSize = self.config.collector.packet_max()
        self.client.connect_async(self._host, self._port, 30, clean_start=False, properties=props)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """True once subscribed on a live connection."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Ask `run()` to finish the batch at hand and return."""
        self._stop.set()

    def run(self) -> Stats:
        """Collect until stop(): batches in, PUBACKs out after each commit."""
        self.start()
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._write_until_done(batch)
                self._rejections.tick()
                self._drops.tick()
                self._prune(rows=False)
        finally:
            self._rejections.flush()
            self._drops.flush()
            self.client.disconnect()
            self.client.loop_stop()
        return self.stats

    def _next_batch(self) -> list[_Message]:
        c = self.config.collector
        try:
            first = self._take(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + c.batch_interval.total_seconds()
        while len(batch) < c.batch_size:
            try:
                batch.append(self._take(timeout=deadline - time.monotonic()))
            except queue.Empty:
                break
        return batch

    def _take(self, timeout: float) -> _Message:
        """The next message of the inbox (queue.Empty after `timeout`); a QoS 0 one leaves the buffer's count."""
        m = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        if m.qos == 0:
            self.qos0.release(message_cost(m.topic, m.payload))
        return m

    def _write_until_done(self, batch: list[_Message]) -> None:
        checked = self._check(batch)
        failures = 0
        while True:
            try:
                written = self._store(checked)
                break
            except psycopg.Error as exc:  # not a refusal of the data: the database may take it later
                failures += 1
                self.stats.db_failures += 1
                self.login.check_refused()  # a password changed under us will not pass by waiting
                delay = min(_RETRY_MAX_S, 0.2 * 2 ** min(failures, 6))
                log.warning("database write of %d message(s) failed (%s); retry in %.1f s, nothing acknowledged",
                            len(batch), _first_line(exc), delay)
                if self._stop.wait(delay):
                    return  # unacknowledged: the broker redelivers them to the next collector session
        for m in batch:
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        s = self.stats
        s.batches += 1
        s.inserted += written.inserted
        s.duplicates += written.duplicates
        s.rejected += written.rejected
        s.last_commit = time.monotonic()
        self._prune(rows=written.rejected > 0)
        if self.on_batch is not None:
            self.on_batch(written)

    def _prune(self, *, rows: bool) -> None:
        """Hold ingest_errors to its caps: by rows after a batch that added some, by age once a minute."""
        c = self.config.collector
        by_age = time.monotonic() - self._age_pruned_at >= _AGE_PRUNE_EVERY_S
        if not rows and not by_age:
            return
        try:
            with self.pool.connection() as conn:
                gone = prune_ingest_errors(conn, c.ingest_errors_max_rows, c.ingest_errors_max_age if by_age else None)
        except psycopg.Error as exc:  # the next batch tries again
            log.warning("pruning ingest_errors failed: %s", _first_line(exc))
            return
        if by_age:
            self._age_pruned_at = time.monotonic()
        if gone:
            log.info("ingest_errors: %d old row(s) deleted (caps: %d rows, %s)", gone, c.ingest_errors_max_rows,
                     c.ingest_errors_max_age)

    def _check(self, batch: list[_Message]) -> list[_Checked]:
        now = datetime.now(UTC)
        c = self.config.collector
        checked = []
        for m in batch:
            outcome = parse(m.topic, m.payload, prefix=self.prefix, now=now, tz_for=self.zones,
                            max_bytes=c.max_message_bytes, max_future=c.max_future, max_past=c.max_past,
                            max_booking_ahead=c.max_booking_ahead)
            if isinstance(outcome, Rejection):
                self._rejections.warning("rejected %s: %s", outcome.topic, outcome.reason)
            elif outcome.table == "status" and outcome.values["timezone"]:
                self.zones.learn(outcome.store_id, outcome.values["timezone"])
            checked.append(_Checked(m, outcome))
        return checked

    def _store(self, checked: list[_Checked]) -> Written:
        """Write the batch; a message the database refuses is split out and kept as an ingest error."""
        with self.pool.connection() as conn:
            written, refused = write_bisecting(checked, lambda items: self._write(conn, items))
            if not refused:
                return written
            parked = [self._park(item, exc) for item, exc in refused]
            try:
                write_batch(conn, [], parked, {})
            except Exception as exc:
                if not is_refusal(exc):
                    raise
                log.error("%d refused message(s) could not be kept as ingest errors either (%s); dropped",
                          len(parked), _first_line(exc))
            self.stats.refused += len(parked)
            return add(written, Written(0, 0, len(parked)))

    def _write(self, conn: psycopg.Connection, items: Sequence[_Checked]) -> Written:
        rows = [i.outcome for i in items if isinstance(i.outcome, Row)]
        rejections = [i.outcome for i in items if isinstance(i.outcome, Rejection)]
        zones = {r.store_id: self.zones.names[r.store_id] for r in rows}
        return write_batch(conn, rows, rejections, zones)

    @staticmethod
    def _park(item: _Checked, exc: BaseException) -> Rejection:
        m = item.message
        store = item.outcome.store_id if isinstance(item.outcome, Row) else item.outcome.topic_store_id
        log.warning("the database refused a message on %s (%s); kept as an ingest error", m.topic, _first_line(exc))
        return rejection(m.topic, store, f"refused by the database: {_first_line(exc)}", m.payload)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
