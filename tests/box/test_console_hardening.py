"""The guide console under attack and on a bad day: exhaustion, login guessing, malformed broker
messages, cross-origin posts, stalled pages, double clicks. Each test drives the real HTTP server
on loopback (in this process, or `footfall console` as its own process) with plain sockets and a
real Mosquitto; the cross-site form post runs in headless Chromium."""

from __future__ import annotations

import json
import logging
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.broker import Broker, Subscriber, free_port, mosquitto_path, wait_until
from support.browser import MISSING, chromium_paths, login, start_chromium
from support.browserless import (
    HashCounter,
    answering,
    call,
    logins_at_once,
    post_login,
    refusal_shown,
    session_cookie,
)
from support.console import GUIDE_TOKEN, PASSWORD, PASSWORD_HASH, SH, STORE, console_config

from footfall.console import server as con
from footfall.console.limits import AckBook
from footfall.console.messages import Dropped, parse_message
from footfall.sync import events
from footfall.sync.events import ArrivalAlert
from footfall.web.access import host_allowed
from footfall.web.limits import LoginLimiter

REPO = Path(__file__).resolve().parents[2]

needs_broker = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")


# -- pure parts: the limiter, the ack book, the message checks, the Host check -----------------

def test_login_backoff_starts_after_the_free_failures_and_doubles_up_to_the_maximum():
    now = [1000.0]
    limiter = LoginLimiter(failures_free=3, backoff=2, backoff_max=10, per_minute=1000, max_clients=100,
                           clock=lambda: now[0])
    waits = []
    for _ in range(6):
        assert limiter.admit("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
        waits.append(limiter.admit("10.0.0.1"))
        now[0] += waits[-1]
    assert waits == [0, 0, 2, 4, 8, 10]
    assert limiter.admit("10.0.0.2") == 0, "another address is not held back"
    limiter.succeeded("10.0.0.1")
    assert limiter.admit("10.0.0.1") == 0, "a good login clears the failures"


def test_all_clients_together_get_login_per_minute_attempts_and_the_table_of_addresses_is_bounded():
    now = [0.0]
    limiter = LoginLimiter(failures_free=1, backoff=1, backoff_max=1, per_minute=5, max_clients=16,
                           clock=lambda: now[0])
    for i in range(5):
        assert limiter.admit(f"10.0.0.{i}") == 0
    assert limiter.admit("10.0.9.9") == pytest.approx(60)
    now[0] = 30.0
    assert limiter.admit("10.0.9.9") == pytest.approx(30)
    now[0] = 60.0
    assert limiter.admit("10.0.9.9") == 0
    for i in range(1000):
        limiter.failed(f"10.1.{i // 256}.{i % 256}")
    assert limiter.tracked() == 16


def test_the_ack_book_keeps_todays_acks_only_and_at_most_max_acks():
    today = [date(2026, 11, 30)]
    book = AckBook(3, lambda: today[0])
    for i in range(5):
        book.record({"visit_event_id": f"v{i}", "guide": "g"})
    assert len(book) == 3 and book.get("v0") is None and book.get("v4") is not None
    first = {"visit_event_id": "v4", "guide": "other"}
    assert book.record(first)["guide"] == "g", "the first ack of a visit wins"
    assert book.reserve("v9", {"visit_event_id": "v9", "guide": "a"}) is None
    assert book.reserve("v9", {"visit_event_id": "v9", "guide": "b"})["guide"] == "a"
    book.release("v9")
    today[0] = date(2026, 12, 1)
    assert len(book) == 0 and book.for_visits({"v4"}) == []


@pytest.mark.parametrize(("kind", "body", "reason"), [
    ("alert", b'{"event_id":"a\\nevent: forged","visit_event_id":"v"}', "event_id"),
    ("alert", b'{"event_id":42}', "event_id"),
    ("alert", b'{"event_id":"e","name":{"x":1}}', "name"),
    ("alert", b'{"event_id":"e","minutes_early":NaN}', "NaN"),
    ("ack", b'{"visit_event_id":"\\ud800","guide":"g"}', "surrogate"),
    ("ack", b'{"visit_event_id":"v","guide":"g\\udfff"}', "surrogate"),
    ("ack", b'{"visit_event_id":"v"}', "guide"),
    ("ack", b'\xff\xfe{"visit_event_id":"v"}', "UTF-8"),
    ("counts", b'{"by_hour":"x","visits":1,"reentries":0,"member_visits":0}', "by_hour"),
    ("counts", b'{"by_hour":[1],"visits":1,"reentries":0,"member_visits":0}', "by_hour"),
    ("status", b'{"state":5}', "state"),
    ("status", b'[1,2]', "object"),
    ("status", b"[" * 5000, "nested"),
    ("status", b'{"state":"online","pad":"' + b"x" * 70_000 + b'"}', "larger"),
])
def test_a_malformed_broker_message_is_dropped_naming_why(kind, body, reason):
    with pytest.raises(Dropped, match=reason):
        parse_message(kind, body, 65536)


def test_well_formed_broker_messages_pass_the_checks():
    now = datetime.now(SH)
    arrival = ArrivalAlert("m-1", "李伟", "gold", "visit-1", None, {"tags": ["vip"]}, store_id=STORE, ts=now)
    assert parse_message("alert", json.dumps(arrival.to_json()).encode(), 65536)["name"] == "李伟"
    ack = {"visit_event_id": "visit-1", "guide": "王芳", "ts": now.isoformat(), "event_id": "e", "store_id": STORE}
    assert parse_message("ack", json.dumps(ack, ensure_ascii=False).encode(), 65536) == ack
    padded = {**ack, "pad": "x" * 60_000}
    assert parse_message("ack", json.dumps(padded).encode(), 65536) == ack, "an ack keeps only its fields"
    counts = {"date": "2026-11-30", "visits": 3, "reentries": 1, "member_visits": 0, "by_hour": [0] * 24}
    assert parse_message("counts", json.dumps(counts).encode(), 65536) == counts


def test_only_ip_addresses_localhost_and_configured_names_are_accepted_as_host():
    for good in ("127.0.0.1:8080", "127.0.0.1", "[::1]:8080", "localhost:8080", "LOCALHOST", "192.0.2.7:443",
                 "console.shop.example", "console.shop.example:8443"):
        assert host_allowed(good, ["console.shop.example"]), good
    for bad in (None, "", "evil.example:8080", "127.0.0.1.evil.example", "[::1", "console.shop.example.evil"):
        assert not host_allowed(bad, ["console.shop.example"]), bad


# -- the server on loopback -------------------------------------------------------------------

@pytest.fixture
def make_console(request) -> Iterator[Callable[..., con.Console]]:
    """Start a console on a free loopback port (against `broker_url`, or a closed port) with `console` keys."""
    started: list[con.Console] = []

    def make(broker_url: str = "mqtt://127.0.0.1:1", *, failure_delay: float = 0.0, **console: Any) -> con.Console:
        c = con.Console(console_config(broker_url, **console), listen="127.0.0.1:0")
        c.failure_delay = failure_delay   # the fixed wait after a failure; the tests count, not time
        started.append(c.start())
        if not broker_url.endswith(":1"):
            wait_until(lambda: c.broker_connected, 5, "the console's broker connection")
        return c

    yield make
    for c in started:
        c.stop()


def post_ack(port: int, cookie: str, visit: str, **headers: str) -> tuple[int, dict[str, Any]]:
    sent = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}", "Cookie": cookie}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    status, _, body = call(port, "POST", "/ack", json.dumps({"visit_event_id": visit}), sent)
    return status, json.loads(body or b"{}")


class Stream:
    """A page's /events stream read over a plain socket."""

    def __init__(self, port: int, cookie: str, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode())
        self.data = b""
        self.closed = False

    def read_until(self, predicate: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not predicate(self.data):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"the stream did not deliver in {timeout:g} s; got {self.data[-400:]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                self.closed = True
            self.data += chunk
        return self.data

    def frames(self) -> list[dict[str, str]]:
        """Every complete SSE message after the headers, as {field: value}; data must be JSON."""
        body = self.data.split(b"\r\n\r\n", 1)[1].decode("utf-8")
        out = []
        for block in body.split("\n\n")[:-1]:
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":") or not line:
                    continue
                key, _, value = line.partition(": ")
                assert key in ("event", "data", "id", "retry"), f"a stray SSE line {line!r}"
                fields[key] = fields.get(key, "") + value
            if "data" in fields:
                json.loads(fields["data"])
            out.append(fields)
        return out

    def close(self) -> None:
        self.sock.close()


# -- item 4: exhaustion without logging in ----------------------------------------------------------

@needs_broker
def test_a_flood_of_idle_connections_at_the_open_file_limit_does_not_lock_guides_out(tmp_path, console_broker, console_publisher):
    """`footfall console` as its own process with 256 open files: 400 connections that never finish
    their request, then a guide who logged in before keeps the stream and can load the page."""
    port = free_port()
    config = tmp_path / "footfall.toml"
    config.write_text(f'store_id = "{STORE}"\ntimezone = "Asia/Shanghai"\n[mqtt]\nurl = "{console_broker.url}"\n'
                      f'[console]\nlanguage = "en"\nlisten = "127.0.0.1:{port}"\npassword_hash = "{PASSWORD_HASH}"\n')
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))  # noqa: E731
    proc = subprocess.Popen([sys.executable, "-m", "footfall", "console", "--config", str(config)],
                            cwd=REPO.parent, preexec_fn=limit, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    flood: list[socket.socket] = []
    try:
        wait_until(lambda: answering(port), 20, "the console process to answer")
        cookie = session_cookie(port, "Wang Fang", PASSWORD)
        stream = Stream(port, cookie)
        stream.read_until(lambda d: b"event: hello" in d and b"event: broker" in d)
        wait_until(lambda: b'"connected":true' in stream.read_until(lambda d: True), 5, "the broker connection")
        for _ in range(400):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            flood.append(s)
        status, _, body = call(port, "GET", "/", headers={"Cookie": cookie})
        assert status == 200 and b"console-page" in body
        alert = console_publisher.alert("visit-after-flood")
        stream.read_until(lambda d: alert.event_id.encode() in d)
        assert proc.poll() is None
        stream.close()
    finally:
        for s in flood:
            s.close()
        proc.terminate()
        proc.wait(10)


def test_when_all_connections_are_taken_idle_ones_make_room_and_pages_streams_are_kept(make_console):
    console = make_console(max_connections=4)
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    streams = [Stream(console.port, cookie) for _ in range(3)]
    idle: list[socket.socket] = []
    try:
        for stream in streams:
            stream.read_until(lambda d: b"event: hello" in d)
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", console.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")
            idle.append(s)
        assert call(console.port, "GET", "/", headers={"Cookie": cookie})[0] == 200
        assert console.open_connections <= 4
        # The last free slot: a fourth page, straight after the answer that freed it.
        fourth = Stream(console.port, cookie)
        fourth.read_until(lambda d: b"event: hello" in d)
        refused = socket.create_connection(("127.0.0.1", console.port), timeout=5)
        assert refused.recv(100) == b"", "every slot serves a page: a newcomer is closed at once"
        refused.close()
        console._broadcast(con.sse_frame("status", {"state": "online"}))
        for stream in (*streams, fourth):
            stream.read_until(lambda d: b'"state":"online"' in d)
        fourth.close()
    finally:
        for sock in idle:
            sock.close()
        for stream in streams:
            stream.close()


def test_a_request_dripping_in_is_cut_off_at_the_request_timeout(make_console):
    console = make_console(request_timeout="1s")
    s = socket.create_connection(("127.0.0.1", console.port), timeout=5)
    s.sendall(b"GET /login HTTP/1.1\r\n")
    closed_after = None
    started = time.monotonic()
    try:
        for _ in range(30):   # one header byte every 0.2 s: never idle long enough for a read timeout
            s.sendall(b"X")
            s.settimeout(0.2)
            try:
                if s.recv(4096) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
    except (BrokenPipeError, ConnectionResetError):
        closed_after = time.monotonic() - started
    finally:
        s.close()
    assert closed_after is not None, "the console kept a request that never ends"
    print(f"\na dripping request was cut off after {closed_after:.1f} s (request_timeout 1 s)")


def test_parallel_logins_compute_at_most_login_concurrency_hashes_at_once(make_console, monkeypatch):
    """200 login attempts at once: at most 2 scrypt computations (16 MiB each) run together; the
    rest are answered 503 at once instead of queueing in memory."""
    console = make_console(login_per_minute=100_000, login_failures_free=1000)
    counted = HashCounter(con.verify_password)
    monkeypatch.setattr(con, "verify_password", counted)
    barrier = threading.Barrier(50)

    def attempt(i: int) -> int:
        if i < 50:
            barrier.wait()
        try:
            return post_login(console.port, f"guest {i}", "guess")[0]
        except OSError:
            return 0   # reset: the answer did not arrive

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(attempt, range(200)))
    print(f"\n200 parallel logins: at most {counted.peak} hashes at once; "
          f"{statuses.count(503)} answered 503, {statuses.count(401)} answered 401")
    assert counted.peak <= console.config.console.login_concurrency
    assert set(statuses) <= {401, 503} and statuses.count(503) > 0, "every attempt is answered"


@needs_broker
def test_two_hundred_parallel_logins_hold_the_memory_of_login_concurrency_hashes_only(tmp_path):
    """`footfall console` as its own process (rate limits out of the way): 200 logins at once raise
    its peak memory by about login_concurrency x 16 MiB, not by a hash per connection."""
    port = free_port()
    config = tmp_path / "footfall.toml"
    config.write_text(f'store_id = "{STORE}"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[console]\n'
                      f'listen = "127.0.0.1:{port}"\npassword_hash = "{PASSWORD_HASH}"\n'
                      'login_per_minute = 100000\nlogin_failures_free = 1000\n')
    before, after, statuses = logins_at_once(["console", "--config", str(config)], port, 200)
    print(f"\n200 parallel logins: peak memory {before} -> {after} MiB; "
          f"{statuses.count(401)} answered 401, {statuses.count(503)} answered 503")
    assert after - before <= 2 * 16 + 48
    assert set(statuses) <= {401, 503}, "every attempt is answered"


# -- item 5: login guessing -------------------------------------------------------------------------

def test_a_client_guessing_passwords_must_wait_and_its_waits_do_not_hash(make_console, monkeypatch):
    console = make_console(login_failures_free=3, login_backoff="30s")
    assert [post_login(console.port, "Wang Fang", f"guess {i}")[0] for i in range(3)] == [401] * 3
    hashed = []
    monkeypatch.setattr(con, "verify_password", lambda p, s: hashed.append(p) or False)
    status, _, page = call(console.port, "POST", "/login", f"name=Wang+Fang&password={PASSWORD.replace(' ', '+')}",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 429 and refusal_shown(page) == ["wait"]
    status, response = post_login(console.port, "Wang Fang", PASSWORD)
    assert status == 429 and 1 <= int(response.getheader("Retry-After") or 0) <= 30
    assert hashed == [], "a client that must wait gets no hash computed"
    other_status, _ = post_login(console.port, "Wang Fang", "guess", source="127.0.0.2")
    assert other_status == 401, "another address is not held back by this one's failures"


def test_all_clients_together_are_held_to_login_per_minute(make_console):
    console = make_console(login_per_minute=6)
    got = [post_login(console.port, "Wang Fang", "guess", source=f"127.0.0.{i}")[0] for i in range(10, 16)]
    assert got == [401] * 6
    status, response = post_login(console.port, "Wang Fang", PASSWORD, source="127.0.0.99")
    assert status == 429 and int(response.getheader("Retry-After")) > 0


def test_the_shared_password_never_logs_in_as_a_guide_with_a_token(make_console):
    console = make_console()
    for name in ("Li Na", "li na", "  LI   NA "):
        assert post_login(console.port, name, PASSWORD)[0] == 401, name
    status, response = post_login(console.port, "li  na", GUIDE_TOKEN)
    assert status == 303
    cookie = response.getheader("Set-Cookie").split(";")[0]
    stream = Stream(console.port, cookie)
    try:
        assert b'"guide":"Li Na"' in stream.read_until(lambda d: b"event: hello" in d), "the configured spelling"
    finally:
        stream.close()
    assert post_login(console.port, "Wang Fang", PASSWORD)[0] == 303


@pytest.mark.parametrize("name", ["Li\u200bNa", "LiNa", "Li Na\u200b", "\ufeffLi Na", "Li\u2060 Na",
                                  "Ｌｉ　Ｎａ", "Li\u3164Na", "Li\u034fNa", "Li\u202eNa", "lI nA"])
def test_the_shared_password_never_logs_in_as_a_guide_spelled_with_invisible_or_wide_characters(make_console, name):
    """A guide's name padded with characters that show as nothing, in full-width letters, or
    without its space is still that guide's name: only the guide's token logs in with it."""
    console = make_console()
    assert post_login(console.port, name, PASSWORD)[0] == 401
    status, response = post_login(console.port, name, GUIDE_TOKEN)
    assert status == 303
    stream = Stream(console.port, response.getheader("Set-Cookie").split(";")[0])
    try:
        assert b'"guide":"Li Na"' in stream.read_until(lambda d: b"event: hello" in d), "the configured spelling"
    finally:
        stream.close()


def test_a_guide_name_with_a_control_character_never_logs_in(make_console):
    console = make_console()
    assert post_login(console.port, "Wang\x07Fang", PASSWORD)[0] == 401
    assert post_login(console.port, "Wang Fang", PASSWORD)[0] == 303


@pytest.mark.parametrize("shared", [True, False])
def test_every_login_attempt_costs_one_hash_of_the_same_cost_whatever_the_name(make_console, monkeypatch, shared):
    """Login timing cannot tell configured guide names from others: each attempt verifies exactly
    one hash with the same scrypt parameters, a known name or not, with or without a shared password."""
    console = make_console(**({} if shared else {"password_hash": None}))
    verified: list[str] = []
    verify = con.verify_password
    monkeypatch.setattr(con, "verify_password", lambda p, s: verified.append(s) or verify(p, s))
    for name, secret in (("Li Na", "wrong"), ("Nobody Here", "wrong"), ("Li Na", PASSWORD),
                         ("Li Na", GUIDE_TOKEN), ("Wang Fang", PASSWORD)):
        verified.clear()
        post_login(console.port, name, secret)
        assert len(verified) == 1, f"{name!r}: {len(verified)} hashes verified"
        assert verified[0].split("$")[1:4] == ["16384", "8", "1"], name


# -- item 6: malformed broker messages ------------------------------------------------------------

@needs_broker
def test_malformed_broker_messages_never_break_the_stream_of_any_page(make_console, console_broker, console_publisher, caplog):
    console = make_console(console_broker.url)
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    before = Stream(console.port, cookie)
    before.read_until(lambda d: b"event: broker" in d)
    bad = [
        (events.ALERT_ARRIVAL, b'{"event_id":"e-1\\nevent: ack","visit_event_id":"v","name":"x"}'),
        (events.ALERT_ARRIVAL, b'{"event_id":"e-2\\r","visit_event_id":"v"}'),
        (events.ALERT_NO_SHOW, b'{"event_id":7,"member_id":"m"}'),
        (events.ALERT_ACK, b'{"visit_event_id":"\\ud800","guide":"g","event_id":"a-1"}'),
        (events.ALERT_ACK, b'{"visit_event_id":"v","guide":["g"]}'),
        (events.ALERT_ACK, b'\xc3\x28 not utf-8'),
        (events.COUNTS, b'{"date":"2026-11-30","visits":NaN,"reentries":0,"member_visits":0,"by_hour":[]}'),
        (events.STATUS, b'"offline"'),
        (events.STATUS, b'{"state":{"x":1}}'),
    ]
    with caplog.at_level(logging.WARNING, logger="footfall.console.server"):
        for name, body in bad + bad:
            console_publisher.raw(name, body)
        good = console_publisher.alert("visit-good")
        before.read_until(lambda d: good.event_id.encode() in d)
    after = Stream(console.port, cookie)
    try:
        after.read_until(lambda d: good.event_id.encode() in d)
        for stream in (before, after):
            frames = stream.frames()
            assert [f.get("id") for f in frames if f.get("event") == "alert"] == [good.event_id]
            assert not [f for f in frames if f.get("event") == "ack"]
        assert sum(console.dropped.values()) == 2 * len(bad)
        warnings = [r for r in caplog.records if "dropped a message" in r.getMessage()]
        assert len(warnings) == len(console.dropped) == 8, "each topic and reason is logged once, then counted"
        assert all("\n" not in r.getMessage() for r in warnings)
    finally:
        before.close()
        after.close()



@needs_broker
def test_an_erasure_reaches_open_streams_at_once_and_leaves_nothing_of_the_member_to_replay(
        make_console, console_broker, console_publisher):
    console = make_console(console_broker.url)
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    erased = console_publisher.alert("visit-erased")  # member m-1, "Li Wei"
    other = ArrivalAlert("m-2", "Sun Li", "silver", "visit-other", None, {}, store_id=STORE, ts=datetime.now(SH))
    console_publisher.raw(events.ALERT_ARRIVAL, json.dumps(other.to_json()).encode())
    open_page = Stream(console.port, cookie)
    try:
        open_page.read_until(lambda d: erased.event_id.encode() in d and other.event_id.encode() in d)
        deleted = events.MemberDeleted(member_id="m-1", store_id=STORE, ts=datetime.now(SH))
        console_publisher.raw(events.MEMBERS_DELETED, json.dumps(deleted.to_json()).encode())
        open_page.read_until(lambda d: b"event: erased" in d)
        assert [json.loads(f["data"]) for f in open_page.frames() if f.get("event") == "erased"] == [{"member_id": "m-1"}]
    finally:
        open_page.close()
    reopened = Stream(console.port, cookie)
    try:
        reopened.read_until(lambda d: other.event_id.encode() in d)
        assert b"m-1" not in reopened.data and b"Li Wei" not in reopened.data
        assert erased.event_id.encode() not in reopened.data
    finally:
        reopened.close()

# -- item 12: cross-origin posts ----------------------------------------------------------------------

def test_an_ack_from_another_origin_without_json_or_for_another_host_is_refused(make_console):
    console = make_console()
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    port = console.port
    other = f"http://127.0.0.1:{port + 1}"
    assert post_ack(port, cookie, "v-1", Origin=other)[0] == 403
    assert post_ack(port, cookie, "v-1", Origin="null")[0] == 403
    assert post_ack(port, cookie, "v-1", Origin=f"http://127.0.0.1:{port}", Sec_Fetch_Site="same-site")[0] == 403
    assert post_ack(port, cookie, "v-1", Content_Type="text/plain")[0] == 415
    assert post_ack(port, cookie, "v-1", Host=f"rebound.example:{port}")[0] == 421
    assert call(port, "GET", "/events", headers={"Host": "rebound.example", "Cookie": cookie})[0] == 421
    status, _ = post_login(port, "Wang Fang", PASSWORD)
    assert status == 303
    assert call(port, "POST", "/login", "name=x&password=y",
                {"Content-Type": "application/x-www-form-urlencoded", "Origin": other})[0] == 403
    # The console's own page: same origin, JSON. The broker is down here, so 503 means "accepted".
    assert post_ack(port, cookie, "v-1", Sec_Fetch_Site="same-origin")[0] == 503


@pytest.mark.skipif(chromium_paths() is None or mosquitto_path() is None, reason=f"{MISSING} and mosquitto")
def test_a_page_on_another_port_of_the_same_host_cannot_post_an_ack_in_a_guides_name(make_console, console_broker, tmp_path):
    """The classic same-site forgery, in Chromium: a guide is logged in; a page served from another
    port of the same host posts a text/plain form whose body is valid JSON, and fires a no-cors
    fetch. The session cookie (SameSite=Strict) goes along, since the site is the same; no ack
    may be published."""
    console = make_console(console_broker.url)
    target = console.url + "/ack"
    evil = (f'<!doctype html><html><body><form id="f" method="post" action="{target}" enctype="text/plain">'
            '<input name=\'{"visit_event_id":"v-forged-form","x":"\' value=\'"}\'></form><script>'
            f'fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",'
            ' body: JSON.stringify({visit_event_id: "v-forged-fetch"})});'
            'setTimeout(() => document.getElementById("f").submit(), 300);</script></body></html>').encode()

    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_bytes(evil)
    evil_server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=evil_server.serve_forever, daemon=True).start()
    acks = Subscriber(console_broker.port, events.topic("footfall", STORE, events.ALERT_ACK))
    driver = start_chromium(tmp_path / "profile")
    try:
        login(driver, console.url, "Wang Fang", PASSWORD)
        wait_until(lambda: driver.get_cookies(), 5, "the session cookie")
        driver.get(f"http://127.0.0.1:{evil_server.server_address[1]}/")
        wait_until(lambda: driver.current_url.startswith(target), 5, "the forged form to be posted")
        assert "cross-origin request refused" in driver.page_source
        # A real guide's ack, sent after the forgeries, is the first (and only) one to arrive.
        status, _ = post_ack(console.port, session_cookie(console.port, "Wang Fang", PASSWORD), "v-real")
        assert status == 200
        got = acks.wait_for(lambda ms: ms, 5, "the real ack")
        time.sleep(0.5)
        assert [m.payload["visit_event_id"] for m in acks.messages] == ["v-real"], got
    finally:
        driver.quit()
        acks.close()
        evil_server.shutdown()
        evil_server.server_close()


# -- item 15: bounded memory ------------------------------------------------------------------------

@needs_broker
def test_acks_are_bounded_and_a_page_gets_only_those_of_the_alerts_it_is_shown(make_console, console_broker, console_publisher):
    console = make_console(console_broker.url, max_acks=10)
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    live = Stream(console.port, cookie)
    live.read_until(lambda d: b"event: hello" in d)
    shown = console_publisher.alert("visit-shown")
    for i in range(60):
        ack = {"visit_event_id": f"visit-{i}", "guide": "Other Console", "ts": datetime.now(SH).isoformat(),
               "event_id": f"ack-{i}", "store_id": STORE}
        console_publisher.raw(events.ALERT_ACK, json.dumps(ack).encode())
    console_publisher.raw(events.ALERT_ACK, json.dumps({"visit_event_id": "visit-shown", "guide": "Li Na"}).encode())
    live.read_until(lambda d: b'"guide":"Li Na"' in d)   # the last ack has reached the console
    stream = Stream(console.port, cookie)
    try:
        stream.read_until(lambda d: b"event: ack" in d and shown.event_id.encode() in d)
        time.sleep(0.2)
        stream.read_until(lambda d: True)
        acks = [json.loads(f["data"]) for f in stream.frames() if f.get("event") == "ack"]
        assert [a["visit_event_id"] for a in acks] == ["visit-shown"]
        assert console.acks_kept <= 10
    finally:
        stream.close()
        live.close()


@needs_broker
def test_a_page_that_stops_reading_is_disconnected_while_the_others_keep_up(make_console, console_broker, console_publisher):
    console = make_console(console_broker.url, stream_queue_bytes=200_000, request_timeout="2s")
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    stalled = Stream(console.port, cookie, rcvbuf=4096)
    healthy = Stream(console.port, cookie)
    try:
        healthy.read_until(lambda d: b"event: hello" in d)
        last = None
        for i in range(120):   # about 5 MB: more than the socket buffers and the queue can hold
            last = console_publisher.alert(f"visit-{i}", pad=40_000)
            sent = last.event_id.encode()
            healthy.read_until(lambda d: sent in d, 10)  # noqa: B023  (used before the next round)
            healthy.data = healthy.data[-200_000:]
        assert last is not None
        got = stalled.read_until(lambda d: stalled.closed, 15)   # fails unless the console closes it
        print(f"\nthe stalled page read {len(got)} bytes before its stream was closed")
        assert last.event_id.encode() not in got
        assert console.streams_dropped == 1
        assert not healthy.closed
    finally:
        stalled.close()
        healthy.close()


# -- item 17: one ack per visit, HEAD /events ------------------------------------------------------

@needs_broker
def test_many_clicks_at_once_publish_one_ack_for_the_visit(make_console, console_broker):
    console = make_console(console_broker.url)
    cookies = [session_cookie(console.port, name, PASSWORD) for name in ("Wang Fang", "Zhao Lei")]
    acks = Subscriber(console_broker.port, events.topic("footfall", STORE, events.ALERT_ACK))
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    try:
        for visit in ("visit-a", "visit-b", "visit-c"):
            barrier = threading.Barrier(16)

            def click(i: int, visit: str = visit, barrier: threading.Barrier = barrier) -> tuple[int, dict[str, Any]]:
                barrier.wait()
                for _ in range(3):
                    try:
                        return post_ack(console.port, cookies[i % 2], visit)
                    except ConnectionResetError:
                        time.sleep(0.1)   # refused before the request was read: click again
                return 0, {}

            with ThreadPoolExecutor(16) as pool:
                answers[visit] = list(pool.map(click, range(16)))
        acks.wait_for(lambda ms: len(ms) >= 3, 5, "the acks")
        time.sleep(0.5)
        assert sorted(m.payload["visit_event_id"] for m in acks.messages) == ["visit-a", "visit-b", "visit-c"]
        for visit, got in answers.items():
            assert sorted(s for s, _ in got) == [200] + [409] * 15, (visit, got)
            assert len({a["guide"] for _, a in got}) == 1, "every click is told who took it"
    finally:
        acks.close()


def test_head_events_answers_the_headers_and_ends(make_console):
    console = make_console()
    cookie = session_cookie(console.port, "Wang Fang", PASSWORD)
    with socket.create_connection(("127.0.0.1", console.port), timeout=5) as s:
        s.sendall(f"HEAD /events HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\nCookie: {cookie}\r\n\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            pytest.fail(f"HEAD /events did not end; got {data[:300]!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"text/event-stream" in head
    assert body == b""


def test_the_console_uses_its_own_broker_user_when_configured(tmp_path):
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(tmp_path / "broker", users={"sh-001": "box-secret", "sh-001-console": "console-secret"}).start()
    try:
        config = console_config(b.url, {"username": "sh-001", "password": "wrong"}, mqtt_username="sh-001-console",
                                mqtt_password="console-secret", mqtt_client_id="console-sh-001")
        c = con.Console(config, listen="127.0.0.1:0").start()
        try:
            wait_until(lambda: c.broker_connected, 5, "the console to log in as its own user")
        finally:
            c.stop()
    finally:
        b.stop()
