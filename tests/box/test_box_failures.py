"""Failures on the box are seen: real `footfall` processes, a real Mosquitto.

`run --once` that cannot deliver exits 1 saying how many events wait where; a camera's video file
that is missing or not a video is one log line and exit 1, no traceback; FFmpeg's own lines about
a damaged file stay out of the daemon's output, which is JSON lines only; an import that skipped
lines exits 1 naming them; `doctor` checks the guide console's broker login without printing the
password, and without taking what the broker queued for the console; it logs in as the store once,
reading the live cameras' figures in that login.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, Subscriber

SH = timezone(timedelta(hours=8))
START = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
PREFIX = "footfall/sh-001/"


def footfall(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def write_config(tmp_path: Path, url: str, extra: str = "", *, login: str = "") -> Path:
    """The store's config; `login` adds lines to [mqtt] (username, password)."""
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[mqtt]\nurl = "{url}"\n{login}'
                    f'[storage]\ndir = "{tmp_path / "state"}"\n{extra}')
    return path


def camera(source: Path | str) -> str:
    return f'[[cameras]]\nid = "door-1"\nsource = "{source}"\nfps = 5\nstart_time = "{START.isoformat()}"\n'


def noise_clip(path: Path, frames: int = 30) -> Path:
    """A short MPEG-4 clip of noise (nobody walks in)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write((rng.random((240, 320, 3)) * 255).astype(np.uint8))
    writer.release()
    return path


def json_lines(text: str) -> list[dict]:
    """Every line parsed as JSON; AssertionError naming the first that is not."""
    parsed = []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:200]!r}") from None
    return parsed


def test_run_once_with_the_broker_down_exits_1_naming_the_unsent_events_which_the_next_start_sends(tmp_path):
    broker = Broker(tmp_path / "broker")  # its port, nothing listening yet
    config = write_config(tmp_path, broker.url, camera(noise_clip(tmp_path / "door.mp4")))
    down = footfall("run", "--config", str(config), "--once")
    assert down.returncode == 1, down.stdout + down.stderr
    errors = [line["msg"] for line in json_lines(down.stdout) if line["level"] == "error"]
    outbox = tmp_path / "state" / "outbox.db"
    (unsent,) = [m for m in errors if m.startswith("run --once:")]
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as conn:
        waiting = [e for (e,) in conn.execute("SELECT event_id FROM outbox WHERE sent_at IS NULL ORDER BY seq")]
    conn.close()
    assert waiting and unsent.startswith(f"run --once: {len(waiting)} event(s) not sent stay in the outbox {outbox}")
    assert unsent.endswith("the next start sends them")

    broker.start()
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        up = footfall("run", "--config", str(config), "--once")
        assert up.returncode == 0, up.stdout + up.stderr
        sent = {m.payload.get("event_id") for m in sub.wait_for(
            lambda ms: set(waiting) <= {m.payload.get("event_id") for m in ms}, 10, "the events left unsent")}
        assert set(waiting) <= sent
    finally:
        sub.close()
        broker.stop()


@pytest.mark.parametrize("problem", ["missing", "not a video"])
def test_a_video_file_that_cannot_be_read_is_one_log_line_naming_camera_and_path_and_exit_1(tmp_path, problem):
    clip = tmp_path / "door.mp4"
    if problem == "not a video":
        clip.write_bytes(b"these bytes are not a video" * 100)
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", camera(clip))
    done = footfall("run", "--config", str(config), "--once")
    assert done.returncode == 1
    assert done.stderr == "", done.stderr
    errors = [line["msg"] for line in json_lines(done.stdout) if line["level"] == "error"]
    why = "not found" if problem == "missing" else "(not a video format OpenCV reads, or damaged)"
    assert len(errors) == 1 and errors[0].startswith("not started: camera door-1: ") and str(clip) in errors[0]
    assert errors[0].endswith(why), errors[0]
    assert "Traceback" not in done.stdout


def test_ffmpegs_own_lines_about_a_damaged_file_stay_out_of_the_daemons_output(tmp_path):
    clip = noise_clip(tmp_path / "door.mp4", frames=40)
    data = bytearray(clip.read_bytes())
    for offset in range(len(data) // 4, len(data) * 3 // 4, 997):  # damage the middle of the stream
        data[offset:offset + 40] = bytes(40)
    clip.write_bytes(bytes(data))
    # As a service starts: no OpenCV or FFmpeg setting in the environment (this test process may
    # hold the daemon's own, set when edge/sources.py was imported).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    # The same file read by OpenCV in a plain process: FFmpeg complains on stderr.
    plain = subprocess.run([sys.executable, "-c", "import cv2, sys\nc = cv2.VideoCapture(sys.argv[1])\n"
                                                  "while c.grab(): pass", str(clip)],
                           capture_output=True, text=True, timeout=60, env=env)
    assert "[mpeg4 @" in plain.stderr, "the damaged file makes FFmpeg speak"

    broker = Broker(tmp_path / "broker").start()
    try:
        config = write_config(tmp_path, broker.url, camera(clip))
        done = footfall("run", "--config", str(config), "--once", env=env)
    finally:
        broker.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr[:2000]
    lines = json_lines(done.stdout)
    assert any(line["msg"].startswith("started: store sh-001") for line in lines)


def test_an_import_with_skipped_lines_imports_the_good_ones_names_the_bad_and_exits_1(tmp_path):
    config = write_config(tmp_path, "mqtt://127.0.0.1:1")
    good = {"appointment_id": "a-1", "member_id": "m-1", "channel": "wechat", "advisor": "Li",
            "scheduled_at": "2026-11-23T15:00:00+08:00"}
    export = tmp_path / "appointments.jsonl"
    bad = [json.dumps(good | {"appointment_id": f"a-{n}", "scheduled_at": "tomorrow"}) for n in range(2, 27)]
    export.write_text("\n".join([json.dumps(good), *bad]) + "\n")
    done = footfall("appointments", "import", "--config", str(config), str(export))
    assert done.returncode == 1
    assert done.stdout.strip() == (f"{export}: 1 imported, 25 skipped (lines "
                                   f"{', '.join(str(n) for n in range(2, 22))} and 5 more)")
    named = re.findall(rf"{re.escape(str(export))}:(\d+): skipped: scheduled_at", done.stderr)  # among the progress bar
    assert named == [str(n) for n in range(2, 22)]
    assert f"{export}: 5 more line(s) skipped, not listed one by one" in done.stderr

    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps(good | {"appointment_id": "a-30"}) + "\n")
    done = footfall("appointments", "import", "--config", str(config), str(clean))
    assert done.returncode == 0 and done.stdout.strip() == f"{clean}: 1 imported, 0 skipped"


BOX_SECRET, CONSOLE_SECRET = "box-secret-1b2e", "console-secret-7f3a"
BOX_LOGIN = f'username = "sh-001"\npassword = "{BOX_SECRET}"\n'
USERS = {"sh-001": BOX_SECRET, "sh-001-console": CONSOLE_SECRET}


def console_login(password: str) -> str:
    return f'[console]\nmqtt_username = "sh-001-console"\nmqtt_password = "{password}"\n'


def doctor_line(output: str, check: str) -> str:
    (line,) = [line for line in output.splitlines() if line[6:].startswith(check + ":")]
    return line


def test_doctor_reports_a_refused_console_password_without_printing_it(tmp_path):
    broker = Broker(tmp_path / "broker", users=USERS).start()
    try:
        config = write_config(tmp_path, broker.url, console_login("wrong-secret-9c1d"), login=BOX_LOGIN)
        refused = footfall("doctor", "--config", str(config))
        assert refused.returncode == 1
        assert doctor_line(refused.stdout, "broker").startswith("ok    broker:")
        line = doctor_line(refused.stdout, "console broker login")
        assert line.startswith("FAIL  console broker login: the broker refused user 'sh-001-console' ("), line
        assert line.endswith("): check console.mqtt_username and console.mqtt_password"), line
        assert "wrong-secret-9c1d" not in refused.stdout + refused.stderr
        assert BOX_SECRET not in refused.stdout + refused.stderr

        config.write_text(config.read_text().replace("wrong-secret-9c1d", CONSOLE_SECRET))
        accepted = footfall("doctor", "--config", str(config))
        assert doctor_line(accepted.stdout, "console broker login").startswith(
            "ok    console broker login: " + broker.url + " accepts the guide console's credentials: its own user "
            "sh-001-console")
        assert CONSOLE_SECRET not in accepted.stdout + accepted.stderr
    finally:
        broker.stop()


def test_the_doctors_login_as_the_console_keeps_what_the_broker_queued_for_the_console(tmp_path):
    # Client ids bound to user names, as the shipped Mosquitto settings do: the doctor's login as
    # the console takes the console's session.
    broker = Broker(tmp_path / "broker", users=USERS, extra_conf="use_username_as_clientid true\n").start()
    try:
        console = Subscriber(broker.port, PREFIX + "alerts/#", persistent=True, username="sh-001-console",
                             password=CONSOLE_SECRET)
        console.close()  # offline for a moment: the broker queues its alerts
        alert = {"event_id": "e-1", "member_id": "m-1"}
        publish(broker.port, PREFIX + "alerts/arrival", alert)
        config = write_config(tmp_path, broker.url, console_login(CONSOLE_SECRET), login=BOX_LOGIN)
        done = footfall("doctor", "--config", str(config))
        assert doctor_line(done.stdout, "console broker login").startswith("ok    "), done.stdout
        back = Subscriber(broker.port, PREFIX + "alerts/#", persistent=True, username="sh-001-console",
                          password=CONSOLE_SECRET)
        try:
            back.wait_for(lambda ms: any(m.payload == alert for m in ms), 10, "the alert queued for the console")
        finally:
            back.close()
    finally:
        broker.stop()


def test_the_doctor_logs_in_as_the_store_once_and_reads_the_live_figures_in_that_login(tmp_path):
    # Client ids bound to user names: every login as the store takes the running daemon's place.
    logins = tmp_path / "connections.log"  # a file log is written at once, stdout when the buffer fills
    broker = Broker(tmp_path / "broker", users=USERS, extra_conf=f"log_dest file {logins}\n").start()
    try:
        stats = {"analysed_fps": 4.8, "skipped": 3, "decode_ms": 2.1, "inference_ms": 9.5, "frame_age_s": 0.2}
        publish(broker.port, PREFIX + "status", {"state": "online", "camera_stats": {"door-1": stats}}, retain=True)
        config = write_config(tmp_path, broker.url, camera(noise_clip(tmp_path / "door.mp4")), login=BOX_LOGIN)
        done = footfall("doctor", "--config", str(config))
        assert doctor_line(done.stdout, "broker").startswith("ok    broker:"), done.stdout
        assert doctor_line(done.stdout, "live cameras") == (
            "ok    live cameras: door-1: 4.8/5.0 frames/s analysed, 3 skipped, decode 2.1 ms, inference 9.5 ms, "
            "last frame 0.2 s ago")
        assert logins.read_text().count("as footfall-doctor-sh-001 (") == 1
    finally:
        broker.stop()


def publish(port: int, topic: str, payload: dict, *, retain: bool = False) -> None:
    """One QoS 1 message, published as the box."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="box", protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set("sh-001", BOX_SECRET)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
