"""Store-side commands: CRM imports, counts from the local store, and the doctor's checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.broker import Broker, mosquitto_path

from footfall.config.schema import load_config
from footfall.edge.store import open_gallery
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.sync.appointments import AppointmentStore
from footfall.sync.counts import CountStore

SH = timezone(timedelta(hours=8))


def footfall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def write_config(tmp_path: Path, url: str = "mqtt://127.0.0.1:1", cameras: str = "") -> str:
    path = tmp_path / "footfall.toml"
    path.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[mqtt]\nurl = "{url}"\n'
                    f'[storage]\ndir = "{tmp_path / "state"}"\n{cameras}')
    return str(path)


def test_members_import_enrols_good_lines_and_names_the_bad_ones(tmp_path, faces_dir):
    config = write_config(tmp_path)
    photos = tmp_path / "crm" / "photos"
    photos.mkdir(parents=True)
    (photos / "obama1.jpg").write_bytes((faces_dir / "obama" / "1.jpg").read_bytes())
    export = tmp_path / "crm" / "members.jsonl"
    export.write_text("\n".join([
        json.dumps({"member_id": "m-1", "name": "Barack", "role": "member", "tier": "gold", "consent": True,
                    "profile": {"last_purchase": "watch"}, "images": ["photos/obama1.jpg"]}),
        "{not json",
        json.dumps({"member_id": "m-2", "name": "No Consent", "role": "member", "consent": False,
                    "images": ["photos/obama1.jpg"]}),
    ]) + "\n")
    done = footfall("members", "import", "--config", config, str(export))
    assert done.returncode == 1, done.stderr  # the good line imported, the skipped ones make it fail
    assert f"{export}: 1 imported, 2 skipped (lines 2, 3)" in done.stdout
    assert f"{export}:2: skipped:" in done.stderr and f"{export}:3: skipped:" in done.stderr
    assert "consent" in done.stderr
    cfg = load_config(config)
    gallery = open_gallery(cfg, FaceAnalyzer.from_config(cfg))
    try:
        assert gallery.get("m-1").profile == {"last_purchase": "watch"} and gallery.get("m-2") is None
    finally:
        gallery.close()


def test_members_import_enrols_from_the_usable_photos_and_names_each_unusable_one(tmp_path, faces_dir):
    import cv2
    import numpy as np

    config = write_config(tmp_path)
    photos = tmp_path / "crm" / "photos"
    photos.mkdir(parents=True)
    (photos / "obama1.jpg").write_bytes((faces_dir / "obama" / "1.jpg").read_bytes())
    cv2.imwrite(str(photos / "wall.jpg"), np.full((200, 200, 3), 128, np.uint8))
    export = tmp_path / "crm" / "members.jsonl"
    export.write_text(json.dumps({"member_id": "m-1", "name": "Barack", "role": "member", "consent": True,
                                  "images": ["photos/obama1.jpg", "photos/wall.jpg"]}) + "\n")
    done = footfall("members", "import", "--config", config, str(export))
    assert done.returncode == 0, done.stderr
    assert "1 imported, 0 skipped" in done.stdout
    assert "images[1] not used: no face found" in done.stderr


def test_appointments_import_keeps_the_valid_ones(tmp_path):
    config = write_config(tmp_path)
    export = tmp_path / "appointments.jsonl"
    export.write_text(json.dumps({"appointment_id": "a-1", "member_id": "m-1", "channel": "wechat",
                                  "advisor": "Li", "scheduled_at": "2026-11-23T15:00:00+08:00"}) + "\n"
                      + json.dumps({"appointment_id": "a-2", "member_id": "m-1", "channel": "phone",
                                    "advisor": "Li", "scheduled_at": "tomorrow"}) + "\n")
    done = footfall("appointments", "import", "--config", config, str(export))
    assert done.returncode == 1 and f"{export}: 1 imported, 1 skipped (line 2)" in done.stdout
    assert "scheduled_at" in done.stderr
    store = AppointmentStore(tmp_path / "state" / "appointments.db", "Asia/Shanghai")
    try:
        assert [a.appointment_id for a in store.appointments()] == ["a-1"]
    finally:
        store.close()


def test_counts_prints_hourly_and_daily_buckets_in_store_time(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    store = CountStore(tmp_path / "state" / "counts.db", "Asia/Shanghai")
    for minute, kind, member, identified in ((5, "visit", False, True), (20, "reentry", False, True),
                                             (50, "visit", True, True), (55, "visit", False, False)):
        store.record(datetime(2026, 11, 23, 10, minute, tzinfo=SH), kind, member, identified)
    store.record(datetime(2026, 11, 23, 23, 59, tzinfo=SH), "visit", False)
    store.record(datetime(2026, 11, 23, 10, 58, tzinfo=SH), "exit", False)
    store.close()
    hourly = footfall("counts", "--config", config, "--from", "2026-11-23T10:00", "--to", "2026-11-23T12:00")
    assert hourly.returncode == 0, hourly.stderr
    rows = [line.split() for line in hourly.stdout.splitlines()]
    assert rows[0] == ["start", "visits", "re-entries", "member", "visits", "unidentified", "exits"]
    assert rows[1] == ["2026-11-23T10:00:00.000+08:00", "3", "1", "1", "1", "1"]
    assert rows[2] == ["2026-11-23T11:00:00.000+08:00", "0", "0", "0", "0", "0"]
    daily = footfall("counts", "--config", config, "--from", "2026-11-23", "--to", "2026-11-25", "--by", "day")
    rows = [line.split() for line in daily.stdout.splitlines()]
    assert rows[1][1:] == ["4", "1", "1", "1", "1"] and rows[2][1:] == ["0", "0", "0", "0", "0"]
    assert rows[-1] == ["total", "4", "1", "1", "1", "1"]
    bad = footfall("counts", "--config", config, "--from", "yesterday")
    assert bad.returncode == 1 and "not an ISO 8601 date" in bad.stderr


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_doctor_passes_with_everything_in_place_and_names_what_is_missing(tmp_path, scenes_dir):
    broker = Broker(tmp_path / "broker").start()
    try:
        clip = tmp_path / "door.avi"
        import cv2
        import numpy as np

        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
        writer.write(np.zeros((64, 64, 3), np.uint8))
        writer.release()
        cameras = f'[[cameras]]\nid = "door-1"\nsource = "{clip}"\n[[cameras]]\nid = "door-2"\nsource = "/dev/video97"\n'
        done = footfall("doctor", "--config", write_config(tmp_path, broker.url, cameras))
        lines = dict(line.split(None, 1)[1].split(":", 1) for line in done.stdout.splitlines()[1:])
        assert done.returncode == 1
        assert "accepts this store's credentials" in lines["broker"]
        assert "cameras[1].source: /dev/video97 does not exist" in lines["cameras"]
        assert done.stdout.count("FAIL") == 1
    finally:
        broker.stop()
    down = footfall("doctor", "--config", write_config(tmp_path, broker.url))
    assert down.returncode == 1 and "FAIL  broker: mqtt.url:" in down.stdout


def test_doctor_checks_the_person_detector_every_mode_counts_with_and_no_face_model_in_count_only(tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    config = Path(write_config(tmp_path))
    settings = config.read_text()
    config.write_text(settings + f'[privacy]\nmode = "count_only"\n[models]\ndir = "{empty}"\n')
    shipped = footfall("doctor", "--config", str(config))
    lines = dict(line.split(None, 1)[1].split(":", 1) for line in shipped.stdout.splitlines()[1:])
    assert "yolox_nano.onnx" in lines["models present and verified"], shipped.stdout
    assert "yunet" not in shipped.stdout and "edgeface" not in shipped.stdout, "no face model in count_only"
    assert "person detector open (count_only" in lines["models load"], shipped.stdout
    config.write_text(settings + f'[privacy]\nmode = "count_only"\n[models]\ndir = "{empty}"\n'
                      'person_detector = "person-detection-retail-0013.onnx"\n')
    missing = footfall("doctor", "--config", str(config))
    assert missing.returncode == 1
    failed = [line for line in missing.stdout.splitlines() if line.startswith("FAIL")]
    assert any("models present" in line and "person-detection-retail-0013.onnx" in line for line in failed), failed
