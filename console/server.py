"""The guide console: arrival pop-ups and today's counts in the browser (`footfall console`).

A small web server from the standard library. It subscribes to the store's
alerts, counts and status on the broker (its own paho client, never the
daemon's), keeps a short replay in memory, and streams everything to the
browsers over Server-Sent Events (`GET /events`). A guide who presses "taking
care of it" sends `POST /ack`, which is published on `alerts/ack` (QoS 1) and
shown on every open page. From the box's retained status and counts it works out what keeps an
online box from counting (console/health.py) and shows it too. See docs/console.md.

Access: a login page (the shared password, or a guide's own token) gives an
HttpOnly, SameSite=Strict session cookie holding a random token kept in memory
only; every other route needs it. Without a configured login the console does
not start. No face image is ever received, shown or stored.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, deque
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from footfall import __version__
from footfall.config.schema import Config, ConfigError
from footfall.console import icons
from footfall.console.health import box_problems
from footfall.console.limits import AckBook
from footfall.console.messages import MAX_ID, Dropped, parse_message
from footfall.sync import events
from footfall.sync.mqtt_client import make_client, parse_broker_url
from footfall.web.access import Logins, same_origin
from footfall.web.app import AppHandler
from footfall.web.limits import HashingGate, LoginLimiter
from footfall.web.passwords import verify_password
from footfall.web.server import PageServer, parse_listen, serve_until_interrupted
from footfall.web.sessions import Session, SessionBook

log = logging.getLogger(__name__)

COOKIE = "footfall_console"
SESSION_TTL_S = 12 * 3600          # one shift; then log in again
HEARTBEAT_S = 15.0                 # an SSE comment this often keeps proxies and the page's watchdog happy
REPLAY_ALERTS = 30                 # recent alerts sent to a page when it (re)connects
MAX_BODY = 4096
LOGIN_FAILURE_DELAY_S = 0.5        # slows down password guessing (per request thread)
MAX_SESSIONS = 1000                # logged-in sessions kept; logins are rate-limited anyway
SESSION_EXPIRY_S = 600             # the broker keeps our subscriptions (and queued alerts) through a short outage
HEALTH_EVERY_S = 15.0              # the box's problems are looked at again this often (time alone can raise one)

# Topics streamed to the page, and the SSE event each becomes.
ALERT_KINDS = {events.ALERT_ARRIVAL: "arrival", events.ALERT_APPOINTMENT: "appointment",
               events.ALERT_NO_SHOW: "no_show"}
# members/deleted: an erased member's cards leave the console and every open page at once.
SUBSCRIBED = (*ALERT_KINDS, events.COUNTS, events.STATUS, events.ALERT_ACK, events.MEMBERS_DELETED)

# -- server-sent events -------------------------------------------------------------------

def sse_frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE message: `event:`, optional `id:`, the JSON data (one `data:` line per line), blank line."""
    if not event or any(c in event for c in "\r\n:"):
        raise ValueError(f"bad SSE event name {event!r}")
    lines = [f"event: {event}"]
    if event_id is not None:
        if any(c in event_id for c in "\r\n\0"):
            raise ValueError(f"bad SSE id {event_id!r}")
        lines.append(f"id: {event_id}")
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    lines += [f"data: {line}" for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


# -- the console ---------------------------------------------------------------------------

def require_login(config: Config) -> None:
    """A guide console without a login must not exist."""
    if not config.console.password_hash and not config.console.guides:
        raise ConfigError("console.password_hash: no login configured; set console.password_hash "
                          "(from `footfall console --hash-password`) or console.guides")


def guide_logins(config: Config) -> Logins:
    """console.guides and console.password_hash as Logins; ConfigError for two guide names that
    are one name once normalised, or a name that cannot be shown."""
    try:
        return Logins(config.console.guides, config.console.password_hash)
    except ValueError as exc:
        raise ConfigError(f"console.guides: {exc}") from None


# SSE event of each subscribed topic name, and how its payload is checked.
_KIND = {**{name: "alert" for name in ALERT_KINDS}, events.COUNTS: "counts", events.STATUS: "status",
         events.ALERT_ACK: "ack", events.MEMBERS_DELETED: "erasure"}


class _Listener:
    """One page's stream: a queue of at most `limit` bytes (one frame always fits); a page that
    falls further behind is dropped, not buffered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = False
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def offer(self, frame: bytes) -> bool:
        """Queue `frame`; False (and the listener dropped) if the queue would grow past the limit."""
        with self._cond:
            if self.dropped:
                return False
            if self._frames and self._bytes + len(frame) > self.limit:
                self.dropped = True
                self._frames.clear()
                self._bytes = 0
                self._cond.notify_all()
                return False
            self._frames.append(frame)
            self._bytes += len(frame)
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> bytes | None:
        """The next frame; None after `timeout` with nothing queued, or once dropped."""
        with self._cond:
            self._cond.wait_for(lambda: self._frames or self.dropped, timeout)
            if self.dropped or not self._frames:
                return None
            frame = self._frames.popleft()
            self._bytes -= len(frame)
            return frame

    def close(self) -> None:
        with self._cond:
            self.dropped = True
            self._cond.notify_all()


class Console:
    """The broker side (subscriptions, acks) and the page side (sessions, SSE listeners) of the console."""

    def __init__(self, config: Config, listen: str | None = None) -> None:
        require_login(config)
        self.config = config
        cc = config.console
        self.store_id = config.store_id
        self.prefix = config.mqtt.topic_prefix
        self.zone = ZoneInfo(config.timezone)
        self.language = cc.language
        self.host, self.port = parse_listen(listen or cc.listen)
        self.sessions = SessionBook(COOKIE, SESSION_TTL_S, MAX_SESSIONS)
        self.failure_delay = LOGIN_FAILURE_DELAY_S
        self.limiter = LoginLimiter(failures_free=cc.login_failures_free,
                                    backoff=cc.login_backoff.total_seconds(),
                                    backoff_max=cc.login_backoff_max.total_seconds(),
                                    per_minute=cc.login_per_minute, max_clients=cc.login_clients_tracked)
        self.hashing = HashingGate(cc.login_concurrency, "console-login")
        self._logins = guide_logins(config)
        self.allowed_hosts = cc.allowed_hosts

        self._lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._alerts: deque[dict[str, Any]] = deque(maxlen=REPLAY_ALERTS)
        self._acks = AckBook(cc.max_acks, lambda: datetime.now(self.zone).date())
        self._counts: dict[str, Any] | None = None
        self._status: dict[str, Any] | None = None
        self._health: list[dict[str, Any]] = []   # what keeps the box from counting (console/health.py)
        self._broker_since: datetime | None = None
        self._stopping = threading.Event()
        self._broker_connected = False
        self._broker_error: str | None = None
        self.dropped: Counter[str] = Counter()   # broker messages dropped, by reason
        self.streams_dropped = 0                 # pages disconnected for falling behind

        self._client = self._make_client()
        self._httpd: PageServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Console:
        cc = self.config.console
        handler = type("Handler", (_Handler,), {"app": self, "timeout": cc.request_timeout.total_seconds()})
        self._httpd = PageServer((self.host, self.port), handler, max_connections=cc.max_connections,
                                 request_timeout=cc.request_timeout.total_seconds(), label="console")
        self.port = self._httpd.server_address[1]
        self._http_thread = threading.Thread(target=self._httpd.serve_forever, name="console-http", daemon=True)
        self._http_thread.start()
        threading.Thread(target=self._watch_health, name="console-health", daemon=True).start()
        self._client.loop_start()
        log.info("console: listening on http://%s:%d, broker %s", self.host, self.port, self.config.mqtt.url)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._client.disconnect()
        self._client.loop_stop()
        self.hashing.close()

    def serve_forever(self) -> int:
        """Serve until Ctrl-C; 0 for the command's exit status."""
        return serve_until_interrupted(self)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def broker_connected(self) -> bool:
        return self._broker_connected

    @property
    def open_connections(self) -> int:
        return self._httpd.open_connections() if self._httpd is not None else 0

    # -- MQTT -------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return events.topic(self.prefix, self.store_id, name)

    def _make_client(self) -> paho.Client:
        # The console's own broker user (its ACL allows only what the console needs).
        mq, cc = self.config.console_mqtt(), self.config.console
        host, port, _ = parse_broker_url(mq.url)
        v5 = mq.protocol == "5"
        client = make_client(mq, cc.mqtt_client_id or f"footfall-console-{self.store_id}", persistent=True)
        client.suppress_exceptions = True
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            client.connect_async(host, port, 30, clean_start=False, properties=props)
        else:
            client.connect_async(host, port, 30)
        return client

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._set_broker(False, f"broker refused the connection: {reason}")
            return
        client.subscribe([(self.topic(name), 1) for name in SUBSCRIBED])
        self._set_broker(True, None)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._set_broker(False, f"disconnected: {reason}")

    def _set_broker(self, connected: bool, error: str | None) -> None:
        with self._lock:
            changed = connected != self._broker_connected
            self._broker_connected, self._broker_error = connected, error
            self._broker_since = datetime.now(self.zone) if connected else None
        if changed:
            log.info("console: broker %s", "connected" if connected else f"lost ({error})")
        self._broadcast(sse_frame("broker", {"connected": connected}))
        self.check_health()

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        name = events.store_topic_name(self.prefix, self.store_id, message.topic)
        kind = _KIND.get(name) if name is not None else None
        if name is None or kind is None:
            return
        try:
            payload = parse_message(kind, bytes(message.payload), self.config.console.max_message_bytes, name)
        except Dropped as exc:
            self._drop(name, exc.reason)
            return
        if kind == "alert":
            alert = {**payload, "kind": ALERT_KINDS[name]}
            event_id = alert["event_id"]
            with self._lock:
                if any(a["event_id"] == event_id for a in self._alerts):
                    return  # a re-sent alert: consumers de-duplicate on event_id
                self._alerts.append(alert)
            self._broadcast(sse_frame("alert", alert, event_id))
        elif kind == "counts":
            with self._lock:
                self._counts = payload
            self._broadcast(sse_frame("counts", payload))
            self.check_health()
        elif kind == "status":
            with self._lock:
                self._status = payload
            self._broadcast(sse_frame("status", payload))
            self.check_health()
        elif kind == "erasure":
            self.forget_member(payload["member_id"])
        else:
            self._record_ack(payload)

    def check_health(self) -> list[dict[str, Any]]:
        """Look again at what keeps the box from counting (console/health.py); open pages hear of
        a change (the `health` event). Returns the problems."""
        cc = self.config.console
        with self._lock:
            problems = box_problems(self._status, self._counts, datetime.now(self.zone), hours=cc.opening_hours,
                                    quiet_after=cc.quiet_after, broker_since=self._broker_since)
            changed, self._health = problems != self._health, problems
        if changed:
            log.info("console: store box problems: %s", ", ".join(p["problem"] for p in problems) or "none")
            self._broadcast(sse_frame("health", {"problems": problems}))
        return problems

    def _watch_health(self) -> None:
        while not self._stopping.wait(HEALTH_EVERY_S):
            self.check_health()

    def forget_member(self, member_id: str) -> int:
        """An erased member: their alerts leave the replay, and every open page drops their cards
        at once (the `erased` event). Returns how many alerts were dropped."""
        with self._lock:
            kept = [a for a in self._alerts if a.get("member_id") != member_id]
            dropped = len(self._alerts) - len(kept)
            self._alerts.clear()
            self._alerts.extend(kept)
        # Sent even when the replay held nothing: a page may show cards older than the replay.
        self._broadcast(sse_frame("erased", {"member_id": member_id}))
        log.info("console: a member was erased; %d alert(s) dropped from the replay and open pages told", dropped)
        return dropped

    def _drop(self, name: str, reason: str) -> None:
        """Count a dropped message; log the first of each topic and reason only (the set is fixed, so bounded)."""
        key = f"{name}: {reason}"
        with self._lock:
            self.dropped[key] += 1
            first = self.dropped[key] == 1
        if first:
            log.warning("console: dropped a message on %s (%s); further ones like it are only counted", name, reason)

    def _record_ack(self, ack: dict[str, Any]) -> dict[str, Any]:
        """The first ack of a visit wins; returns the one kept."""
        with self._lock:
            kept = self._acks.record(ack)
        if kept is ack:
            self._broadcast(sse_frame("ack", ack))
        return kept

    def acknowledge(self, visit_event_id: str, guide: str) -> tuple[bool, dict[str, Any]]:
        """Publish `alerts/ack` for an arrival, once per visit: (False, existing ack) if someone took
        it already or is taking it right now."""
        ack = events.Ack(visit_event_id, guide, store_id=self.store_id, ts=datetime.now(self.zone)).to_json()
        with self._lock:
            existing = self._acks.reserve(visit_event_id, ack)
        if existing is not None:
            return False, existing
        try:
            body = json.dumps(ack, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            info = self._client.publish(self.topic(events.ALERT_ACK), body, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"cannot publish the ack: {paho.error_string(info.rc)}")
            kept = self._record_ack(ack)
        finally:
            with self._lock:
                self._acks.release(visit_event_id)
        # Our own ack may come back from the broker before this thread records it: same event_id.
        return kept.get("event_id") == ack["event_id"], kept

    @property
    def acks_kept(self) -> int:
        with self._lock:
            return len(self._acks)

    # -- page side --------------------------------------------------------------------------

    def replay(self, session: Session) -> list[bytes]:
        """What a page gets on (re)connecting: who it is, the broker state, status, counts, recent
        alerts and today's acks of those alerts."""
        with self._lock:
            frames = [sse_frame("hello", {"guide": session.user, "store_id": self.store_id,
                                          "language": self.language, "timezone": self.config.timezone}),
                      sse_frame("broker", {"connected": self._broker_connected})]
            if self._status is not None:
                frames.append(sse_frame("status", self._status))
            if self._counts is not None:
                frames.append(sse_frame("counts", self._counts))
            frames.append(sse_frame("health", {"problems": self._health}))
            frames += [sse_frame("alert", a, a["event_id"]) for a in self._alerts]
            visits = {a["visit_event_id"] for a in self._alerts if a.get("visit_event_id")}
            frames += [sse_frame("ack", a) for a in self._acks.for_visits(visits)]
        return frames

    def listen(self) -> _Listener:
        listener = _Listener(self.config.console.stream_queue_bytes)
        with self._lock:
            self._listeners.append(listener)
        return listener

    def unlisten(self, listener: _Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _broadcast(self, frame: bytes) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            if not listener.offer(frame):
                self.unlisten(listener)
                with self._lock:
                    self.streams_dropped += 1
                log.info("console: a page fell %d bytes behind; its stream is closed", listener.limit)

    def login(self, name: str, secret: str) -> str | None:
        """The guide's name if `secret` is that guide's own token, or the shared password for a name
        that is not a configured guide; else None. Every call with a secret verifies exactly one hash."""
        return self._logins.check(name, secret, verify_password)


# -- HTTP ----------------------------------------------------------------------------------

_STATIC = {"/console.js": ("console.js", "text/javascript; charset=utf-8"),
           "/console.css": ("console.css", "text/css; charset=utf-8"),
           "/icon.svg": ("icon.svg", "image/svg+xml")}
_ICONS = {f"/icon-{size}.png": size for size in icons.PNG_SIZES}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class _Handler(AppHandler):
    app: Console
    server_version = f"footfall-console/{__version__}"
    security_headers = _SECURITY_HEADERS
    log_label = "console http"
    package = "footfall.console"
    static = _STATIC
    hosts_setting = "console.allowed_hosts"
    app_name = "Guide console"

    # -- helpers ---------------------------------------------------------------------------

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY:
            return None
        body = self.rfile.read(length)
        self._request_read()
        return body

    # -- routes ----------------------------------------------------------------------------

    def _get_public(self, path: str) -> bool:
        # The page's icons and manifest need no session (a manifest is fetched without cookies).
        if path in _ICONS:
            self._send(HTTPStatus.OK, icons.png(_ICONS[path]), "image/png")
        elif path == "/manifest.webmanifest":
            self._send(HTTPStatus.OK, icons.manifest(self.app.language), "application/manifest+json")
        else:
            return False
        return True

    def _get(self, path: str, query: str, session: Session) -> bool:
        if path != "/events":
            return False
        self._events(session)
        return True

    def do_POST(self) -> None:
        body = self._body()   # read first: closing on an unread body would reset the answer
        if not self._host_ok():
            return
        if not same_origin(self.headers):
            self._json(HTTPStatus.FORBIDDEN, {"error": "cross-origin request refused"})
            return
        path = urlsplit(self.path).path
        if path == "/login":
            self._login(parse_qs(body.decode("utf-8", "replace")) if body is not None else {})
            return
        session = self._session()
        if session is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "login required"})
        elif path == "/ack":
            self._ack(session, body)
        elif path == "/logout":
            self._logout()
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _ack(self, session: Session, body: bytes | None) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "Content-Type must be application/json"})
            return
        try:
            request = json.loads(body or b"")
            visit_event_id = request["visit_event_id"]
            if not isinstance(visit_event_id, str) or not 0 < len(visit_event_id) <= MAX_ID \
                    or not visit_event_id.isprintable():
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "visit_event_id: a non-empty string is required"})
            return
        if not self.app.broker_connected:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "broker offline"})
            return
        try:
            taken, ack = self.app.acknowledge(visit_event_id, session.user)
        except ConnectionError as exc:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            return
        self._json(HTTPStatus.OK if taken else HTTPStatus.CONFLICT, ack)

    def _events(self, session: Session) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Connection", "close")
        for key, value in _SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return   # the headers only: a HEAD never becomes a stream
        self.server.streaming(self.connection)
        listener = self.app.listen()
        try:
            self.wfile.write(b"retry: 2000\n\n" + b"".join(self.app.replay(session)))
            self.wfile.flush()
            while True:
                frame = listener.take(HEARTBEAT_S)
                if listener.dropped:
                    return
                if frame is None:
                    frame = b": ping\n\n"
                if self.app.sessions.check(self.headers.get("Cookie")) is None:
                    return  # logged out or expired: the page goes back to the login
                self.wfile.write(frame)
                self.wfile.flush()
        except OSError:
            return   # the page went away, or stalled past console.request_timeout on a write
        finally:
            self.app.unlisten(listener)
