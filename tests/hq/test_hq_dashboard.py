"""The HQ dashboard's server: config, login and its limits, the request checks, the JSON endpoints.

These run the real HTTP server on loopback over an in-memory read side that records what it
was asked; tests/hq/test_hq_dashboard_browser.py runs the page in Chromium over a real PostgreSQL.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pytest
from support.browserless import FORM, call, get_json, refusal_shown, session_cookie
from support.dashboard import HASH, NOW, PASSWORD, TODAY, TOKEN, MemoryReadSide, dashboard_config

from footfall.config.hq import parse_hq_config
from footfall.config.hq_dashboard import DashboardConfig
from footfall.config.schema import ConfigError
from footfall.hq import dashboard as dash


def log_in(port: int, name: str = "Wang Fang", secret: str = PASSWORD) -> str:
    """The Cookie header of a new session, with the shared password by default."""
    return session_cookie(port, name, secret)


# -- configuration -----------------------------------------------------------------------------

def test_the_dashboard_section_is_part_of_hq_toml_and_checks_its_keys():
    config = parse_hq_config({"dashboard": {"language": "en", "password_hash": HASH, "listen": "0.0.0.0:9000"}})
    assert config.dashboard.language == "en" and config.dashboard.listen == "0.0.0.0:9000"
    assert parse_hq_config({}).dashboard.language == "zh"
    for bad, key in (({"password_hash": "plain"}, "dashboard.password_hash"),
                     ({"users": {"a": "plain"}}, "dashboard.users"),
                     ({"listen": "9000"}, "dashboard.listen"),
                     ({"timezone": "Mars/Olympus"}, "dashboard.timezone"),
                     ({"language": "fr"}, "dashboard.language"),
                     ({"colour": "red"}, "dashboard.colour"),
                     ({"database_url": "postgresql://hq:secret@replica/footfall"}, "dashboard.database_url"),
                     ({"database_url": "mysql://replica/footfall"}, "dashboard.database_url"),
                     ({"allowed_hosts": ["http://hq.example.com"]}, "dashboard.allowed_hosts"),
                     ({"users": {"Zhao Min": HASH, "zhao\u200bmin": HASH}}, "dashboard.users")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_hq_config({"dashboard": bad})


def test_the_dashboard_refuses_to_start_without_a_login():
    with pytest.raises(ConfigError, match=r"dashboard\.password_hash"):
        dash.Dashboard(DashboardConfig(), MemoryReadSide())


def test_login_accepts_the_shared_password_with_a_name_or_a_users_own_token():
    d = dash.Dashboard(dashboard_config(), MemoryReadSide())
    assert d.login("  Wang   Fang ", PASSWORD) == "Wang Fang"
    assert d.login("Zhao Min", TOKEN) == "Zhao Min"
    assert d.login("Wang Fang", TOKEN) is None
    assert d.login("", PASSWORD) is None


def test_the_login_limiter_takes_the_dashboards_keys():
    limiter = dash.login_limiter(dashboard_config(login_failures=3, login_backoff="4s", login_per_minute=7,
                                         login_clients_tracked=99))
    assert (limiter.failures_free, limiter.backoff, limiter.per_minute, limiter.max_clients) == (3, 4.0, 7, 99)


def test_date_parameters_are_checked_and_bounded():
    q = lambda **kw: {k: [v] for k, v in kw.items()}  # noqa: E731
    assert dash.parse_range({}, TODAY, 366) == (TODAY - timedelta(days=13), TODAY)
    assert dash.parse_range(q(**{"from": "2026-11-01", "to": "2026-11-03"}), TODAY, 366) == \
        (date(2026, 11, 1), date(2026, 11, 3))
    for bad, message in ((q(**{"from": "2026-11-05", "to": "2026-11-03"}), "after"),
                         (q(to="23/11/2026"), "to: expected a date"),
                         (q(**{"from": "2024-01-01", "to": "2026-11-03"}), "at most 366"),
                         ({"to": ["2026-11-01", "2026-11-02"]}, "given 2 times")):
        with pytest.raises(dash.BadRequest, match=message):
            dash.parse_range(bad, TODAY, 366)
    with pytest.raises(dash.BadRequest, match="store: not a store id"):
        dash.parse_store(q(store="sh-001/../x"))
    with pytest.raises(dash.BadRequest, match="limit"):
        dash.parse_limit(q(limit="100000"))


# -- the server ----------------------------------------------------------------------------------

def test_every_page_and_endpoint_but_the_login_needs_a_session(served):
    d, read = served()
    assert call(d.port, "GET", "/")[0] == 303
    for path in ("/api/chain", "/api/stores", "/api/meta", "/api/hourly?store=sh-001"):
        assert call(d.port, "GET", path)[0] == 401
        assert call(d.port, "GET", path, headers={"Cookie": f"{dash.COOKIE}=forged"})[0] == 401
    status, response, body = call(d.port, "GET", "/login")
    assert status == 200 and b'id="login-form"' in body
    csp = response.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert call(d.port, "GET", "/dashboard.js")[0] == 200
    assert read.calls == []


def test_a_login_gives_a_strict_http_only_cookie_and_a_logout_ends_it(served):
    d, _ = served()
    status, response, body = call(d.port, "POST", "/login", b"name=Wang+Fang&password=wrong", FORM)
    assert status == 401 and response.getheader("Set-Cookie") is None and refusal_shown(body) == ["failed"]
    status, response, _ = call(d.port, "POST", "/login", f"name=Zhao+Min&password={TOKEN}".encode(), FORM)
    assert status == 303 and response.getheader("Location") == "/"
    cookie_header = response.getheader("Set-Cookie")
    assert cookie_header.startswith(f"{dash.COOKIE}=") and "HttpOnly" in cookie_header and "SameSite=Strict" in cookie_header
    cookie = cookie_header.split(";")[0]
    assert get_json(d.port, "/api/meta", cookie)[1]["user"] == "Zhao Min"
    status, response, _ = call(d.port, "POST", "/logout", b"", {**FORM, "Cookie": cookie})
    assert status == 303 and "Max-Age=0" in response.getheader("Set-Cookie")
    assert call(d.port, "GET", "/api/meta", headers={"Cookie": cookie})[0] == 401


def test_posts_must_be_small_same_origin_forms(served):
    d, _ = served()
    good = f"name=x&password={PASSWORD}".encode()
    host = f"127.0.0.1:{d.port}"
    assert call(d.port, "POST", "/login", good, {**FORM, "Origin": "http://evil.example"})[0] == 403
    assert call(d.port, "POST", "/login", good, {**FORM, "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert call(d.port, "POST", "/login", good, {"Content-Type": "text/plain"})[0] == 415
    assert call(d.port, "POST", "/login", good, {"Content-Type": "application/json"})[0] == 415
    assert call(d.port, "POST", "/login", b"x" * (dash.MAX_BODY + 1), FORM)[0] == 413
    assert call(d.port, "POST", "/nothing", good, FORM)[0] == 404
    assert call(d.port, "POST", "/login", good, {**FORM, "Origin": f"http://{host}", "Host": host})[0] == 303


def test_failed_logins_are_limited_per_address_even_for_the_right_password(served):
    d, _ = served(login_failures=2)
    for _ in range(2):
        assert call(d.port, "POST", "/login", b"name=x&password=guess", FORM)[0] == 401
    status, response, body = call(d.port, "POST", "/login", f"name=x&password={PASSWORD}".encode(), FORM)
    assert status == 429 and int(response.getheader("Retry-After")) >= 1 and refusal_shown(body) == ["wait"]


def test_each_endpoint_answers_its_read_function_for_the_asked_range(served):
    d, read = served()
    cookie = log_in(d.port)
    status, meta = get_json(d.port, "/api/meta", cookie)
    assert status == 200 and meta["today"] == "2026-11-23" and meta["user"] == "Wang Fang"
    assert meta["language"] == "en" and meta["silent_after_s"] == 600

    rng = "from=2026-11-20&to=2026-11-23"
    span = (date(2026, 11, 20), date(2026, 11, 23))
    status, chain = get_json(d.port, f"/api/chain?{rng}", cookie)
    assert status == 200 and (chain["from"], chain["to"]) == ("2026-11-20", "2026-11-23")
    assert [r["visits"] for r in chain["rows"]] == [10, 11, 12, 13]
    assert read.calls[-1] == ("chain_by_day", span)

    status, stores = get_json(d.port, "/api/stores?day=2026-11-22", cookie)
    assert status == 200 and stores["day"] == "2026-11-22" and stores["rows"][0]["visits"] == 41
    assert read.calls[-1] == ("store_table", (date(2026, 11, 22), timedelta(minutes=10), NOW))

    status, hourly = get_json(d.port, "/api/hourly?store=sh-001&day=2026-11-23", cookie)
    assert status == 200 and hourly["hours"][10:12] == [4, 9] and len(hourly["hours"]) == 24
    assert hourly["adopted"] == [11]
    assert read.calls[-2:] == [("store_hourly", ("sh-001", TODAY)), ("adopted_hours", ("sh-001", TODAY))]

    for path, name, key, value in (("conversion", "conversion_by_channel", "conversion", 0.75),
                                   ("response-times", "response_times", "p95_s", 29.0),
                                   ("disagreements", "disagreements", "reason", "no answer")):
        status, answer = get_json(d.port, f"/api/{path}?{rng}", cookie)
        assert status == 200 and answer["rows"][0][key] == value, path
        assert read.calls[-1] == (name, span)

    status, no_shows = get_json(d.port, f"/api/no-shows?{rng}&limit=20", cookie)
    assert status == 200 and no_shows["rows"][0]["appointment_id"] == "a-2"
    assert read.calls[-1] == ("no_show_list", (*span, 20))

    status, _ = get_json(d.port, "/api/chain", cookie)                 # default: the last 14 days to today
    assert read.calls[-1] == ("chain_by_day", (date(2026, 11, 10), TODAY))


def test_a_wrong_parameter_is_a_400_naming_it_and_reaches_no_query(served):
    d, read = served()
    cookie = log_in(d.port)
    for path, message in (("/api/chain?from=2026-11-25&to=2026-11-23", "from: 2026-11-25 is after to"),
                          ("/api/chain?to=yesterday", "to: expected a date"),
                          ("/api/chain?from=2020-01-01&to=2026-11-23", "at most 366"),
                          ("/api/hourly?day=2026-11-23", "store: required"),
                          ("/api/hourly?store=%3Cscript%3E", "store: not a store id"),
                          ("/api/no-shows?limit=0", "limit: must be 1..500")):
        status, answer = get_json(d.port, path, cookie)
        assert status == 400 and message in answer["error"], path
    assert get_json(d.port, "/api/unknown", cookie)[0] == 404
    assert read.calls == []


def test_a_database_failure_is_a_503_and_the_server_keeps_serving(served):
    d, read = served()
    cookie = log_in(d.port)
    read.fail = True
    status, answer = get_json(d.port, "/api/chain", cookie)
    assert status == 503 and answer == {"error": "the database did not answer", "reason": "no_answer"}
    read.fail = False
    assert get_json(d.port, "/api/chain", cookie)[0] == 200


def test_idle_connections_make_room_for_a_newcomer_and_are_closed_at_the_request_timeout(served):
    d, _ = served(max_connections=2, request_timeout="1s")
    idle = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)  # both are accepted and hold their slot, sending nothing
        assert call(d.port, "GET", "/login")[0] == 200, "the oldest idle connection made room"
        for s in idle:                       # the server closes an idle connection after request_timeout
            s.settimeout(5)
            assert s.recv(1024) == b""
        assert d.refused == 0
    finally:
        for s in idle:
            s.close()


# -- the command, on a real PostgreSQL ----------------------------------------------------------

def test_the_serve_command_reads_the_dashboards_database(hq_db, tmp_path):
    import signal
    import subprocess
    import sys

    run = [sys.executable, "-m", "footfall", "hq", "serve"]
    hashed = subprocess.run(run + ["--hash-password"], input=PASSWORD + "\n", capture_output=True, text=True,
                            timeout=60)
    assert hashed.returncode == 0 and hashed.stdout.startswith("scrypt$")
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n\n'
                      f'[dashboard]\ndatabase_url = "{hq_db}"\nlanguage = "en"\n'
                      f'password_hash = "{hashed.stdout.strip()}"\nlisten = "127.0.0.1:0"\n')
    server = subprocess.Popen(run + ["--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        address = None
        while address is None:  # the log: one JSON object a line, as the store daemon's
            line = json.loads(server.stdout.readline())
            assert {"ts", "level", "logger", "msg"} <= set(line), line
            if line["msg"].startswith("HQ dashboard: http://127.0.0.1:"):
                address = line["msg"]
        d = SimpleNamespace(port=int(address.rsplit(":", 1)[1]))
        cookie = log_in(d.port)
        status, chain = get_json(d.port, "/api/chain?from=2026-11-22&to=2026-11-23", cookie)
        assert status == 200 and [r["visits"] for r in chain["rows"]] == [0, 0]
        status, stores = get_json(d.port, "/api/stores", cookie)
        assert status == 200 and stores["rows"] == []
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(20) == 0


def test_visits_a_store_publishes_reach_the_local_hq_dashboard(tmp_path):
    """The demo's HQ: MQTT -> collector -> PostgreSQL -> dashboard, all real, on loopback."""
    import uuid
    from zoneinfo import ZoneInfo

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from support.broker import Broker, mosquitto_path, wait_until

    from footfall.tooling.local_hq import LocalHq, hq_unavailable

    if mosquitto_path() is None or hq_unavailable():
        pytest.skip(f"needs mosquitto and PostgreSQL: {hq_unavailable() or 'mosquitto is not installed'}")
    broker = Broker(tmp_path / "broker").start()
    hq = None
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-store", protocol=MQTTProtocolVersion.MQTTv5)
    try:
        hq = LocalHq(broker.url, timezones={"demo-store": "Asia/Shanghai"}).start()
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        now = datetime.now(ZoneInfo("Asia/Shanghai")).isoformat(timespec="milliseconds")
        messages = [("status", {"state": "online", "version": "0.1.0", "cameras": {"door-1": "streaming"},
                                "storage": "ok", "outbox_backlog": 2, "dead_letters": 1})]
        messages += [("visits", {"kind": "visit", "visitor_id": f"v-{i}", "member_id": "m-1" if i == 0 else None,
                                 "role": "member" if i == 0 else "visitor", "camera_id": "door-1",
                                 "first_seen_ts": now, "identified": True}) for i in range(3)]
        for name, body in messages:
            payload = {"event_id": str(uuid.uuid4()), "store_id": "demo-store", "ts": now, **body}
            publisher.publish(f"footfall/demo-store/{name}", json.dumps(payload), qos=1).wait_for_publish(5)
        d = SimpleNamespace(port=hq.dashboard.port if hq.dashboard else 0)
        cookie = log_in(d.port, "Demo", hq.password)

        def store_row():
            rows = get_json(d.port, "/api/stores", cookie)[1]["rows"]
            return rows[0] if rows and rows[0]["visits"] == 3 and rows[0]["state"] == "online" else None

        row = wait_until(store_row, 15, "the published visits on the dashboard")
        assert (row["store_id"], row["member_visits"], row["outbox_backlog"], row["dead_letters"], row["silent"]) == (
            "demo-store", 1, 2, 1, False)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        if hq is not None:
            hq.stop()
        broker.stop()
