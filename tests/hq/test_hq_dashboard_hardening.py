"""The HQ dashboard under attack: trickling requests, crowds of connections from one address,
parallel and guessed logins, the shared password under a user's name, login timing, rebound
Host names. Each test drives the real HTTP server on loopback with plain sockets (in this
process over an in-memory read side, or `footfall hq serve` as its own process); no browser."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pytest
from support.broker import free_port, wait_until
from support.browserless import HashCounter, call, logins_at_once, post_login, session_cookie
from support.dashboard import HASH, PASSWORD, TOKEN, MemoryReadSide

from footfall.config.hq_dashboard import DashboardConfig
from footfall.hq import dashboard as dash


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


class Trickle:
    """`count` connections, from loopback addresses of their own, each sending a request one byte
    every `every` seconds; a connection the server closes is opened again at once (the attack
    goes on, and keeps every slot it can taken)."""

    def __init__(self, port: int, count: int, every: float) -> None:
        self.port, self.every = port, every
        self.sources = [f"127.0.1.{i + 1}" for i in range(count)]
        self.socks = [self._open(i) for i in range(count)]
        self.opened = count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self, i: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(self.sources[i], 0))
        sock.sendall(b"G")
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        next_byte = time.monotonic() + self.every
        while not self._stop.wait(0.05):
            send = time.monotonic() >= next_byte
            if send:
                next_byte += self.every
            for i, sock in enumerate(self.socks):
                try:
                    if sock.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass        # still open, nothing from the server
                except OSError:
                    sock.close()
                    self.socks[i] = self._open(i)
                    self.opened += 1
                    continue
                if send:
                    try:
                        sock.send(b"E")
                    except OSError:
                        pass    # closed: reopened on the next round

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            sock.close()


# -- N3: slow requests and crowds of connections ------------------------------------------------------

@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_request_trickling_in_is_cut_off_at_the_request_timeout_though_no_read_waits_long(served, part):
    """One byte every 0.5 s never leaves a read waiting for request_timeout (2 s): the whole
    request, headers and body, must still arrive within it."""
    d, _ = served(request_timeout="2s")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    if part == "body":
        s.sendall(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\n".encode())
    else:
        s.sendall(b"GET /login HTTP/1.1\r\n")
    started = time.monotonic()
    closed_after = None
    try:
        for _ in range(12):
            s.sendall(b"x")
            if closed_by_server(s, 0.5):
                closed_after = time.monotonic() - started
                break
    except (BrokenPipeError, ConnectionResetError):
        closed_after = time.monotonic() - started
    finally:
        s.close()
    print(f"\na request trickling in its {part} was cut off after "
          f"{'never' if closed_after is None else f'{closed_after:.1f} s'} (request_timeout 2 s)")
    assert closed_after is not None, "the dashboard kept a request that never ends"
    assert 1.5 <= closed_after <= 3.5


def test_thirty_two_trickling_connections_do_not_lock_anybody_out(served):
    """The review's attack with the shipped defaults (32 connections, request_timeout 10 s): 32
    unauthenticated connections from 32 addresses, each sending one byte every 4 s. An analyst
    still logs in and reads the figures, at once."""
    d, _ = served()
    attack = Trickle(d.port, d.config.max_connections, every=4.0)
    latencies: list[float] = []
    statuses: list[int] = []
    try:
        for i in range(10):   # over 5 s: the attack sends its next bytes meanwhile
            time.sleep(0.5)
            # Every slot is taken by the attack again: this request must make room.
            wait_until(lambda: d.open_connections() == d.config.max_connections, 5, "the attack to take every slot")
            started = time.monotonic()
            if i == 0:
                status, response = post_login(d.port, "Wang Fang", PASSWORD)
                cookie = str(response.getheader("Set-Cookie")).split(";")[0]
            else:
                status = call(d.port, "GET", "/api/chain" if i % 2 else "/login", headers={"Cookie": cookie})[0]
            latencies.append(time.monotonic() - started)
            statuses.append(status)
    finally:
        attack.stop()
    print(f"\nduring a trickle of {d.config.max_connections} connections: {len(statuses)} requests served in "
          f"median {statistics.median(latencies) * 1000:.0f} ms, at most {max(latencies) * 1000:.0f} ms "
          f"(statuses {statuses}); the attack opened {attack.opened} connections")
    assert statuses == [303] + [200] * 9
    assert max(latencies) < 2.0


def test_one_address_holds_at_most_max_connections_per_address(served):
    """Ten idle connections from one address: its four newest are kept, the older ones are closed
    to make room; another address, and the same one, are still served."""
    d, _ = served(max_connections_per_address=4)
    crowd = []
    try:
        for _ in range(10):
            crowd.append(socket.create_connection(("127.0.0.1", d.port), timeout=5, source_address=("127.0.0.2", 0)))
            crowd[-1].sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(0.02)
        wait_until(lambda: d.open_connections("127.0.0.2") <= 4, 2, "the crowd to be cut down")
        closed = [closed_by_server(s, 0.3) for s in crowd]
        assert closed == [True] * 6 + [False] * 4, "the oldest were closed, the newest kept"
        assert call(d.port, "GET", "/login", source="127.0.0.3")[0] == 200
        assert call(d.port, "GET", "/login", source="127.0.0.2")[0] == 200
        assert d.open_connections("127.0.0.2") <= 4
    finally:
        for s in crowd:
            s.close()


class BlockingReadSide(MemoryReadSide):
    """chain_by_day waits until `release` is set: requests the server is busy answering."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def chain_by_day(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        rows = super().chain_by_day(day_from, day_to)
        self.release.wait(10)
        return rows


def test_requests_being_answered_keep_their_slots_past_the_request_timeout_and_a_newcomer_gets_503(served):
    """Two slots, both answering slow queries for longer than request_timeout: the deadline is for
    the request's arrival only, so both are answered; a newcomer meanwhile is told 503 at once."""
    d, read = served(BlockingReadSide(), max_connections=2, request_timeout="1s")
    assert isinstance(read, BlockingReadSide)
    cookie = session_cookie(d.port, "Wang Fang", PASSWORD)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(call, d.port, "GET", "/api/chain", None, {"Cookie": cookie}) for _ in range(2)]
        wait_until(lambda: len(read.calls) == 2, 5, "both queries to start")
        newcomer = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        assert newcomer.recv(1024).startswith(b"HTTP/1.0 503")
        newcomer.close()
        time.sleep(1.5)   # past the request timeout
        read.release.set()
        assert [f.result()[0] for f in slow] == [200, 200]
    assert d.refused == 1


# -- N5: logins --------------------------------------------------------------------------------------

def test_thirty_parallel_logins_compute_at_most_login_concurrency_hashes_at_once(served, monkeypatch):
    """30 login attempts at once, from 30 addresses: at most 2 scrypt computations (16 MiB each)
    run together; the others are answered 503 at once instead of waiting in memory."""
    d, _ = served()
    counted = HashCounter(dash.verify_password)
    monkeypatch.setattr(dash, "verify_password", counted)
    barrier = threading.Barrier(30)

    def attempt(i: int) -> int:
        barrier.wait()
        return post_login(d.port, f"guest {i}", "guess", source=f"127.0.2.{i + 1}")[0]

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(attempt, range(30)))
    print(f"\n30 parallel logins: at most {counted.peak} hashes at once; "
          f"{statuses.count(503)} answered 503, {statuses.count(401)} answered 401")
    assert counted.peak <= d.config.login_concurrency
    assert set(statuses) <= {401, 503} and statuses.count(503) > 0, "every attempt is answered"


def test_thirty_parallel_logins_hold_the_memory_of_login_concurrency_hashes_only(tmp_path):
    """`footfall hq serve` as its own process with the shipped limits (its database unreachable: the
    login does not need it): 30 logins at once from 30 addresses raise its peak memory by about
    login_concurrency x 16 MiB, not by a hash per connection."""
    port = free_port()
    config = tmp_path / "hq.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n\n'
                      f'[dashboard]\nlisten = "127.0.0.1:{port}"\npassword_hash = "{HASH}"\n')
    before, after, statuses = logins_at_once(["hq", "serve", "--config", str(config)], port, 30,
                                             lambda i: f"127.0.3.{i + 1}")
    print(f"\n30 parallel logins: peak memory {before} -> {after} MiB (+{after - before}); "
          f"{statuses.count(401)} answered 401, {statuses.count(503)} answered 503")
    assert set(statuses) <= {401, 503}, "every attempt is answered"
    assert after - before <= 2 * 16 + 48


def test_all_clients_together_are_held_to_login_per_minute(served, monkeypatch):
    d, _ = served(login_per_minute=6)
    got = [post_login(d.port, "Wang Fang", "guess", source=f"127.0.0.{i}")[0] for i in range(10, 16)]
    assert got == [401] * 6
    hashed: list[str] = []
    monkeypatch.setattr(dash, "verify_password", lambda p, s: hashed.append(p) or True)
    status, response = post_login(d.port, "Wang Fang", PASSWORD, source="127.0.0.99")
    assert status == 429 and int(response.getheader("Retry-After") or 0) > 0
    assert hashed == [], "an attempt over the rate gets no hash computed"


def test_a_client_guessing_passwords_must_wait_doubling_and_its_waits_do_not_hash(served, monkeypatch):
    d, _ = served(login_failures=3, login_backoff="30s")
    assert [post_login(d.port, "Wang Fang", f"guess {i}")[0] for i in range(3)] == [401] * 3
    hashed: list[str] = []
    monkeypatch.setattr(dash, "verify_password", lambda p, s: hashed.append(p) or True)
    status, response = post_login(d.port, "Wang Fang", PASSWORD)
    assert status == 429 and 1 <= int(response.getheader("Retry-After") or 0) <= 30
    assert hashed == []
    assert post_login(d.port, "Wang Fang", PASSWORD, source="127.0.0.2")[0] == 303, "another address is not held back"


@pytest.mark.parametrize("name", ["Zhao Min", "zhao min", "  ZHAO   MIN ", "ZhaoMin", "Zhao\u200bMin",
                                  "Zhao Min\u200b", "\ufeffZhao Min", "Zhao\u2060 Min", "Ｚｈａｏ　Ｍｉｎ",
                                  "Zhao\u3164Min", "Zhao\u034fMin", "Zhao\u202eMin"])
def test_the_shared_password_never_logs_in_under_the_name_of_a_user_with_a_token(served, name):
    """However the user's name is spelled, cased, spaced, widened or padded with characters that
    show as nothing, it is that user's name: only that user's token logs in with it."""
    d, _ = served()
    assert post_login(d.port, name, PASSWORD)[0] == 401
    status, response = post_login(d.port, name, TOKEN)
    assert status == 303
    cookie = str(response.getheader("Set-Cookie")).split(";")[0]
    status, _, body = call(d.port, "GET", "/api/meta", headers={"Cookie": cookie})
    assert status == 200 and b'"user":"Zhao Min"' in body, "the configured spelling"


def test_a_name_with_a_control_character_never_logs_in(served):
    d, _ = served()
    assert post_login(d.port, "Wang\x07Fang", PASSWORD)[0] == 401
    assert post_login(d.port, "Wang Fang", PASSWORD)[0] == 303


@pytest.mark.parametrize("shared", [True, False])
def test_every_login_attempt_costs_one_hash_of_the_same_cost_whatever_the_name(served, monkeypatch, shared):
    """Each attempt verifies exactly one hash with the same scrypt parameters: a user's name or
    not, the right secret or not, with or without a shared password."""
    d, _ = served(**({} if shared else {"password_hash": None}))
    verified: list[str] = []
    verify = dash.verify_password
    monkeypatch.setattr(dash, "verify_password", lambda p, s: verified.append(s) or verify(p, s))
    for i, (name, secret) in enumerate((("Zhao Min", "wrong"), ("Nobody Here", "wrong"), ("Zhao Min", PASSWORD),
                                        ("Zhao Min", TOKEN), ("Wang Fang", PASSWORD), ("Wang\x07Fang", "x"))):
        verified.clear()
        post_login(d.port, name, secret, source=f"127.0.4.{i + 1}")
        assert len(verified) == 1, f"{name!r}: {len(verified)} hashes verified"
        assert verified[0].split("$")[1:4] == ["16384", "8", "1"], name


def test_login_time_does_not_tell_which_user_names_exist(served):
    """Users with tokens and no shared password: a wrong token for a user's name and any secret for
    a name nobody has take the same time, measured through the server: their medians differ by
    less than half of one scrypt."""
    d, _ = served(password_hash=None)
    one_hash = statistics.median(_timed(lambda: dash.verify_password("wrong", HASH)) for _ in range(3))
    times: dict[str, list[float]] = {"Zhao Min": [], "Nobody Here": []}
    sources = (f"127.0.5.{i}" for i in range(1, 255))   # one attempt an address: no waits imposed
    for _ in range(8):
        for name, spent in times.items():
            source = next(sources)
            spent.append(_timed(lambda: post_login(d.port, name, "wrong", source=source)))  # noqa: B023
    known, unknown = (statistics.median(times[n]) for n in ("Zhao Min", "Nobody Here"))
    print(f"\nfailed login, median of 8: a user's name {known * 1000:.0f} ms, a name nobody has "
          f"{unknown * 1000:.0f} ms; one scrypt {one_hash * 1000:.0f} ms")
    assert abs(known - unknown) < 0.5 * one_hash


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def test_a_request_naming_a_host_that_is_not_the_dashboards_is_refused(served):
    """DNS rebinding: a page on another site whose name now points here sends that name as Host
    (and, for a form, as Origin). Only IP addresses, localhost, the listen host and
    dashboard.allowed_hosts are answered."""
    d, _ = served(allowed_hosts=["hq.example.com"])
    cookie = session_cookie(d.port, "Wang Fang", PASSWORD)
    rebound = f"rebound.example:{d.port}"
    assert call(d.port, "GET", "/login", headers={"Host": rebound})[0] == 421
    assert call(d.port, "GET", "/api/chain", headers={"Host": rebound, "Cookie": cookie})[0] == 421
    status, _ = post_login(d.port, "Wang Fang", PASSWORD, headers={"Host": rebound, "Origin": f"http://{rebound}"})
    assert status == 421
    for host in (f"127.0.0.1:{d.port}", f"localhost:{d.port}", "hq.example.com", f"HQ.example.com:{d.port}"):
        assert call(d.port, "GET", "/api/chain", headers={"Host": host, "Cookie": cookie})[0] == 200, host
    assert post_login(d.port, "Wang Fang", PASSWORD, headers={"Origin": f"http://127.0.0.1:{d.port + 1}"})[0] == 403
    assert post_login(d.port, "Wang Fang", PASSWORD, headers={"Origin": "null"})[0] == 403


def test_the_listen_host_is_an_allowed_host_name():
    config = DashboardConfig.model_validate({"password_hash": HASH, "listen": "hq-dash.internal:8090"})
    assert dash.allowed_hosts(config, "hq-dash.internal") == ["hq-dash.internal"]
    assert dash.allowed_hosts(config.model_copy(update={"allowed_hosts": ["a.example"]}), "0.0.0.0") == ["a.example"]
