"""The guide console and the HQ dashboard driven without a browser, over plain HTTP on loopback:
one request, a posted login form, a session cookie, a JSON answer; and what their hardening
tests measure of a server: how many password hashes run at once, a process's peak memory.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from support.broker import wait_until

REPO = Path(__file__).resolve().parents[2]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def call(port: int, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None,
         source: str | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    """One request from `source` (a loopback address; default 127.0.0.1): (status, response, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def answering(port: int) -> bool:
    """Whether a server on `port` answers its login page."""
    try:
        return call(port, "GET", "/login")[0] == 200
    except OSError:
        return False


def post_login(port: int, name: str, secret: str, source: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse]:
    """The login form posted as the server's own page posts it, with `headers` on top."""
    form = f"name={quote_plus(name)}&password={quote_plus(secret)}"
    status, response, _ = call(port, "POST", "/login", form,
                               {**FORM, "Origin": f"http://127.0.0.1:{port}", **(headers or {})}, source)
    return status, response


def session_cookie(port: int, name: str, secret: str) -> str:
    """The Cookie header of a new session of `name`."""
    status, response = post_login(port, name, secret)
    assert status == 303, f"login answered {status}"
    return (response.getheader("Set-Cookie") or "").split(";")[0]


def get_json(port: int, path: str, cookie: str) -> tuple[int, Any]:
    """GET `path` with the session `cookie`: (status, the JSON answer)."""
    status, _, body = call(port, "GET", path, headers={"Cookie": cookie})
    return status, json.loads(body)


class HashCounter:
    """A stand-in for a server's verify_password that counts how many run at once (`peak`)."""

    def __init__(self, verify: Callable[[str, str], bool]) -> None:
        self.verify = verify
        self.peak = 0
        self._running = 0
        self._lock = threading.Lock()

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        try:
            return self.verify(password, stored)
        finally:
            with self._lock:
                self._running -= 1


def _peak_mib(pid: int) -> int:
    """The peak resident memory of process `pid` so far, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) // 1024


def logins_at_once(args: list[str], port: int, count: int,
                   source: Callable[[int], str | None] = lambda i: None) -> tuple[int, int, list[int]]:
    """`footfall <args>` as its own process serving on `port`, sent `count` failing logins at once (the
    i-th from `source(i)`): its peak memory in MiB before and after, and the statuses (0: no answer)."""
    proc = subprocess.Popen([sys.executable, "-m", "footfall", *args], cwd=REPO.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answering(port), 20, "the server process to answer")
        before = _peak_mib(proc.pid)
        barrier = threading.Barrier(count)

        def attempt(i: int) -> int:
            barrier.wait()
            try:
                return post_login(port, f"guest {i}", "guess", source=source(i))[0]
            except OSError:
                return 0

        with ThreadPoolExecutor(count) as pool:
            statuses = list(pool.map(attempt, range(count)))
        return before, _peak_mib(proc.pid), statuses
    finally:
        proc.terminate()
        proc.wait(10)


def refusal_shown(page: bytes) -> list[str]:
    """Which refusals a login page shows: "failed" (#login-error), "wait" (#login-wait), both hidden: []."""
    return [refusal for refusal, element in (("failed", b'id="login-error"'), ("wait", b'id="login-wait"'))
            if element in page and element + b" hidden" not in page]
