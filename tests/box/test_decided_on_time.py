"""A passage is judged at its own time, and decided by the clock: through `footfall run`.

A track ends `tracking.max_gap` after its person was last seen, whether or not its camera sends
another frame: on the merged media clock of a replay, on the wall clock of live cameras. Its
passage is then judged as of the person's own time (the visit window, the hour it is counted in),
however late it is decided. These tests run the real daemon (`footfall run`, its own process)
against a real Mosquitto: a replayed day whose last clip is hours after the others, a live RTSP
camera that stalls with people in view, and a daemon stopped (SIGTERM) with a person in view and
started again. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
from support.broker import Subscriber, mosquitto_path
from support.daemon import PREFIX, camera_table, enrol, store_config
from support.daemon_run import footfall_run_once

from footfall.tooling.rtsp_camera import RtspCameras, gstreamer_missing
from footfall.tooling.scenario import Appearance, Clip, SpriteBank, render_clip

SH = ZoneInfo("Asia/Shanghai")
MAX_GAP_S = 1.5          # tracking.max_gap, the default
DECIDED_WITHIN_S = MAX_GAP_S + 1.0
ENTER_S = 4.0            # when people walk in, in seconds after the stream starts: after its first frames reach the daemon
STREAM_FPS = 10          # what the RTSP camera sends; the daemon analyses 5 frames/s of it

needs_mosquitto = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")


def at(hh: int, mm: int) -> datetime:
    return datetime(2026, 11, 23, hh, mm, tzinfo=SH)


@pytest.fixture(scope="module")
def bank(faces_dir, default_analyzer) -> SpriteBank:
    return SpriteBank(faces_dir, default_analyzer)


class TimedSubscriber(Subscriber):
    """A subscriber that also notes the wall time (epoch seconds) each message reached it."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.arrived: list[float] = []
        super().__init__(port, topic_filter)

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self.arrived.append(time.time())  # before the message is listed: a waiter sees both
        super()._on_message(client, userdata, message)

    def received(self, topic: str) -> list[tuple[float, dict]]:
        """(arrival time, payload) of every message on `topic`."""
        with self._cond:
            return [(t, m.payload) for t, m in zip(self.arrived, self.messages) if m.topic == topic]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- a replayed day: the last clip hours after the others ------------------------------------------

@needs_mosquitto
def test_a_replayed_days_reentries_stay_reentries_when_the_last_clip_is_hours_later(tmp_path, broker, bank):
    """Each clip is its own camera and ends with its walker just out of view, their track still
    open: no later frame of that camera ever ends it; the next clip's frames (another camera,
    hours later) must, and the passage is judged at its own time, not at 20:40."""
    amy, raj, penny = ("bbt_amy", "1.jpg"), ("bbt_raj", "1.jpg"), ("bbt_penny", "1.jpg")
    day = [("cam-1", at(11, 30), raj),     # visit
           ("cam-2", at(11, 35), amy),     # visit
           ("cam-3", at(13, 5), amy),      # 1 h 30 after her first entry: re-entry
           ("cam-4", at(14, 0), raj),      # 2 h 30 after his last entry: re-entry
           ("cam-5", at(20, 40), penny)]   # hours after everyone else: a visit
    cameras = ""
    for i, (camera, start, (identity, photo)) in enumerate(day):
        # out of view at 3.9 s; the file ends at 4.5 s, well inside max_gap of the last sighting
        clip = Clip(camera, start, 4.5, (Appearance(identity, photo, 0.3, walk=3.6),), fps=10)
        path = render_clip(clip, tmp_path / f"{camera}.avi", bank, seed=i)
        cameras += camera_table(camera, path, start_time=start)
    sub = Subscriber(broker.port, PREFIX + "#")
    try:
        footfall_run_once(store_config(tmp_path, broker, cameras), sub)
        visits = [m.payload for m in sub.on(PREFIX + "visits")]
        counts = sub.on(PREFIX + "counts")[-1].payload
    finally:
        sub.close()
    assert [(v["camera_id"], v["kind"]) for v in visits] == [
        ("cam-1", "visit"), ("cam-2", "visit"), ("cam-3", "reentry"), ("cam-4", "reentry"), ("cam-5", "visit")]
    raj_first, amy_first, amy_back, raj_back, penny_in = visits
    assert amy_back["visitor_id"] == amy_first["visitor_id"] != raj_first["visitor_id"] == raj_back["visitor_id"]
    assert penny_in["visitor_id"] not in {amy_first["visitor_id"], raj_first["visitor_id"]}
    for visit, (_, start, _) in zip(visits, day):  # each counted at its own time
        seen = datetime.fromisoformat(visit["first_seen_ts"])
        assert start <= seen <= start + timedelta(seconds=4.5), (visit["camera_id"], visit["first_seen_ts"])
    assert (counts["visits"], counts["reentries"]) == (3, 2)
    assert {h: n for h, n in enumerate(counts["by_hour"]) if n} == {11: 2, 20: 1}


# -- live cameras --------------------------------------------------------------------------------

def footfall_run(config: Path, log: Path) -> subprocess.Popen:
    """`footfall run` (live cameras: until SIGTERM) as its own process, its journal in `log`."""
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "footfall", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)


def terminate(daemon: subprocess.Popen, log: Path) -> None:
    """SIGTERM, as systemd stops the service; the daemon must exit normally."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(10)
    assert daemon.returncode == 0, log.read_text()


def stream_started(cameras: RtspCameras, daemon: subprocess.Popen, after: float = 0.0, timeout: float = 90) -> float:
    """Wall time the daemon's stream of door-1 began (its first frame left the camera)."""
    deadline = time.monotonic() + timeout
    while True:
        t0 = cameras.stream_start("door-1")
        if t0 is not None and t0 > after:
            return t0
        assert daemon.poll() is None, "the daemon exited"
        assert time.monotonic() < deadline, "the daemon did not start reading the camera"
        time.sleep(0.02)


def streaming(sub: TimedSubscriber, before: float, after: float = 0.0) -> None:
    """Wait for the status saying door-1 streams (its first frame reached the daemon), which must
    come before anyone walks in: the stream's start (connecting, probing) takes a few seconds."""
    def seen() -> float | None:
        return next((t for t, s in sub.received(PREFIX + "status") if t > after and s.get("state") == "online"
                     and s.get("cameras", {}).get("door-1") == "streaming"), None)

    sub.wait_for(lambda _: seen() is not None, max(1.0, before - time.time() + 5.0), "door-1 streaming")
    first = seen() or 0.0
    assert first < before, (f"the first frame reached the daemon {first - before:+.2f} s after the walk-in "
                            f"began (ENTER_S is too short for this box)")


def sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


GSTREAMER_MISSING = gstreamer_missing()
needs_gstreamer = pytest.mark.skipif(GSTREAMER_MISSING is not None, reason=str(GSTREAMER_MISSING))


@needs_mosquitto
@needs_gstreamer
def test_a_camera_stalling_mid_passage_has_the_passage_decided_by_the_wall_clock_at_its_own_time(
        tmp_path, broker, bank, default_analyzer, faces_dir):
    """A stranger and a member walk in side by side; the camera stops sending (the connection
    stays open) while both are in view. No frame comes to end their tracks."""
    enter, walk, stall_after = ENTER_S, 9.0, 5.0   # seconds into the stream; both still in view at the stall
    clip = Clip("door-1", at(10, 0), 16.0, (Appearance("bbt_raj", "1.jpg", enter, walk=walk, lane=0.3),
                                            Appearance("deepface_p05", "1.jpg", enter, walk=walk, lane=0.7)), fps=10)
    path = render_clip(clip, tmp_path / "door.avi", bank, seed=3)
    cameras = RtspCameras({"door-1": path}, size="960x540", fps=STREAM_FPS, log=tmp_path / "rtsp.log").start()
    config = store_config(tmp_path, broker, camera_table("door-1", cameras.url("door-1")), timezone="UTC")
    enrol(config, default_analyzer, faces_dir)  # deepface_p05 is a member (photos 2 and 3)
    sub = TimedSubscriber(broker.port, PREFIX + "#")
    log = tmp_path / "daemon.log"
    daemon = footfall_run(config, log)
    try:
        t0 = stream_started(cameras, daemon)
        streaming(sub, t0 + enter)
        sleep_until(t0 + enter + stall_after)
        cameras.command("stall", "door-1")
        stalled = time.time()
        assert stalled < t0 + enter + walk - 2.0, "the box was too slow to stall the camera mid-passage"
        sub.wait_for(lambda ms: sum(m.topic == PREFIX + "visits" for m in ms) >= 2, 10, "both visits")
        terminate(daemon, log)
        sub.wait_for(lambda ms: any(m.topic == PREFIX + "status" and m.payload.get("state") == "stopped"
                                    for m in ms), 10, "the stopped status")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        cameras.stop()
        sub.close()
    visits = sub.received(PREFIX + "visits")
    (stranger_at, stranger), = [(t, v) for t, v in visits if v["role"] == "visitor"]
    (_, member), = [(t, v) for t, v in visits if v["role"] == "member"]
    (alert_at, alert), = sub.received(PREFIX + "alerts/arrival")

    # The stranger was in view until the camera stopped: seen last within a frame or two of it.
    last_seen = epoch(stranger["ts"])
    assert stalled - 1.0 <= last_seen <= stalled + 0.5, (last_seen - stalled)
    # Decided by the wall clock: published within max_gap plus a second of that last sighting.
    waited = stranger_at - last_seen
    assert waited <= DECIDED_WITHIN_S, f"published {waited:.2f} s after the last sighting"
    # Counted at its own time: when they walked in, in that hour.
    first_seen = epoch(stranger["first_seen_ts"])
    assert t0 + enter - 0.5 <= first_seen <= t0 + enter + 2.0, first_seen - (t0 + enter)
    # The member's pop-up is not held back by the stall either.
    assert alert["visit_event_id"] == member["event_id"] and member["member_id"] == "deepface_p05"
    assert alert_at - stalled <= DECIDED_WITHIN_S, f"pop-up {alert_at - stalled:.2f} s after the stall"

    counts = sub.on(PREFIX + "counts")[-1].payload
    assert (counts["visits"], counts["reentries"], counts["member_visits"]) == (2, 0, 1)
    hours = Counter(datetime.fromisoformat(v["first_seen_ts"]).astimezone(ZoneInfo("UTC")).hour
                    for v in (stranger, member))
    assert {h: n for h, n in enumerate(counts["by_hour"]) if n} == dict(hours)
    print(f"stranger: published {waited:.2f} s after the last sighting ({last_seen - stalled:+.2f} s from the "
          f"stall); member pop-up {alert_at - stalled:+.2f} s from the stall")


@needs_mosquitto
@needs_gstreamer
def test_a_passage_open_when_the_daemon_stops_is_decided_once_across_the_restart(tmp_path, broker, bank) -> None:
    """SIGTERM while a stranger is in the middle of walking in: their passage is decided at
    shutdown. Started again seconds later, the daemon sees them in the doorway again (the camera
    plays its clip from the start for the new connection): the same entry, not a second visit."""
    enter, walk, stop_after = ENTER_S, 6.0, 3.5
    clip = Clip("door-1", at(10, 0), 12.0, (Appearance("bbt_amy", "1.jpg", enter, walk=walk),), fps=10)
    path = render_clip(clip, tmp_path / "door.avi", bank, seed=4)
    cameras = RtspCameras({"door-1": path}, size="960x540", fps=STREAM_FPS, log=tmp_path / "rtsp.log").start()
    config = store_config(tmp_path, broker, camera_table("door-1", cameras.url("door-1")), timezone="UTC")
    sub = TimedSubscriber(broker.port, PREFIX + "#")
    log = tmp_path / "daemon.log"
    started: list[subprocess.Popen] = []
    try:
        started.append(footfall_run(config, log))
        t0 = stream_started(cameras, started[-1])
        streaming(sub, t0 + enter)
        sleep_until(t0 + enter + stop_after)
        stopped = time.time()
        terminate(started[-1], log)
        sub.wait_for(lambda ms: any(m.topic == PREFIX + "status" and m.payload.get("state") == "stopped"
                                    for m in ms), 10, "the stopped status")
        before = sub.received(PREFIX + "visits")
        counted_before = sub.on(PREFIX + "counts")[-1].payload

        started.append(footfall_run(config, log))
        t1 = stream_started(cameras, started[-1], after=t0)
        streaming(sub, t1 + enter, after=stopped)
        sleep_until(t1 + enter + walk + MAX_GAP_S + 1.0)  # walked through again, and that track ended
        terminate(started[-1], log)
        sub.wait_for(lambda ms: sum(m.topic == PREFIX + "status" and m.payload.get("state") == "stopped"
                                    for m in ms) >= 2, 10, "the second stopped status")
    finally:
        for daemon in started:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
        cameras.stop()
        sub.close()
    # Decided at shutdown (not before: she was still in view), once, as of when she walked in.
    assert [v["kind"] for _, v in before] == ["visit"], log.read_text()
    (published, visit), = before
    last_seen, first_seen = epoch(visit["ts"]), epoch(visit["first_seen_ts"])
    assert published > stopped and stopped - 1.0 <= last_seen <= stopped + 0.5, (published - stopped, last_seen - stopped)
    assert t0 + enter - 0.5 <= first_seen <= t0 + enter + 2.0, first_seen - (t0 + enter)
    assert (counted_before["visits"], counted_before["reentries"]) == (1, 0)
    # After the restart: nothing more published for her, nothing counted twice.
    assert [v["event_id"] for _, v in sub.received(PREFIX + "visits")] == [visit["event_id"]]
    counts = sub.on(PREFIX + "counts")[-1].payload
    assert (counts["visits"], counts["reentries"], sum(counts["by_hour"])) == (1, 0, 1)
    assert "1 passage(s)" in log.read_text().split("started:")[-1], "the restarted daemon saw her pass again"
    print(f"visit published {published - stopped:.2f} s after SIGTERM; last seen {last_seen - stopped:+.2f} s "
          f"from it; first seen {first_seen - t0 - enter:+.2f} s from the walk-in")
