"""The store daemon against a real Mosquitto: a replayed entrance clip in, the contract's messages out."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.broker import Broker, Subscriber
from support.clips import START
from support.daemon import PREFIX, book, camera_table, config_file, enrol
from support.daemon_run import footfall, footfall_run_once, online_status, running
from support.downlink import Hq, counts_request


def test_run_once_publishes_the_visits_alerts_and_counts_of_a_replayed_clip(
        tmp_path, broker, entrance_clip, default_analyzer, faces_dir):
    config = config_file(tmp_path, broker, camera_table("door-1", entrance_clip, start_time=START))
    enrol(config, default_analyzer, faces_dir)
    book(tmp_path / "state")
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        done = footfall_run_once(config, sub)
        visits = [m.payload for m in sub.on(PREFIX + "visits")]
        assert [(v["kind"], v["role"]) for v in visits] == [
            ("visit", "visitor"), ("visit", "visitor"), ("visit", "member"), ("reentry", "visitor")]
        assert visits[3]["visitor_id"] == visits[0]["visitor_id"] != visits[1]["visitor_id"]
        assert visits[2]["member_id"] == visits[2]["visitor_id"] == "deepface_p05"
        for v in visits:
            assert {"event_id", "store_id", "ts", "camera_id", "first_seen_ts"} <= v.keys()
            assert v["ts"].startswith("2026-11-23T10:00:") and v["ts"].endswith("+08:00")
        (arrival,) = [m.payload for m in sub.on(PREFIX + "alerts/arrival")]
        assert arrival["visit_event_id"] == visits[2]["event_id"]
        assert (arrival["name"], arrival["tier"], arrival["last_purchase"]) == ("Ms Five", "gold", "watch")
        assert arrival["appointment"]["appointment_id"] == "a-1"
        (appointment,) = [m.payload for m in sub.on(PREFIX + "alerts/appointment")]
        assert (appointment["appointment_id"], appointment["minutes_early"]) == ("a-1", 5)
        (no_show,) = [m.payload for m in sub.on(PREFIX + "alerts/no_show")]
        assert (no_show["appointment_id"], no_show["grace_minutes"]) == ("a-2", 30)
        counts = sub.on(PREFIX + "counts")[-1].payload
        assert (counts["visits"], counts["reentries"], counts["member_visits"]) == (3, 1, 1)
        assert counts["by_hour"][10] == 3 and sum(counts["by_hour"]) == 3
        assert sub.on(PREFIX + "errors") == []
        log_lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert any(line["msg"].startswith("stopped") for line in log_lines)
    finally:
        sub.close()


def test_count_only_counts_every_entry_and_computes_and_keeps_no_face_template(
        tmp_path, broker, entrance_clip, default_analyzer, faces_dir):
    config = config_file(tmp_path, broker, '[privacy]\nmode = "count_only"\n'
                         + camera_table("door-1", entrance_clip, start_time=START))
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        footfall_run_once(config, sub)
        visits = [m.payload for m in sub.on(PREFIX + "visits")]
        # Five walk-ins, each a visit counted from the body alone: no face is looked for, nobody is
        # told apart, so no re-entry, no member and no staff.
        assert [(v["kind"], v["role"], v["identified"]) for v in visits] == [("visit", "visitor", False)] * 5
        assert len({v["visitor_id"] for v in visits}) == 5
        assert sub.on(PREFIX + "alerts/arrival") == []
        counts = sub.on(PREFIX + "counts")[-1].payload
        assert (counts["visits"], counts["reentries"], counts["member_visits"], counts["unidentified"]) == (5, 0, 0, 5)
        state = tmp_path / "state"
        with sqlite3.connect(state / "windows.db") as conn:
            assert conn.execute("SELECT count(*) FROM window_vectors").fetchone() == (0,)
        conn.close()
        # Enrolment is refused, on the box and from the CRM alike.
        photo = str(faces_dir / "deepface_p05" / "1.jpg")
        refused = footfall("enroll", "--config", str(config), "--member-id", "m-1", "--name", "M", "--consent", photo,
                           timeout=120)
        assert refused.returncode != 0 and "privacy.mode is count_only" in refused.stderr
    finally:
        sub.close()


def test_count_only_refuses_to_start_while_templates_are_enrolled(tmp_path, broker, default_analyzer, faces_dir):
    config = config_file(tmp_path, broker, '[privacy]\nmode = "count_only"\n')
    enrol(config, default_analyzer, faces_dir)
    done = footfall("run", "--config", str(config), timeout=120)
    assert done.returncode == 2 and "privacy.mode: count_only, but storage.dir holds 2 enrolled people" in done.stderr
    erased = [footfall("erase", "--config", str(config), "--member-id", m, timeout=120)
              for m in ("deepface_p05", "deepface_p03")]
    assert [e.returncode for e in erased] == [0, 0], "erasing them still works"


@pytest.fixture
def running_daemon(tmp_path, broker, default_analyzer):
    """A daemon (no cameras) on its own thread, online; at the end it must say "stopped"."""
    status = Subscriber(broker.port, PREFIX + "status")
    with running(config_file(tmp_path, broker), default_analyzer) as daemon:
        status.wait_for(online_status(), 15, "the online status")
        yield daemon
    status.wait_for(lambda ms: ms[-1].payload["state"] == "stopped", 10, "the stopped status")
    status.close()


def test_bad_downlink_messages_are_answered_on_errors_and_the_daemon_keeps_working(running_daemon, broker, hq):
    daemon = running_daemon
    errors, answers = Subscriber(broker.port, PREFIX + "errors"), Subscriber(broker.port, PREFIX + "members/deleted")
    try:
        downlink_round_trip(daemon, hq, errors, answers)
    finally:
        errors.close()
        answers.close()


def downlink_round_trip(daemon, hq, errors, answers) -> None:
    hq.send("members/upsert", b"{not json")
    hq.send("members/upsert", {"member_id": "m-9", "name": "X", "role": "member",
                               "consent": False, "embeddings": [[0.1] * 512]})
    got = errors.wait_for(lambda ms: len(ms) >= 2, 10, "two errors")
    reasons = [m.payload["reason"] for m in got]
    assert any("JSON" in r for r in reasons) and any("consent" in r for r in reasons)
    assert all(m.payload["topic"] == PREFIX + "members/upsert" for m in got)
    vector = np.zeros(512, np.float32)
    vector[0] = 1.0
    hq.send("members/upsert", {
        "member_id": "m-1", "name": "Ms One", "role": "member", "consent": True, "tier": "gold",
        "embeddings": [vector.tolist()], "embedding_model": daemon.analyzer.pack.recognizer.sha256})
    hq.send("members/delete", {"member_id": "m-1"})
    (answer,) = [m.payload for m in answers.wait_for(lambda ms: len(ms) >= 1, 10, "members/deleted")]
    assert answer["member_id"] == "m-1" and answer["removed"] is True
    assert daemon.store.gallery.get("m-1") is None


def test_counts_are_answered_over_mqtt5_response_topics_and_311_reply_to(running_daemon, broker, hq):
    replies = Subscriber(broker.port, PREFIX + "replies/#")
    old_hq = Hq(broker.port, protocol="3.1.1")
    try:
        counts_request(hq, PREFIX + "replies/hq/1", correlation=b"req-17", by="hour")
        counts_request(old_hq, by="day", reply_to=PREFIX + "replies/hq/2")
        got = replies.wait_for(lambda ms: len(ms) >= 2, 10, "two counts replies")
        by_topic = {m.topic: m for m in got}
        v5 = by_topic[PREFIX + "replies/hq/1"]
        assert v5.payload["store_id"] == "sh-001" and v5.payload["by"] == "hour"
        assert v5.properties.CorrelationData == b"req-17"
        assert all({"start", "visits", "reentries", "member_visits"} <= b.keys() for b in v5.payload["buckets"])
        assert by_topic[PREFIX + "replies/hq/2"].payload["by"] == "day"
    finally:
        old_hq.close()
        replies.close()


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not available")
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "footfall.service").read_text()
    footfall = Path(sys.executable).with_name("footfall")
    (tmp_path / "footfall.service").write_text(unit.replace("/opt/footfall/.venv/bin/footfall", str(footfall)))
    done = subprocess.run([analyze, "verify", str(tmp_path / "footfall.service")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    assert done.returncode == 0, done.stderr
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ProtectSystem=strict" in unit


def test_events_committed_before_a_sigkill_are_delivered_exactly_once_after_restart(
        tmp_path, entrance_clip, default_analyzer, faces_dir):
    """The broker is down while the daemon counts; the daemon is killed; both come back."""
    broker = Broker(tmp_path / "broker")  # not started yet: nothing can be published
    config = config_file(tmp_path, broker, camera_table("door-1", entrance_clip, start_time=START))
    enrol(config, default_analyzer, faces_dir)
    daemon = subprocess.Popen([sys.executable, "-m", "footfall", "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outbox = tmp_path / "state" / "outbox.db"

    def committed_visits() -> list[str]:
        if not outbox.exists():
            return []
        try:
            with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as con:
                rows = con.execute("SELECT payload FROM outbox WHERE topic LIKE '%/visits'").fetchall()
        except sqlite3.OperationalError:  # the daemon has created the file but not its tables yet
            return []
        return [json.loads(p)["event_id"] for (p,) in rows]

    try:
        deadline = time.monotonic() + 120
        while len(committed_visits()) < 4:
            assert daemon.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon did not commit the clip's visits"
            time.sleep(0.1)
    finally:
        daemon.kill()  # SIGKILL: no flush, no goodbye
        daemon.wait(10)
    before = committed_visits()
    broker.start()
    sub = Subscriber(broker.port, PREFIX + "visits")
    restarted = subprocess.Popen([sys.executable, "-m", "footfall", "run", "--config",
                                  str(config_file(tmp_path, broker))],  # same storage, no cameras
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = sub.wait_for(lambda ms: len(ms) >= len(before), 30, "the committed visits")
        time.sleep(0.5)  # a duplicate would arrive now
        ids = [m.payload["event_id"] for m in sub.on(PREFIX + "visits")]
        assert ids == before, "every committed visit, once, in order"
        assert [m.payload["kind"] for m in got] == ["visit", "visit", "visit", "reentry"]
    finally:
        restarted.terminate()
        assert restarted.wait(30) == 0
        sub.close()
        broker.stop()
