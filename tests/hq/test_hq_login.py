"""Head office against a PostgreSQL that asks for a password: a refused one stops `footfall hq
collect` (also when it is changed under a running collector) and `footfall hq serve`, naming
where the password came from; the dashboard tells a refused password from a database out of
reach; the collector's log is JSON lines, as the store daemon's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, mosquitto_path, wait_until
from support.browserless import get_json, session_cookie

from footfall.cli.main import main
from footfall.config.hq import parse_hq_config
from footfall.config.hq_dashboard import DashboardConfig
from footfall.hq import dashboard as dash
from footfall.hq.db import Login
from footfall.tooling.local_postgres import LocalPostgres
from footfall.web.passwords import hash_password

RIGHT = "the right one"
DASHBOARD_PASSWORD = "figures"


def require_password(postgres: LocalPostgres, role: str, password: str) -> None:
    """A superuser `role` that must log in with `password` over TCP (scram-sha-256), the others as before."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
        hba = postgres.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)  # the postmaster reads pg_hba.conf on SIGHUP


@pytest.fixture
def guarded(postgres: LocalPostgres, hq_db: str) -> Iterator[str]:
    """The URL of a migrated database as a role that needs RIGHT as its password."""
    role = f"hq_pw_{uuid.uuid4().hex[:8]}"
    require_password(postgres, role, RIGHT)
    yield hq_db.replace("footfall@", f"{role}@", 1)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def footfall(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_a_refused_password_stops_hq_collect_at_once_naming_where_it_came_from(guarded, tmp_path):
    secret = tmp_path / "hq-db-password"
    secret.write_text("a wrong one\n")
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "{guarded}"\npassword_file = "{secret}"\n')
    started = time.monotonic()
    done = footfall("hq", "collect", "--config", str(config))
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "PostgreSQL refused the password of user hq_pw_" in done.stderr
    assert f"database.password_file ({secret})" in done.stderr
    assert "a wrong one" not in done.stderr + done.stdout, "the password itself is never shown"
    assert elapsed < 20, "no retrying a password that cannot pass"

    config.write_text(f'[database]\nurl = "{guarded}"\n')
    done = footfall("hq", "collect", "--config", str(config), env={"FOOTFALL_HQ_DB_PASSWORD": "a wrong one"})
    assert done.returncode == 2 and "the password came from $FOOTFALL_HQ_DB_PASSWORD" in done.stderr, done.stderr
    done = footfall("hq", "collect", "--config", str(config), env={"FOOTFALL_HQ_DB_PASSWORD": ""})
    assert done.returncode == 2 and "refused the password" in done.stderr, done.stderr


def test_hq_serve_and_hq_counts_stop_on_a_refused_password_too(guarded, tmp_path, monkeypatch, capsys):
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "{guarded}"\n[dashboard]\nlisten = "127.0.0.1:0"\n'
                      f'password_hash = "{hash_password(DASHBOARD_PASSWORD)}"\n')
    done = footfall("hq", "serve", "--config", str(config), env={"FOOTFALL_HQ_DB_PASSWORD": "a wrong one"})
    assert done.returncode == 2 and "the password came from $FOOTFALL_HQ_DB_PASSWORD" in done.stderr, done.stderr
    monkeypatch.setenv("FOOTFALL_HQ_DB_PASSWORD", "a wrong one")
    assert main(["hq", "counts", "--config", str(config)]) == 2
    assert "refused the password" in capsys.readouterr().err
    monkeypatch.setenv("FOOTFALL_HQ_DB_PASSWORD", RIGHT)
    assert main(["hq", "counts", "--config", str(config), "--json"]) == 0


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_hq_collect_logs_json_and_stops_when_its_password_is_changed_under_it(guarded, tmp_path):
    broker = Broker(tmp_path / "mosquitto").start()
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "{guarded}"\n[mqtt]\nurl = "{broker.url}"\nusername = "hq-collector"\n'
                      f'[collector]\nreconcile = false\nbatch_interval = "0.05s"\nmax_past = "87840h"\n')
    log = tmp_path / "collector.log"
    with open(log, "wb") as out:
        collector = subprocess.Popen([sys.executable, "-m", "footfall", "hq", "collect", "--config", str(config)],
                                     stdout=out, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "FOOTFALL_HQ_DB_PASSWORD": RIGHT})
    store = paho.Client(CallbackAPIVersion.VERSION2, client_id="sh-001", protocol=MQTTProtocolVersion.MQTTv5)
    try:
        wait_until(lambda: b"connected to" in log.read_bytes(), 30, "the collector on the broker")
        time.sleep(0.3)
        store.connect("127.0.0.1", broker.port)
        store.loop_start()

        def visit() -> None:
            ts = "2026-11-23T10:00:00.000+08:00"
            body = {"event_id": str(uuid.uuid4()), "store_id": "sh-001", "ts": ts, "kind": "visit",
                    "visitor_id": "v", "member_id": None, "role": "visitor", "camera_id": "door-1",
                    "first_seen_ts": ts, "identified": True}
            store.publish("footfall/sh-001/visits", json.dumps(body), qos=1).wait_for_publish(5)

        visit()
        with psycopg.connect(guarded, password=RIGHT) as conn:
            wait_until(lambda: conn.execute("SELECT count(*) FROM visits").fetchone()[0] == 1, 20, "the visit stored")
            role = conn.info.user
            conn.execute(f"ALTER ROLE {role} PASSWORD 'changed'")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s "
                         "AND pid <> pg_backend_pid()", (role,))
        visit()  # its write finds the connection gone; logging in again is refused
        assert collector.wait(60) == 2
        stderr = collector.stderr.read() if collector.stderr else ""
        assert "refused the password" in stderr and "$FOOTFALL_HQ_DB_PASSWORD" in stderr, stderr
        lines = log.read_text().splitlines()
        assert lines, "the collector logged"
        for line in lines:  # the store daemon's format: one JSON object a line
            record = json.loads(line)
            assert {"ts", "level", "logger", "msg"} <= set(record), line
        assert any(json.loads(line)["msg"].startswith("connected to") for line in lines)
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait(10)
        store.loop_stop()
        broker.stop()


def test_the_dashboard_tells_a_refused_password_from_a_database_out_of_reach(guarded, tmp_path, caplog):
    secret = tmp_path / "hq-db-password"
    secret.write_text("a wrong one\n")
    hq = parse_hq_config({"database": {"url": guarded, "password_file": str(secret)}})
    config = DashboardConfig.model_validate({"language": "en", "password_hash": hash_password(DASHBOARD_PASSWORD),
                                             "listen": "127.0.0.1:0", "query_timeout": "1s"})
    for login, reason, told in (
            (Login.of(hq.database), "password_refused", f"database.password_file ({secret})"),
            (Login("postgresql://nobody@127.0.0.1:1/none", None, "no password given"), "unreachable",
             "the database is not reachable (127.0.0.1:1/none)")):
        pool = dash.open_pool(login.url, login.password, config)
        served = dash.Dashboard(config, dash.PostgresReadSide(pool, login), silent_after=timedelta(minutes=10)).start()
        try:
            cookie = session_cookie(served.port, "Wang Fang", DASHBOARD_PASSWORD)
            caplog.clear()
            status, answer = get_json(served.port, "/api/chain", cookie)
            assert status == 503 and answer["reason"] == reason, answer
            assert answer["error"] == dash.FAILURES[reason]
            assert "a wrong one" not in json.dumps(answer) and str(secret) not in json.dumps(answer)
            logged = [r.getMessage() for r in caplog.records if r.name == "footfall.hq.dashboard"]
            assert any(told in message for message in logged), logged
        finally:
            served.stop()
            pool.close(timeout=1)


def test_a_login_that_passes_is_no_refusal(guarded):
    assert Login(guarded, RIGHT, "test").diagnose() is None
    found = Login(guarded, "wrong", "test").diagnose()
    assert found is not None and found[0] == "password_refused"
