"""The local admin channel: operator commands reach the running daemon, which owns the state.

While the daemon runs it holds the lock on `storage.dir` (`edge/storage_lock.py`) and listens on
`storage.dir/admin.sock`, a Unix socket only its own user and root may use. `footfall erase`,
`enroll` and the imports send it the same messages the CRM sends over the downlink
(`members/delete`, `members/upsert`, `appointments/upsert`, ...); the daemon applies them on its
decision thread, between frames, and answers once they took effect. So an erasure is immediate:
there is no copy of the gallery elsewhere that could keep recognising the person.

One request a connection: a JSON line `{"topic": name, "payload": text}` in, a JSON line
`{"ok": bool, "reason": str|null, "reply": object|null}` out. Requests are bounded in size and
handled one at a time; a slow or silent client is cut off by a timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from footfall.edge.storage_lock import StorageBusy

T = TypeVar("T")

log = logging.getLogger(__name__)

SOCKET_NAME = "admin.sock"
MAX_REQUEST = 16 * 1024 * 1024      # a members/upsert line with its photos inlined
IO_TIMEOUT_S = 10.0                 # reading a request, writing an answer
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


def _read_line(conn: socket.socket, limit: int) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
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
        """Stop listening; a request being applied is answered first."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(APPLY_TIMEOUT_S)
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
            with conn:
                try:
                    self._answer(conn)
                except Exception as exc:  # one bad client never stops the channel
                    log.warning("admin channel: request not handled: %s", exc)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT_S)
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid not in (0, os.getuid()):
            conn.sendall(_encode({"ok": False, "reason": f"uid {uid} may not use the admin channel"}))
            return
        try:
            message = json.loads(_read_line(conn, MAX_REQUEST))
            topic, payload = message["topic"], message["payload"]
            if not isinstance(topic, str) or not isinstance(payload, str):
                raise ValueError("topic and payload must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            conn.sendall(_encode({"ok": False, "reason": f"malformed admin request: {exc}"}))
            return
        request = AdminRequest(topic, payload.encode("utf-8", "surrogateescape"))
        self.submit(request)
        if not request.done.wait(APPLY_TIMEOUT_S):
            conn.sendall(_encode({"ok": False, "reason": "the daemon did not apply the request in time"}))
            return
        conn.sendall(_encode(request.answer or {"ok": False, "reason": "no answer"}))


def _encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode() + b"\n"


def send(storage_dir: str | Path, topic: str, payload: bytes | str, *, timeout: float = APPLY_TIMEOUT_S + 10) -> dict[str, Any]:
    """Hand one message to the daemon that owns `storage_dir`; returns its answer.

    Raises `AdminUnavailable` when no daemon listens there.
    """
    path = Path(storage_dir) / SOCKET_NAME
    text = payload.decode("utf-8", "surrogateescape") if isinstance(payload, bytes) else payload
    line = json.dumps({"topic": topic, "payload": text}).encode() + b"\n"
    if len(line) > MAX_REQUEST:
        return {"ok": False, "reason": f"message larger than {MAX_REQUEST} bytes"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _addressable(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AdminUnavailable(f"no daemon listens on {path}: {exc.strerror}") from None
        sock.sendall(line)
        answer = json.loads(_read_line(sock, MAX_REQUEST) or b"null")
    if not isinstance(answer, dict):
        raise AdminUnavailable(f"the daemon on {path} closed the channel without an answer")
    return answer


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
