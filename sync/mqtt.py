"""The MQTT publisher: the outbox to the broker, QoS 1, in order, with an availability status.

One thread owns the paho client: it connects (backing off with jitter, so a
broker restart does not bring every store back at the same instant), runs the
network loop, and drains the outbox with at most `max_in_flight` messages
awaiting their PUBACK. A row is marked sent only on its PUBACK; on a lost
connection everything unacknowledged is replayed from the outbox after the
reconnect, oldest first, so order per topic holds and an alert that expired in
the meantime is never sent. Consumers de-duplicate on `event_id` (a replayed
message may already have reached the broker).

Availability (CONTRACT, "status"): the last will is a retained "offline",
"online" is published on every connect and "stopped" on a clean stop. Each
connection is armed with a will of its own, and the will and every "online" of
that connection carry the same `ts`, the moment it was opened: a consumer that
keeps the newest status (ties going to the later message, as head office does)
ends with the will when the box dies, and a later connection's "online" is newer. The
session is persistent (stable client id, no clean start, MQTT 5 session
expiry), so downlink messages sent while the box is offline wait at the broker.

Downlink messages are acknowledged by hand (`manual_ack`): the handler gets an `Ack` with each
QoS 1 message and hands it to `ack()` once the message was handled. Until then the broker
keeps it, and redelivers it after a reconnect or a restart; with `receive_maximum` (MQTT 5) the
broker sends no more than that many unacknowledged at once, so a burst waits at the broker
instead of in the box's memory. As a broker may send more than that (Mosquitto 2.0 does once
acknowledgements flow), the thread also stops reading from the socket while `room()` says the
handler is full: TCP then holds the broker back, and the box's memory stays bounded whatever the
broker does. Acknowledgements, publishes and keepalives still go out meanwhile. An acknowledgement is sent only on the connection the message
came on (a packet id means nothing on the next one): a message handled across a reconnect is
redelivered and handled again, so downlink handling must be idempotent.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from footfall.config.schema import MqttConfig
from footfall.storage.sqlite import StorageError
from footfall.sync import events
from footfall.sync.mqtt_client import make_client, parse_broker_url
from footfall.sync.outbox import Outbox, Row

log = logging.getLogger(__name__)
T = TypeVar("T")
paho_log = logging.getLogger(__name__ + ".paho")

SESSION_EXPIRY_S = 7 * 24 * 3600  # downlink kept by the broker for a box offline up to a week
MAX_IN_FLIGHT = 20
KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 10.0
_TICK_S = 0.05   # longest network-loop wait: bounds how late a new outbox row is noticed
_POLL_S = 0.5    # rows added without submit() are found at least this often
_HOLD_S = 0.005  # while the downlink handler is full: how often room() is asked again
_AUTH_REASONS = {"Bad user name or password", "Not authorized"}


def describe_connect_error(exc: BaseException, host: str, port: int) -> str:
    """A connection failure in words an installer can act on."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the certificate of {where} was not accepted ({exc.verify_message or exc}); "
                f"check mqtt.ca_file and the broker's host name")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with {where} failed ({exc.reason or exc}); check mqtt.ca_file, "
                f"mqtt.cert_file, mqtt.key_file and that the broker speaks TLS on that port")
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections at {where} (is the broker running?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker host {host!r}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(exc, OSError):
        return f"cannot connect to {where}: {exc.strerror or exc}"
    return f"cannot connect to {where}: {exc!r}"


def backoff_delay(failures: int, minimum: float, maximum: float) -> float:
    """Exponential backoff with jitter: between half and all of min * 2^(failures-1), capped at max."""
    cap = min(maximum, minimum * 2 ** max(0, failures - 1))
    return random.uniform(cap / 2, cap)


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def publish_packet_size(topic: str, payload: bytes, qos: int, properties: Properties | None, v5: bool) -> int:
    """Bytes of the PUBLISH packet for these (what a broker's Maximum Packet Size is compared with)."""
    remaining = 2 + len(topic.encode("utf-8")) + (2 if qos else 0) + len(payload)
    if v5:
        remaining += len(properties.pack()) if properties is not None else 1
    return 1 + _varint_len(remaining) + remaining


def _json_bytes(payload: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _waiting(items: queue.SimpleQueue[T]) -> Iterator[T]:
    """The items waiting in a queue, taken one by one without blocking, until it is empty."""
    while True:
        try:
            yield items.get_nowait()
        except queue.Empty:
            return


@dataclass(frozen=True)
class Ack:
    """What acknowledges one QoS 1 downlink message: the connection it came on and its packet id."""

    connection: int
    mid: int
    qos: int


@dataclass
class _Direct:
    """A message that is not an event (a counts reply, a status): sent once if connected, never stored."""

    topic: str
    body: bytes
    retain: bool
    qos: int
    properties: Properties | None


class Publisher:
    """Publishes the outbox and the status; subscribes to downlink topics. Start once, stop once."""

    def __init__(self, config: MqttConfig, store_id: str, outbox: Outbox, *, version: str,
                 cameras: Callable[[], dict[str, events.CameraState]],
                 storage: Callable[[], str] | None = None,
                 on_message: Callable[[paho.MQTTMessage, Ack | None], None] | None = None,
                 subscriptions: Sequence[str] = (),
                 max_in_flight: int = MAX_IN_FLIGHT, keepalive: int = KEEPALIVE_S,
                 reconnect_min: float = 1.0, reconnect_max: float = 60.0,
                 session_expiry: int = SESSION_EXPIRY_S, max_attempts: int | None = None,
                 max_incoming: int | None = None, receive_maximum: int | None = None,
                 room: Callable[[], bool] | None = None, timezone: str | None = None) -> None:
        """`max_attempts` (default `mqtt.max_attempts`): a row the broker refused, or that was alone in
        flight when the connection dropped, this many times is dead-lettered. `max_incoming`: the
        largest packet this client takes (sent to an MQTT 5 broker as Maximum Packet Size).
        `on_message(message, ack)` is called on the publisher thread for each downlink message;
        `ack` (None for QoS 0) must be passed to `ack()` once the message was handled.
        `receive_maximum`: QoS 1 messages the broker may have unacknowledged with this client
        (sent to an MQTT 5 broker as Receive Maximum; a 3.1.1 broker applies its own limit).
        `room()`: whether the downlink handler takes messages now; while it says no, nothing is read.
        `timezone`: the store's zone, sent in every status (head office places its days by it)."""
        self.host, self.port, _ = parse_broker_url(config.url)
        self.store_id = store_id
        self.prefix = config.topic_prefix
        self.client_id = config.client_id or f"footfall-{store_id}"
        self.version = version
        self.outbox = outbox
        self.subscriptions = list(subscriptions)
        self.status_topic = events.topic(self.prefix, store_id, events.STATUS)
        self._v5 = config.protocol == "5"
        self._cameras = cameras
        self._storage = storage
        self._timezone = timezone
        self._on_message = on_message
        self._room = room
        self._max_in_flight = max(1, max_in_flight)
        self._reconnect_min, self._reconnect_max = reconnect_min, max(reconnect_min, reconnect_max)
        self._max_attempts = max(1, max_attempts if max_attempts is not None else config.max_attempts)
        self._max_incoming = max_incoming
        self._receive_maximum = None if receive_maximum is None else max(1, min(65535, receive_maximum))

        # Observable state, written by the publisher thread only.
        self.last_error: str | None = None
        self.last_progress = time.monotonic()
        self._connected = False
        self._opened_at: datetime | None = None  # when the current connection was opened: its will's ts

        # The publisher thread's own state.
        self._socket_open = False
        self._failures = 0
        self._next_attempt = 0.0
        self._in_flight: dict[int, int] = {}   # paho mid -> outbox seq
        self._acked: list[int] = []
        self._cursor = 0                       # highest seq handed to paho on this connection
        self._more = True                      # the last pending() call may have left rows behind
        self._next_poll = 0.0
        self._receive_max = self._max_in_flight
        self._broker_max_packet: int | None = None  # the broker's Maximum Packet Size (MQTT 5 CONNACK)
        # After a connection dropped with rows in flight, rows go one at a time until `_probe` rows
        # were acknowledged, so a row that makes the broker close the connection is found alone.
        self._probe = 0
        self._strikes: dict[int, int] = {}      # outbox seq -> failed attempts
        self._stopped_mid: int | None = None
        self._stopped_acked = False

        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = 0.0      # stop(): the "stopped" status and the DISCONNECT by then
        self._drain_until = 0.0   # stop(): new rows are sent until then
        self._direct: queue.SimpleQueue[_Direct] = queue.SimpleQueue()
        self._acks: queue.SimpleQueue[Ack] = queue.SimpleQueue()
        self._connection = 0  # counts successful connections: an Ack is valid on its own only

        self._client = self._make_client(config, keepalive, session_expiry)

    # -- public API ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session with the broker is established (CONNACK accepted)."""
        return self._connected

    def start(self) -> None:
        """Start the publisher thread; it connects and keeps reconnecting until stop()."""
        if self._thread is not None:
            raise RuntimeError("the publisher was already started")
        self._thread = threading.Thread(target=self._run, name="footfall-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop cleanly: send what can be sent within `timeout`, publish "stopped", disconnect.

        A normal DISCONNECT, so the broker discards the "offline" last will.
        Whatever was not acknowledged stays in the outbox for the next start.
        """
        if self._thread is None:
            return
        timeout = max(0.0, timeout)
        self._deadline = time.monotonic() + timeout
        # Keep part of the time for the "stopped" status and its PUBACK.
        self._drain_until = self._deadline - min(1.0, 0.25 * timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + CONNECT_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("mqtt: the publisher thread did not stop within %.1f s", timeout)

    def notify(self) -> None:
        """Rows were added to the outbox: look now rather than at the next poll."""
        self._wake.set()

    def publish_now(self, topic: str, payload: dict[str, Any] | str | bytes, *, retain: bool = False,
                    qos: int = 0, properties: Properties | None = None, correlation: bytes | None = None) -> None:
        """Publish something that is not an event (a counts reply): not persisted, dropped when offline.

        `correlation`: the Correlation Data of the request answered, added to `properties`.
        """
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if correlation is not None:
            properties = properties or Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        self._direct.put(_Direct(topic, _json_bytes(payload), retain, qos, properties if self._v5 else None))
        self._wake.set()

    def ack(self, ack: Ack) -> None:
        """Acknowledge a downlink message that was handled (thread-safe; sent by the publisher thread).

        Dropped if the connection it came on has gone: the broker redelivers the message.
        """
        self._acks.put(ack)
        self._wake.set()

    def refresh_status(self) -> None:
        """Publish "online" again with the cameras' current states (call when a camera changes state)."""
        self.publish_now(self.status_topic, self._status("online").to_json(), retain=True, qos=1)

    def wait_sent(self, timeout: float) -> bool:
        """Wait until the outbox holds nothing unsent; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self.outbox.stats().pending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # -- setup -----------------------------------------------------------------------

    def _make_client(self, config: MqttConfig, keepalive: int, session_expiry: int) -> paho.Client:
        client = make_client(config, self.client_id, protocol="5" if self._v5 else "3.1.1", persistent=True,
                             manual_ack=True)
        client.on_log = self._on_log
        client.suppress_exceptions = True  # a bug in a callback is logged, never unwinds the network loop
        client.max_inflight_messages_set(0)  # the window is ours (it must survive replays), not paho's
        client.connect_timeout = CONNECT_TIMEOUT_S
        self._arm_will(client)
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
            if self._max_incoming is not None:
                props.MaximumPacketSize = self._max_incoming  # the broker drops larger messages for us
            if self._receive_maximum is not None:
                props.ReceiveMaximum = self._receive_maximum
            client.connect_async(self.host, self.port, keepalive, clean_start=False, properties=props)
        else:
            client.connect_async(self.host, self.port, keepalive)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_downlink
        return client

    def _arm_will(self, client: paho.Client) -> None:
        """Before each connection: a will stamped with the moment it is opened. Every "online" of
        that connection carries the same `ts`, so the will is never older than one of them."""
        self._opened_at = self.outbox.now()
        client.will_set(self.status_topic, _json_bytes(self._status("offline", cameras={}).to_json()),
                        qos=1, retain=True)

    def _status(self, state: events.BoxState, cameras: dict[str, events.CameraState] | None = None) -> events.Status:
        if cameras is None:
            try:
                cameras = dict(self._cameras())
            except Exception:
                log.exception("mqtt: cannot read the cameras' states for the status message")
                cameras = {}
        storage = None
        if self._storage is not None and state != "offline":
            try:
                storage = self._storage()
            except Exception:
                log.exception("mqtt: cannot read the storage state for the status message")
        dead = self.outbox.dead_letters if state != "offline" else None
        backlog = None
        if state != "offline":  # the will is armed before the connection: its backlog would be stale
            try:
                backlog = self.outbox.stats().pending
            except Exception:
                log.exception("mqtt: cannot count the outbox backlog for the status message")
        # "stopped" is the box's last word at its own time; "online" and the will share the connection's.
        ts = self._opened_at if state != "stopped" and self._opened_at is not None else self.outbox.now()
        return events.Status(state, self.version, cameras, storage, dead_letters=dead, outbox_backlog=backlog,
                             timezone=self._timezone, store_id=self.store_id, ts=ts)

    # -- the publisher thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._stop.is_set() and self._finish():
                    return
                if not self._socket_open:
                    self._connect_when_due()
                    continue
                if self._client.socket() is None:  # paho closed it while we published
                    self._lost(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                    continue
                if self._connected and self._room is not None and not self._stop.is_set() and not self._room():
                    self._hold()
                    continue
                rc = self._client.loop(_TICK_S)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._lost(rc)
                    continue
                self._record_acks()
                if self._connected:
                    self._send_acks()
                    self._send_direct()
                    if self._stopped_mid is None:
                        self._fill_window()
                if not self._in_flight:
                    self.last_progress = time.monotonic()  # idle and healthy
            except Exception as exc:
                log.exception("mqtt: unexpected error in the publisher thread")
                self.last_error = f"publisher error: {exc!r}"
                self._connected = False
                self._socket_open = False
                if self._stop.is_set():
                    return  # what is unsent stays in the outbox
                self._schedule_retry()

    def _hold(self) -> None:
        """The downlink handler is full: read nothing (the broker keeps the rest), write what is due."""
        self._send_acks()
        rc = self._client.loop_write() if self._client.want_write() else MQTTErrorCode.MQTT_ERR_SUCCESS
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_misc()  # keepalive: a hold longer than it drops the connection
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._lost(rc)
            return
        self.last_progress = time.monotonic()
        self._stop.wait(_HOLD_S)

    def _connect_when_due(self) -> None:
        self.last_progress = time.monotonic()  # waiting for the broker is not a wedged thread
        self._drop_direct()
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._stop.wait(min(wait, 0.5))
            return
        try:
            self._arm_will(self._client)
            self._client.reconnect()
        except (OSError, ValueError) as exc:
            self._refused(describe_connect_error(exc, self.host, self.port))
            self._schedule_retry()
            return
        self._socket_open = True

    def _lost(self, rc: MQTTErrorCode) -> None:
        self._socket_open = False
        self._connected = False
        self._record_acks()
        if self._in_flight:
            if self._probe and len(self._in_flight) == 1:
                (seq,) = self._in_flight.values()
                self._strike(seq, "it was the only message in flight when the connection dropped")
            self._probe = self._max_in_flight
        self._schedule_retry()
        log.debug("mqtt: network loop ended: %s", paho.error_string(rc))

    def _refused(self, why: str) -> None:
        if why != self.last_error:
            log.error("mqtt: %s; retrying with backoff", why)
        self.last_error = why

    def _schedule_retry(self) -> None:
        self._failures += 1
        self._next_attempt = time.monotonic() + backoff_delay(self._failures, self._reconnect_min, self._reconnect_max)

    def _record_acks(self) -> None:
        if not self._acked:
            return
        acked, self._acked = self._acked, []
        try:
            self.outbox.mark_sent(*acked)
        except StorageError as exc:
            # They stay unsent and are replayed after the next reconnect: duplicates, never losses.
            self.last_error = str(exc)
            log.error("mqtt: %s", exc)

    def _window(self) -> int:
        if self._probe:
            return 1
        return max(1, min(self._max_in_flight, self._receive_max))

    def _strike(self, seq: int, why: str) -> None:
        """One more failed attempt for a row; at `max_attempts` it is dead-lettered."""
        self._strikes[seq] = strikes = self._strikes.get(seq, 0) + 1
        if strikes >= self._max_attempts:
            self._dead_letter(seq, f"{strikes} failed attempts; the last: {why}")

    def _dead_letter(self, seq: int, why: str) -> None:
        self._strikes.pop(seq, None)
        try:
            self.outbox.dead_letter(seq, why)
        except StorageError as exc:
            self.last_error = str(exc)
            log.error("mqtt: %s", exc)
            return
        self.refresh_status()  # status carries the dead_letters count

    def _fill_window(self) -> None:
        room = self._window() - len(self._in_flight)
        now = time.monotonic()
        if room <= 0 or not (self._more or self._wake.is_set() or now >= self._next_poll):
            return
        self._wake.clear()
        self._next_poll = now + _POLL_S
        rows = self.outbox.pending(room, after=self._cursor)
        self._more = len(rows) == room
        for row in rows:
            if not self._publish_row(row):
                return

    def _publish_row(self, row: Row) -> bool:
        properties = None
        left = self.outbox.expires_in(row)
        if left is not None and left.total_seconds() <= 0:
            self._cursor = row.seq  # expired since pending(): never sent, deleted at the next replay
            return True
        if self._v5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.PayloadFormatIndicator = 1  # UTF-8 text
            if left is not None:
                # Whole seconds left, never 0 (0 is not "expired", it is an invalid value).
                properties.MessageExpiryInterval = max(1, int(left.total_seconds()))
        body = row.body.encode("utf-8")
        size = publish_packet_size(row.topic, body, 1, properties, self._v5)
        if self._broker_max_packet is not None and size > self._broker_max_packet:
            # The broker would close the connection on it, again and again: it can never be sent.
            self._dead_letter(row.seq, f"{size} bytes, over the broker's Maximum Packet Size "
                                       f"of {self._broker_max_packet} ({row.topic})")
            self._cursor = row.seq
            return True
        info = self._client.publish(row.topic, body, qos=1, retain=row.retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # The connection just went; the row is replayed from the outbox after the reconnect.
            return False
        self._cursor = row.seq
        self._in_flight[info.mid] = row.seq
        return True

    def _send_acks(self) -> None:
        for ack in _waiting(self._acks):
            if ack.connection == self._connection:
                self._client.ack(ack.mid, ack.qos)

    def _drop_direct(self) -> None:
        for msg in _waiting(self._direct):
            log.debug("mqtt: offline, not sending the message for %s", msg.topic)

    def _send_direct(self) -> None:
        for msg in _waiting(self._direct):
            size = publish_packet_size(msg.topic, msg.body, msg.qos, msg.properties, self._v5)
            if self._broker_max_packet is not None and size > self._broker_max_packet:
                log.error("mqtt: not sending %d bytes to %s: over the broker's Maximum Packet Size of %d",
                          size, msg.topic[:120], self._broker_max_packet)
                continue
            self._client.publish(msg.topic, msg.body, qos=msg.qos, retain=msg.retain, properties=msg.properties)

    def _finish(self) -> bool:
        """Called while stopping: True once the thread may exit."""
        if not self._connected:
            self._close()
            return True
        if self._stopped_mid is None and (time.monotonic() >= self._drain_until or self._drained()):
            info = self._client.publish(self.status_topic, _json_bytes(self._status("stopped").to_json()),
                                        qos=1, retain=True)
            self._stopped_mid = info.mid
        if self._stopped_mid is not None and (self._stopped_acked or time.monotonic() >= self._deadline):
            self._record_acks()
            self._send_acks()
            self._client.disconnect()  # a normal DISCONNECT: the broker discards the last will
            self._close()
            return True
        return False

    def _drained(self) -> bool:
        return not self._in_flight and not self._more and not self.outbox.pending(1, after=self._cursor)

    def _close(self) -> None:
        if self._socket_open and not self._connected:
            self._client.disconnect()  # a connection attempt still waiting for its CONNACK
        self._connected = False
        self._socket_open = False
        try:
            log.info("mqtt: stopped; %d row(s) left in the outbox", self.outbox.stats().pending)
        except Exception:
            log.info("mqtt: stopped")

    # -- paho callbacks (run on the publisher thread, inside client.loop) ----------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: paho.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            hint = "; check mqtt.username and mqtt.password" if str(reason) in _AUTH_REASONS else ""
            self._refused(f"broker {self.host}:{self.port} refused the connection: {reason}{hint}")
            return
        # Unacknowledged messages are replayed from the outbox rather than by paho, so that an
        # alert gets its remaining lifetime again, and one that ran out is not sent at all.
        client.drop_out_messages()
        self._connection += 1
        self._in_flight.clear()
        self._cursor = 0
        self._more = True
        self._receive_max = getattr(properties, "ReceiveMaximum", 65535) if properties is not None else 65535
        self._broker_max_packet = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        self._connected = True
        self._failures = 0
        self.last_error = None
        self.last_progress = time.monotonic()
        client.publish(self.status_topic, _json_bytes(self._status("online").to_json()), qos=1, retain=True)
        if self.subscriptions:
            if self._v5:
                # Retain handling 2: retained messages are never sent on (re)subscribing, so a stale
                # command left retained at the broker is not applied again at every reconnect.
                options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
                client.subscribe([(t, options) for t in self.subscriptions])
            else:
                client.subscribe([(t, 1) for t in self.subscriptions])
        log.info("mqtt: connected to %s:%d as %s (session present: %s)", self.host, self.port,
                 self.client_id, flags.session_present)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: paho.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        if self._connected and not self._stop.is_set():
            why = (f"the broker ended the session: {reason}" if flags.is_disconnect_packet_from_server
                   else "the network connection dropped")
            self.last_error = f"connection to {self.host}:{self.port} lost ({why})"
            log.warning("mqtt: %s; unacknowledged events stay in the outbox", self.last_error)
        self._connected = False

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties) -> None:
        if mid == self._stopped_mid:
            self._stopped_acked = True
            return
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return  # a status or a direct message
        if reason.is_failure:
            # Refused by the broker (an ACL, a quota): kept unsent and tried again after the next
            # reconnect, until it has been refused max_attempts times.
            self.last_error = f"broker refused outbox row {seq}: {reason}"
            log.error("mqtt: %s", self.last_error)
            self._strike(seq, f"the broker refused it: {reason}")
            return
        self._strikes.pop(seq, None)
        if self._probe:
            self._probe -= 1
        self._acked.append(seq)
        self.last_progress = time.monotonic()

    def _on_log(self, client: paho.Client, userdata: Any, level: int, message: str) -> None:
        # paho reports every lost connection as an error; we already say it once, in our words.
        # Exceptions it caught in a callback are bugs, and stay errors.
        important = level == paho.MQTT_LOG_ERR and message.startswith("Caught exception")
        paho_log.log(logging.ERROR if important else logging.DEBUG, "%s", message)

    def _on_downlink(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        ack = Ack(self._connection, message.mid, message.qos) if message.qos else None
        if self._on_message is None:
            if ack is not None:
                self.ack(ack)
            return
        try:
            self._on_message(message, ack)
        except Exception:
            # Acknowledged all the same: a message that breaks the handler would otherwise come back
            # at every reconnect, and hold one of the broker's Receive Maximum slots meanwhile.
            log.exception("mqtt: handler failed on a message on %s; acknowledged, not handled", message.topic)
            if ack is not None:
                self.ack(ack)
