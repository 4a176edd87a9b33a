"""What every page server here shares (the guide console, the HQ dashboard).

- `PageServer`: a thread per connection, at most `max_connections` of them (and at most
  `max_per_address` from one client address, where set); every request must arrive whole within
  `request_timeout`, however slowly it trickles in. When full, the oldest connection still
  sending its request is closed to make room, so slow or idle clients cannot lock others out.
- `PageHandler`: bodies that are never cached and always carry the server's security headers,
  redirects, and HEAD answered with headers only; it tells the server when its request has
  arrived and when its answer starts.
- `parse_listen`: the HOST:PORT a server listens on; `serve_until_interrupted`: an app's server
  run from the command line until Ctrl-C.
"""

from __future__ import annotations

import errno
import logging
import re
import resource
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger(__name__)

_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port); "[::1]:8080" for IPv6."""
    m = _LISTEN.match(value.strip())
    if not m or not 0 <= int(m.group(2)) < 65536:
        raise ValueError(f"listen address must look like HOST:PORT, e.g. 127.0.0.1:8080, got {value!r}")
    return m.group(1).strip("[]"), int(m.group(2))


class Service(Protocol):
    """An app whose server starts and stops."""

    def start(self) -> Any: ...
    def stop(self) -> None: ...


def serve_until_interrupted(app: Service) -> int:
    """Start `app`, serve until Ctrl-C, stop it; 0 for the command's exit status."""
    app.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        app.stop()


@dataclass
class _Connection:
    sock: socket.socket
    address: str
    deadline: float | None      # None: a logged-in page's stream, exempt from the request deadline
    reading: bool = True        # still receiving its request


class PageServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them and `max_per_address` (None: no
    such cap) from one client address; every request must arrive whole within `request_timeout`.

    A newcomer over either cap closes the oldest connection (of that address, or of all) still
    sending its request. If every such connection is being answered (or is a logged-in page's
    stream), the newcomer gets `busy_reply` (nothing by default) and is closed at once.
    """

    daemon_threads = True
    request_queue_size = 128   # a burst of connections waits in the backlog, not in SYN retries
    busy_reply = b""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 max_connections: int, request_timeout: float, max_per_address: int | None = None,
                 label: str = "http") -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.request_timeout = request_timeout
        self.label = label
        self.refused = 0            # newcomers closed because every slot was being answered
        self._conns: dict[socket.socket, _Connection] = {}
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, handler)
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit != resource.RLIM_INFINITY and max_connections + 32 > limit:
            log.warning("%s: max_connections (%d) is close to the open-file limit (%d)",
                        label, max_connections, limit)
        self._reaper = threading.Thread(target=self._reap, name=f"{label}-reaper", daemon=True)
        self._reaper.start()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("%s: cannot accept a connection: %s", self.label, exc.strerror)
                time.sleep(0.1)   # the listening socket stays readable: do not spin
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            admitted, evicted = self._admit(request, str(client_address[0]))
        if not admitted:
            self._refuse(request)
            return
        if evicted is not None:
            _hang_up(evicted.sock)
        super().process_request(request, client_address)

    def _admit(self, request: socket.socket, address: str) -> tuple[bool, _Connection | None]:
        """Make room for a newcomer (under the lock): (admitted, the connection closed for it)."""
        evicted: _Connection | None = None
        if self.max_per_address is not None:
            mine = [c for c in self._conns.values() if c.address == address]
            if len(mine) >= self.max_per_address:
                evicted = _oldest_still_reading(mine)
                if evicted is None:
                    return False, None
                del self._conns[evicted.sock]
        if evicted is None and len(self._conns) >= self.max_connections:
            evicted = _oldest_still_reading(self._conns.values())
            if evicted is None:
                return False, None
            del self._conns[evicted.sock]
        self._conns[request] = _Connection(request, address, time.monotonic() + self.request_timeout)
        return True, evicted

    def _refuse(self, request: socket.socket) -> None:
        self.refused += 1
        if self.busy_reply:
            try:
                request.settimeout(1.0)
                request.sendall(self.busy_reply)
            except OSError:
                pass
        self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def request_read(self, sock: socket.socket) -> None:
        """The request has arrived whole: the deadline no longer applies, and the connection can no
        longer be taken for a newcomer."""
        with self._conns_lock:
            conn = self._conns.get(sock)
            if conn is not None:
                conn.reading = False

    def release(self, sock: socket.socket) -> None:
        """The connection's last answer is being written: its slot is free for the next client,
        who may connect as soon as they read that answer (the socket closes right after)."""
        with self._conns_lock:
            self._conns.pop(sock, None)

    def streaming(self, sock: socket.socket) -> None:
        """A logged-in page's stream: no request deadline (writes still time out)."""
        with self._conns_lock:
            conn = self._conns.get(sock)
            if conn is not None:
                conn.deadline = None

    def open_connections(self, address: str | None = None) -> int:
        """Connections holding a slot (from `address` only, if given)."""
        with self._conns_lock:
            return sum(1 for c in self._conns.values() if address is None or c.address == address)

    def _reap(self) -> None:
        """Close every connection whose request has not arrived whole by its deadline."""
        while not self._stopping.wait(min(1.0, self.request_timeout / 4)):
            now = time.monotonic()
            with self._conns_lock:
                late = [c.sock for c in self._conns.values()
                        if c.reading and c.deadline is not None and c.deadline < now]
            for sock in late:
                _hang_up(sock)

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: error with %s", self.label, client_address, exc_info=True)


def _oldest_still_reading(conns: Iterable[_Connection]) -> _Connection | None:
    waiting = [c for c in conns if c.reading and c.deadline is not None]
    return min(waiting, key=lambda c: c.deadline or 0.0) if waiting else None


def _hang_up(sock: socket.socket) -> None:
    """End a connection served by another thread: its reads return EOF, its writes fail."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class PageHandler(BaseHTTPRequestHandler):
    """Subclasses set `security_headers` and `log_label`; served by a PageServer."""

    server: PageServer
    security_headers: dict[str, str] = {}
    log_label = "http"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(f"{self.log_label}: %s " + format, self.address_string(), *args)

    def _request_read(self) -> None:
        """The request (headers and body) has arrived whole."""
        self.server.request_read(self.connection)

    def _answering(self) -> None:
        """Called as an answer starts (over HTTP/1.0 it is the connection's last): the server frees
        the connection's slot now, before the client can see the answer end."""
        self.server.release(self.connection)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._answering()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in {**self.security_headers, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, where: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": where, **(headers or {})})
