"""Live cameras through a real RTSP server: H.264 streams read by the reader and the daemon.

The cameras are GStreamer's RTSP server (`tooling/rtsp_camera.py`, run by the system Python)
serving a clip as a looped H.264 stream on 127.0.0.1, every frame numbered in its picture.
They are switched off (SIGKILL) and on again on the same port, made to stall and to change
resolution while a daemon reads them. Tests skip, naming the reason, where GStreamer or
Mosquitto is missing. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.broker import Subscriber, free_port, mosquitto_path, wait_until
from support.daemon import PREFIX, camera_table, store_config
from support.daemon_run import online_status, running

from footfall.edge.sources import RECONNECTING, STREAMING, LiveSource
from footfall.tooling.rtsp_camera import RtspCameras, gstreamer_missing, read_stamp

MISSING = gstreamer_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))

CLIP_FRAMES, CLIP_FPS = 40, 10   # 4 s of clip; served at 25 frames/s that is 100 numbered frames a loop
STREAM_FPS = 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small clip: a bright disc crossing a grey room."""
    path = tmp_path_factory.mktemp("clip") / "door.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), CLIP_FPS, (320, 240))
    for i in range(CLIP_FRAMES):
        image = np.full((240, 320, 3), 90, np.uint8)
        cv2.circle(image, (8 * i, 140), 24, (240, 240, 240), -1)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def rtsp_cameras(tmp_path: Path) -> Iterator[Callable[..., RtspCameras]]:
    """Start RTSP cameras (one helper process each call); every one is stopped at the end."""
    started: list[RtspCameras] = []

    def start(files: dict[str, Path], **options) -> RtspCameras:
        cameras = RtspCameras(files, fps=STREAM_FPS, log=tmp_path / "rtsp.log", **options).start()
        started.append(cameras)
        return cameras

    yield start
    for cameras in started:
        cameras.stop()


def read_frames(url: str, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened(), f"{url} did not open"
        frames = []
        for _ in range(count):
            ok, image = cap.read()
            assert ok, f"{url}: a frame could not be read"
            frames.append(image)
        return frames
    finally:
        cap.release()


def test_the_camera_serves_its_clip_as_h264_at_the_asked_size_every_frame_numbered(clip, rtsp_cameras):
    cameras = rtsp_cameras({"door-1": clip}, size="640x360")
    frames = read_frames(cameras.url("door-1"), 30)
    assert {f.shape for f in frames} == {(360, 640, 3)}
    stamps = [read_stamp(f) for f in frames]
    assert None not in stamps
    assert np.all(np.diff(stamps) == 1), stamps  # every frame of the stream, in order
    (play,) = cameras.plays
    assert play["play"] == "door-1" and play["fps"] == STREAM_FPS
    assert abs(play["frames"] - CLIP_FRAMES * STREAM_FPS / CLIP_FPS) <= 3  # the clip's 4 s at 25 frames/s


def test_the_stamp_does_not_change_the_grey_picture_the_motion_gate_sees():
    from footfall.tooling.rtsp_camera import ONE_BGR, ZERO_BGR

    grey = cv2.cvtColor(np.array([[ONE_BGR, ZERO_BGR]], np.uint8), cv2.COLOR_BGR2GRAY)
    assert abs(int(grey[0, 0]) - int(grey[0, 1])) <= 1


def test_a_live_reader_decodes_every_frame_but_converts_only_those_due_at_its_fps(clip, rtsp_cameras):
    cameras = rtsp_cameras({"door-1": clip}, size="640x360")
    live = LiveSource("door-1", cameras.url("door-1"), fps=5, now=lambda: datetime.now(UTC)).start()
    taken: list[int | None] = []
    try:
        deadline = time.monotonic() + 30
        while len(taken) < 6 and time.monotonic() < deadline:
            frame = live.poll()
            if frame is not None:
                taken.append(read_stamp(frame.image))
            time.sleep(0.01)
    finally:
        live.stop()
    assert len(taken) == 6 and None not in taken
    assert live.stats.received > 2 * live.stats.converted  # 25 frames/s decoded, 5 converted
    assert all(b > a + 1 for a, b in zip(taken, taken[1:]) if b > a), taken  # frames in between never converted


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_a_daemon_rides_out_a_killed_server_a_stall_and_a_resolution_change(
        tmp_path: Path, broker, clip: Path, rtsp_cameras, default_analyzer):
    door = rtsp_cameras({"door-1": clip}, size="640x360", alt_size="480x270")
    till = rtsp_cameras({"till-1": clip}, size="640x360")
    metrics_port = free_port()
    config = store_config(tmp_path, broker, f"[metrics]\nport = {metrics_port}\n",
                          camera_table("door-1", "rtsp://127.0.0.1:9/main", detect_source=door.url("door-1")),
                          camera_table("till-1", till.url("till-1")))
    status = Subscriber(broker.port, PREFIX + "status")

    def reported(door_state: str, till_state: str):
        return online_status({"door-1": door_state, "till-1": till_state})

    def analysed_more(camera: str, what: str) -> None:
        before = sources[camera].stats.analysed
        wait_until(lambda: sources[camera].stats.analysed >= before + 5, 20, what)

    try:
        with running(config, default_analyzer) as daemon:
            sources = {s.camera_id: s for s in daemon.live_sources}
            status.wait_for(reported(STREAMING, STREAMING), 60, "both cameras streaming")
            analysed_more("door-1", "door-1 analysed from its detect_source")

            door.kill()
            status.wait_for(reported(RECONNECTING, STREAMING), 30, "door-1 reconnecting after its server was killed")
            analysed_more("till-1", "till-1 analysed while door-1 is down")
            door.start()  # same port
            status.wait_for(lambda ms: reported(STREAMING, STREAMING)(ms[-1:]), 60, "door-1 back after the restart")
            analysed_more("door-1", "door-1 analysed again")

            till.command("stall", "till-1")
            status.wait_for(lambda ms: reported(STREAMING, RECONNECTING)(ms[-1:]), 30, "a stalled till-1 reconnecting")
            analysed_more("door-1", "door-1 analysed while till-1 stalls")
            till.command("resume", "till-1")
            status.wait_for(lambda ms: reported(STREAMING, STREAMING)(ms[-1:]), 60, "till-1 back after the stall")

            door.command("resize", "door-1")
            analysed_more("door-1", "door-1 analysed after its resolution changed")
            analysed_more("till-1", "till-1 analysed after door-1's resolution changed")

            page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            assert 'footfall_camera_frames_analysed_total{camera="door-1"}' in page
            assert 'footfall_camera_reconnects_total{camera="till-1"}' in page
            assert daemon.frame_errors == 0 and all(daemon.stage_health().values()), daemon.stage_health()
    finally:
        status.close()
    online = [m.payload for m in status.messages if m.payload.get("state") == "online"]
    stats = online[-1]["camera_stats"]
    assert set(stats) == {"door-1", "till-1"}
    assert {"analysed_fps", "skipped", "decode_ms", "inference_ms", "frame_age_s"} <= set(stats["door-1"])
    assert stats["till-1"]["analysed"] > 0
