"""The four services' systemd units (issue 19): how hard each is, and each run as its service.

`systemd-analyze security --offline=true` scores every shipped unit (and the daemon's with the
USB-camera drop-in). Then each unit's ExecStart runs the way its service would (tests/support/unit_sandbox.py:
a user of its own, the unit's credentials only, its system-call filter, no writable-and-executable
memory, /root hidden) against a real Mosquitto that wants passwords, and a real PostgreSQL that
wants one for the HQ services: the store daemon reports READY and goes online, the console serves
its login page and logs in to the broker as its own user, the collector stores a box's status
and its reconciliation logs in as its own user, the dashboard answers from the database.
Every password sits in a file only root could read; the services get them as credentials only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from support.broker import Broker, Subscriber, free_port, mosquitto_passwd_path, mosquitto_path, wait_until
from support.unit_sandbox import SERVICE_UID, Service, service_dir, start_service, unit_settings

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
FOOTFALL = Path(sys.executable).with_name("footfall")
BOX_UNITS = ["footfall.service", "footfall-console.service"]
HQ_UNITS = ["footfall-hq-collector.service", "footfall-hq-dashboard.service"]
# The exposure `systemd-analyze security` may give each unit at most (docs/deploy.md): the issue
# asks 3.0 of the box's units; every unit is held to what it measures now, with a little room.
EXPOSURE_LIMIT = 1.5

needs_broker = pytest.mark.skipif(mosquitto_path() is None or mosquitto_passwd_path() is None,
                                  reason="mosquitto (with mosquitto_passwd) is not installed")
needs_seccomp = pytest.mark.skipif(shutil.which("systemd-analyze") is None or os.geteuid() != 0,
                                   reason="runs a service as its own user (root needed) with systemd's "
                                          "system-call groups (systemd-analyze needed)")


def exposure(unit: Path) -> float:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert m, done.stdout[-500:] + done.stderr
    return float(m.group(1))


def test_every_service_has_a_unit():
    assert sorted(p.name for p in SYSTEMD.glob("*.service")) == sorted(BOX_UNITS + HQ_UNITS)


@pytest.mark.parametrize("unit", BOX_UNITS + HQ_UNITS)
def test_systemd_analyze_security_rates_the_unit_ok(unit, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    (tmp_path / unit).write_text((SYSTEMD / unit).read_text())
    assert exposure(tmp_path / unit) <= EXPOSURE_LIMIT


def test_usb_cameras_open_the_daemon_only_to_video_devices(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    unit = tmp_path / "footfall.service"
    unit.write_text((SYSTEMD / "footfall.service").read_text())
    (tmp_path / "footfall.service.d").mkdir()
    drop_in = (SYSTEMD / "footfall.service.d" / "usb-cameras.conf.example").read_text()
    (tmp_path / "footfall.service.d" / "usb-cameras.conf").write_text(drop_in)
    settings = unit_settings(unit)
    assert settings["PrivateDevices"][-1] == "no" and settings["DevicePolicy"] == ["closed"]
    assert settings["DeviceAllow"] == ["char-video4linux rw"]
    assert exposure(unit) <= EXPOSURE_LIMIT


# -- each unit run as its service ---------------------------------------------------------------

@pytest.fixture
def workdir() -> Iterator[Path]:
    with service_dir() as path:
        yield path


@pytest.fixture
def etc(tmp_path) -> Path:
    """Root's /etc/footfall: mode 0700, files 0600."""
    path = tmp_path / "etc-footfall"
    path.mkdir(mode=0o700)
    return path


def secret(etc: Path, name: str, value: str) -> None:
    (etc / name).write_text(value + "\n")
    (etc / name).chmod(0o600)


def box_config(etc: Path, broker: Broker, tables: str) -> None:
    """The box's footfall.toml in `etc`: store sh-001 on `broker` as user sh-001, whose password
    ("box secret") is a credential; `tables` follow."""
    (etc / "footfall.toml").write_text(f'store_id = "sh-001"\n[mqtt]\nurl = "{broker.url}"\nusername = "sh-001"\n'
                                       f'password_file = "/etc/footfall/mqtt-password"\n{tables}')
    secret(etc, "mqtt-password", "box secret")


def stop(service: Service, signum: int) -> int:
    service.process.send_signal(signum)
    return service.process.wait(30)


def clip(path: Path) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (320, 240))
    for i in range(10):
        writer.write(np.full((240, 320, 3), 20 * i, np.uint8))
    writer.release()
    path.chmod(0o644)
    return path


@needs_seccomp
@needs_broker
def test_the_store_daemon_runs_as_its_unit_with_the_broker_password_as_a_credential(tmp_path, etc, workdir):
    broker = Broker(tmp_path / "broker", users={"sh-001": "box secret", "observer": "x"}).start()
    state = workdir / "state"
    state.mkdir(mode=0o700)
    os.chown(state, SERVICE_UID, SERVICE_UID)
    box_config(etc, broker, f'[storage]\ndir = "{state}"\n[[cameras]]\nid = "door-1"\n'
               f'source = "{clip(workdir / "door.avi")}"\n'
               f'start_time = "{datetime.now().astimezone().isoformat(timespec="seconds")}"\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"footfall-test-{uuid.uuid4().hex}"
    notify.bind("\0" + name)
    notify.settimeout(90)
    watcher = Subscriber(broker.port, "footfall/sh-001/status", username="observer", password="x")
    service = start_service(SYSTEMD / "footfall.service", etc, workdir, executable=FOOTFALL,
                            extra_env={"NOTIFY_SOCKET": "@" + name})
    try:
        try:
            said = notify.recv(4096).decode()
        except TimeoutError:
            service.process.kill()
            raise AssertionError("no READY within 90 s:\n" + service.output()) from None
        assert "READY=1" in said, said
        watcher.wait_for(lambda ms: any(m.payload.get("state") == "online" for m in ms), 30, "status online")
        assert stop(service, signal.SIGTERM) == 0, service.output()
        watcher.wait_for(lambda ms: ms[-1].payload.get("state") == "stopped", 10, "status stopped")
        assert (state / "footfall.lock").stat().st_uid == SERVICE_UID
    finally:
        if service.process.poll() is None:
            service.process.kill()
        watcher.close()
        notify.close()
        broker.stop()


@needs_seccomp
@needs_broker
def test_the_guide_console_runs_as_its_unit_and_logs_in_as_its_own_broker_user(tmp_path, etc, workdir):
    from footfall.web.passwords import hash_password

    broker = Broker(tmp_path / "broker", users={"sh-001": "box secret", "sh-001-console": "console secret"}).start()
    port = free_port()
    box_config(etc, broker, f'[console]\nlisten = "127.0.0.1:{port}"\npassword_hash = "{hash_password("guide")}"\n'
               f'mqtt_username = "sh-001-console"\nmqtt_password_file = "/etc/footfall/console-mqtt-password"\n')
    secret(etc, "console-mqtt-password", "console secret")
    service = start_service(SYSTEMD / "footfall-console.service", etc, workdir, executable=FOOTFALL)
    try:
        def login_page() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                assert service.process.poll() is None, service.output()
                return False

        wait_until(login_page, 60, "the console's login page")
        cookie = log_in(f"http://127.0.0.1:{port}", "guide")
        assert cookie, "the guide's login was refused"
        # the page's stream tells whether the console is on the broker, which admits only its users
        request = urllib.request.Request(f"http://127.0.0.1:{port}/events", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as stream:
            event = ""
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif event == "broker" and line.startswith("data:") and json.loads(line[5:])["connected"]:
                    break
        assert stop(service, signal.SIGINT) == 0  # the unit's KillSignal
    finally:
        if service.process.poll() is None:
            service.process.kill()
        broker.stop()


@pytest.fixture
def password_role(postgres) -> tuple[str, str]:
    """A PostgreSQL role that must give its password (scram-sha-256), whatever trust the rest gets."""
    import psycopg

    role, password = "footfall_unit", "db secret"
    hba = postgres.data / "pg_hba.conf"
    line = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
    if line not in hba.read_text():
        stat = hba.stat()
        hba.write_text(line + hba.read_text())
        os.chown(hba, stat.st_uid, stat.st_gid)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
        conn.execute(f"ALTER ROLE {role} PASSWORD '{password}'")
        conn.execute("SELECT pg_reload_conf()")
    return role, password


def refused_without_password(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, password="wrong", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return "password authentication failed" in str(exc)
    return False


@needs_seccomp
@needs_broker
def test_the_hq_collector_runs_as_its_unit_with_three_passwords_as_credentials(tmp_path, etc, workdir, hq_db,
                                                                              password_role):
    import psycopg

    role, db_password = password_role
    url = hq_db.replace("//footfall@", f"//{role}@")
    wait_until(lambda: refused_without_password(url), 10, "PostgreSQL to want the role's password")
    broker = Broker(tmp_path / "broker", users={"hq-collector": "c secret", "hq-reconcile": "r secret",
                                                "sh-001": "box secret"}).start()
    (etc / "hq.toml").write_text(
        f'[database]\nurl = "{url}"\npassword_file = "/etc/footfall/hq-db-password"\n'
        f'[mqtt]\nurl = "{broker.url}"\npassword_file = "/etc/footfall/hq-collector-mqtt-password"\n'
        f'[collector]\nreconcile_every = "1s"\n'
        f'[reconcile]\ntimeout = "1s"\nmqtt_password_file = "/etc/footfall/hq-reconcile-mqtt-password"\n')
    secret(etc, "hq-db-password", db_password)
    secret(etc, "hq-collector-mqtt-password", "c secret")
    secret(etc, "hq-reconcile-mqtt-password", "r secret")
    box = Subscriber(broker.port, "footfall/sh-001/counts/get", username="sh-001", password="box secret")
    service = start_service(SYSTEMD / "footfall-hq-collector.service", etc, workdir, executable=FOOTFALL)
    try:
        def stored() -> bool:
            assert service.process.poll() is None, service.output()
            box.client.publish("footfall/sh-001/status", json.dumps(
                {"event_id": str(uuid.uuid4()), "store_id": "sh-001", "state": "online", "version": "t",
                 "cameras": {}, "ts": datetime.now().astimezone().isoformat(timespec="milliseconds")}), qos=1)
            time.sleep(0.3)
            with psycopg.connect(hq_db) as conn:
                row = conn.execute("SELECT count(*) FROM store_status WHERE store_id = 'sh-001'").fetchone()
                return bool(row and row[0])

        wait_until(stored, 60, "the box's status in PostgreSQL", interval=0.2)
        # reconciliation, in the same service, asks the box for its counts: the broker admitted its own user
        box.wait_for(lambda ms: bool(ms), 30, "a counts/get from reconciliation")
        assert stop(service, signal.SIGTERM) == 0, service.output()
    finally:
        if service.process.poll() is None:
            service.process.kill()
        box.close()
        broker.stop()


@needs_seccomp
def test_the_hq_dashboard_runs_as_its_unit_with_the_database_password_as_a_credential(etc, workdir, hq_db,
                                                                                    password_role):
    from footfall.web.passwords import hash_password

    role, db_password = password_role
    url = hq_db.replace("//footfall@", f"//{role}@")
    wait_until(lambda: refused_without_password(url), 10, "PostgreSQL to want the role's password")
    port = free_port()
    (etc / "hq.toml").write_text(
        f'[database]\nurl = "{url}"\npassword_file = "/etc/footfall/hq-db-password"\n'
        f'[dashboard]\nlisten = "127.0.0.1:{port}"\npassword_hash = "{hash_password("analyst")}"\n')
    secret(etc, "hq-db-password", db_password)
    service = start_service(SYSTEMD / "footfall-hq-dashboard.service", etc, workdir, executable=FOOTFALL)
    base = f"http://127.0.0.1:{port}"
    try:
        def logged_in() -> str | None:
            assert service.process.poll() is None, service.output()
            return log_in(base, "analyst")

        cookie = wait_until(logged_in, 60, "a login to the dashboard", interval=0.5)
        request = urllib.request.Request(f"{base}/api/stores", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=20) as answer:  # 503 if the database refused the login
            assert answer.status == 200 and "rows" in json.loads(answer.read())
        assert stop(service, signal.SIGINT) == 0  # the unit's KillSignal
    finally:
        if service.process.poll() is None:
            service.process.kill()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the login's 303 carries the cookie: keep it
        return None


def log_in(base: str, password: str) -> str | None:
    """The session cookie (`name=value`) of a login to the console or the dashboard; None if refused or down."""
    form = urllib.parse.urlencode({"name": "Zhao Min", "password": password}).encode()
    opener = urllib.request.build_opener(NoRedirect)
    try:
        answer = opener.open(urllib.request.Request(f"{base}/login", data=form, method="POST"), timeout=10)
    except urllib.error.HTTPError as exc:
        answer = exc
    except OSError:
        return None
    cookie = answer.headers.get("Set-Cookie") or ""
    return cookie.split(";")[0] if answer.status in (200, 302, 303) and "=" in cookie else None
