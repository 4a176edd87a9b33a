"""The guide console: arrival pop-ups and today's counts in the browser (`footfall console`).

A small web server from the standard library. It subscribes to the store's
alerts, counts and status on the broker (its own paho client, never the
daemon's), keeps a short replay in memory, and streams everything to the
browsers over Server-Sent Events (`GET /events`). A guide who presses "taking
care of it" sends `POST /ack`, which is published on `alerts/ack` (QoS 1) and
shown on every open page. See docs/console.md.

Access: a login page (the shared password, or a guide's own token) gives an
HttpOnly, SameSite=Strict session cookie holding a random token kept in memory
only; every other route needs it. Without a configured login the console does
not start. No face image is ever received, shown or stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from footfall import __version__
from footfall.config.schema import Config, ConfigError
from footfall.sync import events
from footfall.sync.mqtt import apply_credentials, parse_broker_url

log = logging.getLogger(__name__)

COOKIE = "footfall_console"
SESSION_TTL_S = 12 * 3600          # one shift; then log in again
HEARTBEAT_S = 15.0                 # an SSE comment this often keeps proxies and the page's watchdog happy
REPLAY_ALERTS = 30                 # recent alerts sent to a page when it (re)connects
MAX_BODY = 4096
LOGIN_FAILURE_DELAY_S = 0.5        # slows down password guessing (per request thread)
SESSION_EXPIRY_S = 600             # the broker keeps our subscriptions (and queued alerts) through a short outage

# Topics streamed to the page, and the SSE event each becomes.
ALERT_KINDS = {events.ALERT_ARRIVAL: "arrival", events.ALERT_APPOINTMENT: "appointment",
               events.ALERT_NO_SHOW: "no_show"}
SUBSCRIBED = (*ALERT_KINDS, events.COUNTS, events.STATUS, events.ALERT_ACK)

# -- passwords --------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash: "scrypt$N$r$p$salt$key" (salt and key in base64)."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                         maxmem=_SCRYPT_MAXMEM, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt)}${b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches a hash from hash_password(); a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        n_, r_, p_ = int(n), int(r), int(p)
        if not (2 <= n_ <= 2 ** 20 and 1 <= r_ <= 32 and 1 <= p_ <= 16):
            return False
        salt_b, key_b = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
        got = hashlib.scrypt(password.encode("utf-8"), salt=salt_b, n=n_, r=r_, p=p_,
                             maxmem=_SCRYPT_MAXMEM, dklen=len(key_b))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key_b)


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


# -- sessions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    guide: str
    expires: float


class Sessions:
    """Random session tokens kept in memory: a restart logs everybody out."""

    def __init__(self, ttl: float = SESSION_TTL_S) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def create(self, guide: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._by_token = {t: s for t, s in self._by_token.items() if s.expires > now}
            self._by_token[token] = Session(guide, now + self.ttl)
        return token

    def drop(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)

    def check(self, cookie_header: str | None) -> Session | None:
        """The session named by the request's Cookie header, or None (absent, unknown, expired, malformed)."""
        token = cookie_token(cookie_header)
        if token is None:
            return None
        with self._lock:
            for known, session in self._by_token.items():
                if hmac.compare_digest(known, token):
                    return session if session.expires > time.monotonic() else None
        return None


def cookie_token(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    try:
        jar = SimpleCookie(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def set_cookie_header(token: str, max_age: int = SESSION_TTL_S) -> str:
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"


# -- the console ---------------------------------------------------------------------------

_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port); "[::1]:8080" for IPv6."""
    m = _LISTEN.match(value.strip())
    if not m or not 0 <= int(m.group(2)) < 65536:
        raise ValueError(f"listen address must look like HOST:PORT, e.g. 127.0.0.1:8080, got {value!r}")
    return m.group(1).strip("[]"), int(m.group(2))


def require_login(config: Config) -> None:
    """A guide console without a login must not exist."""
    if not config.console.password_hash and not config.console.guides:
        raise ConfigError("console.password_hash: no login configured; set console.password_hash "
                          "(from `footfall console --hash-password`) or console.guides")


class Console:
    """The broker side (subscriptions, acks) and the page side (sessions, SSE listeners) of the console."""

    def __init__(self, config: Config, listen: str | None = None) -> None:
        require_login(config)
        self.config = config
        self.store_id = config.store_id
        self.prefix = config.mqtt.topic_prefix
        self.zone = ZoneInfo(config.timezone)
        self.language = config.console.language
        self.host, self.port = parse_listen(listen or config.console.listen)
        self.sessions = Sessions()

        self._lock = threading.Lock()
        self._listeners: list[queue.SimpleQueue[bytes | None]] = []
        self._alerts: deque[dict[str, Any]] = deque(maxlen=REPLAY_ALERTS)
        self._acks: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, Any] | None = None
        self._status: dict[str, Any] | None = None
        self._broker_connected = False
        self._broker_error: str | None = None

        self._client = self._make_client()
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Console:
        handler = type("Handler", (_Handler,), {"console": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._http_thread = threading.Thread(target=self._httpd.serve_forever, name="console-http", daemon=True)
        self._http_thread.start()
        self._client.loop_start()
        log.info("console: listening on http://%s:%d, broker %s", self.host, self.port, self.config.mqtt.url)
        return self

    def stop(self) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for q in listeners:
            q.put(None)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._client.disconnect()
        self._client.loop_stop()

    def serve_forever(self) -> int:
        self.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
        finally:
            self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def broker_connected(self) -> bool:
        return self._broker_connected

    # -- MQTT -------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return events.topic(self.prefix, self.store_id, name)

    def _make_client(self) -> paho.Client:
        mq = self.config.mqtt
        host, port, tls = parse_broker_url(mq.url)
        client_id = f"footfall-console-{self.store_id}"
        v5 = mq.protocol == "5"
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
                             clean_session=None if v5 else False)
        client.suppress_exceptions = True
        client.reconnect_delay_set(1, 10)
        apply_credentials(client, mq, tls)
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
        if changed:
            log.info("console: broker %s", "connected" if connected else f"lost ({error})")
        self._broadcast(sse_frame("broker", {"connected": connected}))

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            log.warning("console: %s: not JSON, ignored", message.topic)
            return
        if not isinstance(payload, dict):
            return
        name = message.topic.removeprefix(f"{self.prefix}/{self.store_id}/")
        if name in ALERT_KINDS:
            alert = {**payload, "kind": ALERT_KINDS[name]}
            with self._lock:
                event_id = str(alert.get("event_id", ""))
                if any(a.get("event_id") == event_id for a in self._alerts):
                    return  # a re-sent alert: consumers de-duplicate on event_id
                self._alerts.append(alert)
            self._broadcast(sse_frame("alert", alert, event_id or None))
        elif name == events.COUNTS:
            with self._lock:
                self._counts = payload
            self._broadcast(sse_frame("counts", payload))
        elif name == events.STATUS:
            with self._lock:
                self._status = payload
            self._broadcast(sse_frame("status", payload))
        elif name == events.ALERT_ACK:
            self._record_ack(payload)

    def _record_ack(self, ack: dict[str, Any]) -> dict[str, Any]:
        """The first ack of a visit wins; returns the one kept."""
        visit = str(ack.get("visit_event_id", ""))
        with self._lock:
            kept = self._acks.setdefault(visit, ack)
        if kept is ack:
            self._broadcast(sse_frame("ack", ack))
        return kept

    def acknowledge(self, visit_event_id: str, guide: str) -> tuple[bool, dict[str, Any]]:
        """Publish `alerts/ack` for an arrival; (False, existing ack) if someone took it already."""
        with self._lock:
            existing = self._acks.get(visit_event_id)
        if existing is not None:
            return False, existing
        ack = {"visit_event_id": visit_event_id, "guide": guide,
               "ts": events.iso(datetime.now(self.zone)), "event_id": str(uuid.uuid4()), "store_id": self.store_id}
        body = json.dumps(ack, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        info = self._client.publish(self.topic(events.ALERT_ACK), body, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"cannot publish the ack: {paho.error_string(info.rc)}")
        kept = self._record_ack(ack)
        return kept is ack, kept

    # -- page side --------------------------------------------------------------------------

    def replay(self, session: Session) -> list[bytes]:
        """What a page gets on (re)connecting: who it is, the broker state, status, counts, recent alerts, acks."""
        with self._lock:
            frames = [sse_frame("hello", {"guide": session.guide, "store_id": self.store_id,
                                          "language": self.language}),
                      sse_frame("broker", {"connected": self._broker_connected})]
            if self._status is not None:
                frames.append(sse_frame("status", self._status))
            if self._counts is not None:
                frames.append(sse_frame("counts", self._counts))
            frames += [sse_frame("alert", a, str(a.get("event_id") or "") or None) for a in self._alerts]
            frames += [sse_frame("ack", a) for a in self._acks.values()]
        return frames

    def listen(self) -> queue.SimpleQueue[bytes | None]:
        q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        with self._lock:
            self._listeners.append(q)
        return q

    def unlisten(self, q: queue.SimpleQueue[bytes | None]) -> None:
        with self._lock:
            if q in self._listeners:
                self._listeners.remove(q)

    def _broadcast(self, frame: bytes) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for q in listeners:
            q.put(frame)

    def login(self, name: str, secret: str) -> str | None:
        """The guide's name if `secret` is that guide's token or the shared password, else None."""
        name = " ".join(name.split())[:40]
        guides = self.config.console.guides
        if name in guides and verify_password(secret, guides[name]):
            return name
        password_hash = self.config.console.password_hash
        if name and password_hash and verify_password(secret, password_hash):
            return name
        return None


# -- HTTP ----------------------------------------------------------------------------------

_STATIC = {"/console.js": ("console.js", "text/javascript; charset=utf-8"),
           "/console.css": ("console.css", "text/css; charset=utf-8")}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def static_text(name: str) -> str:
    return resources.files("footfall.console").joinpath("static", name).read_text(encoding="utf-8")


class _Handler(BaseHTTPRequestHandler):
    console: Console
    server_version = f"footfall-console/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("console http: %s " + format, self.address_string(), *args)

    # -- helpers ---------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in {**_SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _redirect(self, where: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": where, **(headers or {})})

    def _page(self, name: str, status: int = HTTPStatus.OK, error: bool = False) -> None:
        html = (static_text(name).replace("{{lang}}", self.console.language)
                .replace("{{error_hidden}}", "" if error else "hidden"))
        self._send(status, html.encode("utf-8"), "text/html; charset=utf-8")

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY:
            return None
        return self.rfile.read(length)

    def _session(self) -> Session | None:
        return self.console.sessions.check(self.headers.get("Cookie"))

    # -- routes ----------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in _STATIC:
            name, content_type = _STATIC[path]
            self._send(HTTPStatus.OK, static_text(name).encode("utf-8"), content_type)
        elif path == "/login":
            self._page("login.html")
        elif self._session() is None:
            if path in ("/", "/index.html"):
                self._redirect("/login")
            else:
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "login required"})
        elif path in ("/", "/index.html"):
            self._page("index.html")
        elif path == "/events":
            self._events()
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/login":
            self._login()
            return
        session = self._session()
        if session is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "login required"})
        elif path == "/ack":
            self._ack(session)
        elif path == "/logout":
            token = cookie_token(self.headers.get("Cookie"))
            if token:
                self.console.sessions.drop(token)
            self._redirect("/login", {"Set-Cookie": set_cookie_header("", 0)})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _login(self) -> None:
        body = self._body()
        form = parse_qs(body.decode("utf-8", "replace")) if body is not None else {}
        name = (form.get("name") or [""])[0]
        secret = (form.get("password") or [""])[0]
        guide = self.console.login(name, secret) if secret else None
        if guide is None:
            time.sleep(LOGIN_FAILURE_DELAY_S)
            self._page("login.html", HTTPStatus.UNAUTHORIZED, error=True)
            return
        token = self.console.sessions.create(guide)
        self._redirect("/", {"Set-Cookie": set_cookie_header(token)})

    def _ack(self, session: Session) -> None:
        body = self._body()
        try:
            request = json.loads(body or b"")
            visit_event_id = request["visit_event_id"]
            if not isinstance(visit_event_id, str) or not 0 < len(visit_event_id) <= 128:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "visit_event_id: a non-empty string is required"})
            return
        if not self.console.broker_connected:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "broker offline"})
            return
        try:
            taken, ack = self.console.acknowledge(visit_event_id, session.guide)
        except ConnectionError as exc:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            return
        self._json(HTTPStatus.OK if taken else HTTPStatus.CONFLICT, ack)

    def _events(self) -> None:
        session = self._session()
        assert session is not None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Connection", "close")
        for key, value in _SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        q = self.console.listen()
        try:
            self.wfile.write(b"retry: 2000\n\n" + b"".join(self.console.replay(session)))
            self.wfile.flush()
            while True:
                try:
                    frame = q.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    frame = b": ping\n\n"
                if frame is None:
                    return
                if self.console.sessions.check(self.headers.get("Cookie")) is None:
                    return  # logged out or expired: the page goes back to the login
                self.wfile.write(frame)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return
        finally:
            self.console.unlisten(q)
