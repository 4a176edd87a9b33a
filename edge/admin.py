"""The local admin channel: operator commands reach the running daemon, which owns the state.

While the daemon runs it holds the lock on `storage.dir` (`storage/lock.py`) and listens on
`storage.dir/admin.sock`, a Unix socket only its own user and root may use. `footfall erase`,
`enroll` and the imports send it the same messages the CRM sends over the downlink
(`members/delete`, `members/upsert`, `appointments/upsert`, ...); the daemon applies them on its
decision thread, between frames, and answers once they took effect. So an erasure is immediate:
there is no copy of the gallery elsewhere that could keep recognising the person.

One request a connection: a JSON line `{"topic": name, "payload": text}` in, a JSON line
`{"ok": bool, "reason": str|null, "reply": object|null}` out. Requests are bounded in size and
applied one at a time. Each connection is read on a thread of its own (at most `MAX_CLIENTS` at
once) and must deliver its whole request within `IO_TIMEOUT_S`, however slowly it trickles in: a
client dripping bytes is answered and cut off then, and holds nobody else up meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from footfall.storage.lock import StorageBusy

T = TypeVar("T")

log = logging.getLogger(__name__)

SOCKET_NAME = "admin.sock"
MAX_REQUEST = 16 * 1024 * 1024      # a members/upsert line with its photos inlined
IO_TIMEOUT_S = 10.0                 # the whole request must arrive within this; also writing an answer
MAX_CLIENTS = 4                     # connections read at once; a further one is answered "busy" at once
APPLY_TIMEOUT_S = 120.0             # the daemon embeds photos of an upsert before answering
_SUN_PATH_MAX = 107


class AdminUnavailable(Exception):
    """No daemon answers on the admin channel of this state directory."""


@dataclass
class AdminRequest:
    """One operator command handed to the daemon's decision thread; `finish` answers it."""

    topic: str
    payload: bytes
    answer: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, ok: bool, reason: str | None = None, reply: dict[str, Any] | None = None) -> None:
        self.answer = {"ok": ok, "reason": reason, "reply": reply}
        self.done.set()


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
    """A name for `path` short enough for a Unix socket address (108 bytes on Linux)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _read_line(conn: socket.socket, limit: int, deadline: float) -> bytes:
    """One line of at most `limit` bytes, whole by `deadline` (monotonic), else TimeoutError."""
    data = bytearray()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"not received whole within the deadline ({len(data)} bytes so far)")
        conn.settimeout(left)
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError(f"request larger than {limit} bytes")
    return bytes(data)


class AdminServer:
    """Serves the admin socket of a state directory; `submit` hands each request to the daemon."""

    def __init__(self, storage_dir: str | Path, submit: Callable[[AdminRequest], None]) -> None:
        self.path = Path(storage_dir) / SOCKET_NAME
        self.submit = submit
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clients: set[threading.Thread] = set()
        self._reading = 0                       # connections not yet answered or handed over
        self._idle = threading.Condition()

    def start(self) -> AdminServer:
        """Listen (replacing a socket file left by a process that died: the storage lock is ours)."""
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            with _addressable(self.path) as address:
                sock.bind(address)
        finally:
            os.umask(old_umask)
        sock.listen(4)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="admin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening. Requests still arriving get until their deadline, so once this returns
        nothing more is submitted; those submitted are answered when the daemon applies them."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(APPLY_TIMEOUT_S)
        with self._idle:
            self._idle.wait_for(lambda: self._reading == 0, IO_TIMEOUT_S + 1.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        """Serve a connection on a thread of its own, or answer "busy" if `MAX_CLIENTS` are served."""
        self._clients = {t for t in self._clients if t.is_alive()}
        if len(self._clients) >= MAX_CLIENTS:
            with conn:
                _reply(conn, {"ok": False, "reason": f"the admin channel is busy ({MAX_CLIENTS} requests "
                                                     f"in progress); try again"})
            return
        with self._idle:
            self._reading += 1
        thread = threading.Thread(target=self._serve_one, args=(conn,), name="admin-client", daemon=True)
        self._clients.add(thread)
        thread.start()

    def _serve_one(self, conn: socket.socket) -> None:
        released = False

        def release() -> None:  # once per connection: answered, or its request handed over
            nonlocal released
            if not released:
                released = True
                with self._idle:
                    self._reading -= 1
                    self._idle.notify_all()

        with conn:
            try:
                self._answer(conn, release)
            except Exception as exc:  # one bad client never stops the channel
                log.warning("admin channel: request not handled: %s", exc)
            finally:
                release()

    def _answer(self, conn: socket.socket, handed_over: Callable[[], None]) -> None:
        deadline = time.monotonic() + IO_TIMEOUT_S
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid not in (0, os.getuid()):
            _reply(conn, {"ok": False, "reason": f"uid {uid} may not use the admin channel"})
            return
        try:
            request = _parse(_read_line(conn, MAX_REQUEST, deadline))
        except TimeoutError:
            log.warning("admin channel: a request did not arrive whole within %g s; connection closed", IO_TIMEOUT_S)
            _reply(conn, {"ok": False, "reason": f"the request did not arrive whole within {IO_TIMEOUT_S:g} s"})
            return
        except (ValueError, KeyError, TypeError) as exc:
            _reply(conn, {"ok": False, "reason": f"malformed admin request: {exc}"})
            return
        self.submit(request)
        handed_over()  # stop() need not wait for this connection any more
        if not request.done.wait(APPLY_TIMEOUT_S):
            _reply(conn, {"ok": False, "reason": "the daemon did not apply the request in time"})
            return
        _reply(conn, request.answer or {"ok": False, "reason": "no answer"})


def _parse(line: bytes) -> AdminRequest:
    """A request line as an `AdminRequest`; ValueError, KeyError or TypeError if malformed."""
    message = json.loads(line)
    topic, payload = message["topic"], message["payload"]
    if not isinstance(topic, str) or not isinstance(payload, str):
        raise ValueError("topic and payload must be strings")
    return AdminRequest(topic, payload.encode("utf-8", "surrogateescape"))


def _reply(conn: socket.socket, answer: dict[str, Any]) -> None:
    """Write an answer, giving a client that does not read it `IO_TIMEOUT_S`."""
    conn.settimeout(IO_TIMEOUT_S)
    conn.sendall(_encode(answer))


def _encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode() + b"\n"


def send(storage_dir: str | Path, topic: str, payload: bytes | str, *, timeout: float = APPLY_TIMEOUT_S + 10) -> dict[str, Any]:
    """Hand one message to the daemon that owns `storage_dir`; returns its answer, which must
    arrive whole within `timeout`.

    Raises `AdminUnavailable` when no daemon listens there, or when the channel fails before the
    answer (the daemon stopped or died, the answer never came): one line that says so.
    """
    path = Path(storage_dir) / SOCKET_NAME
    text = payload.decode("utf-8", "surrogateescape") if isinstance(payload, bytes) else payload
    line = json.dumps({"topic": topic, "payload": text}).encode() + b"\n"
    if len(line) > MAX_REQUEST:
        return {"ok": False, "reason": f"message larger than {MAX_REQUEST} bytes"}
    try:
        answer = _exchange(path, line, time.monotonic() + timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise AdminUnavailable(f"no daemon listens on {path}: {exc.strerror}") from None
    except (OSError, ValueError) as exc:
        raise AdminUnavailable(f"the daemon on {path} gave no answer to {topic} ({_why(exc)}); it may or may "
                               f"not have applied it: check the daemon (journalctl -u footfall) and run "
                               f"the command again") from None
    if not isinstance(answer, dict):
        raise AdminUnavailable(f"the daemon on {path} closed the channel without an answer to {topic}; it may "
                               f"or may not have applied it: run the command again")
    return answer


def _exchange(path: Path, line: bytes, deadline: float) -> Any:
    """Send one request line and read the answer line, all by `deadline` (monotonic)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        with _addressable(path) as address:
            sock.connect(address)
        sock.sendall(line)
        return json.loads(_read_line(sock, MAX_REQUEST, deadline) or b"null")


def _why(exc: BaseException) -> str:
    """An OS or decoding error in a few words."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def with_state(*, local: Callable[[], T], daemon: Callable[[], T]) -> T:
    """Run an operator command on the state: `local`, which opens the store (taking the storage
    lock) when no daemon runs, or `daemon` (which talks to it over this channel) when the running
    daemon holds the lock.

    Raises `StorageBusy` when another command holds the lock.
    """
    try:
        return local()
    except StorageBusy as busy:
        if busy.holder.get("command") != "footfall run":
            raise
        return daemon()


def apply(storage_dir: str | Path, topic: str, payload: bytes | str) -> dict[str, Any]:
    """`send`, raising `ValueError` with the daemon's reason when it refused the message."""
    answer = send(storage_dir, topic, payload)
    if not answer.get("ok"):
        raise ValueError(f"the running daemon refused {topic}: {answer.get('reason')}")
    return answer
