"""Camera sources: files on the media clock, live streams that drop frames and reconnect."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest

from footfall.edge.sources import (
    ENDED,
    RECONNECTING,
    STREAMING,
    FileSource,
    FpsSampler,
    LiveSource,
    SourceError,
    merge_by_time,
    source_kind,
)

START = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def write_clip(path, frames: int, fps: float, size=(160, 120)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), (i * 7) % 256, dtype=np.uint8)
        cv2.putText(image, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(image)
    writer.release()


def test_source_kinds_are_told_apart():
    assert source_kind("rtsp://cam/stream1") == "network"
    assert source_kind("http://127.0.0.1:8080/video.mjpg") == "network"
    assert source_kind("/dev/video0") == "usb" and source_kind("0") == "usb"
    assert source_kind("clips/door.mp4") == "file"


def test_sampling_keeps_frames_on_a_fixed_grid():
    def kept(timestamps, fps):
        s = FpsSampler(fps)
        return [i for i, t in enumerate(timestamps) if s.keep(t)]

    assert kept([i / 25 for i in range(50)], 5) == list(range(0, 50, 5))
    assert kept([i / 10 for i in range(20)], 10) == list(range(20))
    assert kept([i / 3 for i in range(6)], 5) == list(range(6))  # slower than asked: keep all
    assert len(kept([i / 29.97 for i in range(2997)], 5)) == 500  # 100 s of NTSC at 5 fps, no drift


def test_a_file_is_replayed_on_the_media_clock(tmp_path):
    path = tmp_path / "door.avi"
    write_clip(path, frames=50, fps=25)
    source = FileSource("door-1", path, START, fps=5)
    frames = list(source.frames())
    assert len(frames) == 10
    assert [f.ts for f in frames] == [START + timedelta(seconds=0.2 * i) for i in range(10)]
    assert all(f.camera_id == "door-1" and f.image.shape == (120, 160, 3) for f in frames)
    assert source.state == ENDED


def test_several_files_merge_in_media_clock_order(tmp_path):
    write_clip(tmp_path / "a.avi", frames=10, fps=10)
    write_clip(tmp_path / "b.avi", frames=10, fps=10)
    a = FileSource("door-1", tmp_path / "a.avi", START, fps=10)
    b = FileSource("door-2", tmp_path / "b.avi", START + timedelta(seconds=0.55), fps=10)
    merged = list(merge_by_time([a, b]))
    assert [f.ts for f in merged] == sorted(f.ts for f in merged)
    assert {f.camera_id for f in merged} == {"door-1", "door-2"} and len(merged) == 20


def test_a_missing_or_unreadable_file_is_named(tmp_path):
    with pytest.raises(SourceError, match="door-1: video file .*nope.mp4 not found"):
        FileSource("door-1", tmp_path / "nope.mp4", START, fps=5)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="door-1: cannot open video file"):
        list(FileSource("door-1", junk, START, fps=5).frames())


class FlakyCamera:
    """Fails to open `failures` times, then streams `frames` frames and drops the connection."""

    def __init__(self, failures: int, frames: int) -> None:
        self.failures, self.frames, self.opened = failures, frames, 0
        self.grabbed = self.retrieved = 0

    def __call__(self, _source):
        self.opened += 1
        camera = self

        class Capture:
            served = 0

            def isOpened(self):
                return camera.opened > camera.failures

            def grab(self):
                if self.served >= camera.frames:
                    return False
                self.served += 1
                camera.grabbed += 1
                time.sleep(0.002)
                return True

            def retrieve(self):
                camera.retrieved += 1
                return True, np.full((4, 4, 3), self.served % 256, np.uint8)

            def release(self):
                pass

        return Capture()


def test_a_lost_stream_reconnects_with_backoff_and_reports_its_state():
    camera = FlakyCamera(failures=2, frames=40)
    live = LiveSource("door-1", "rtsp://cam", fps=50, now=lambda: START, backoff=(0.01, 0.04), opener=camera)
    states = []
    live.start()
    try:
        deadline = time.monotonic() + 5
        while live.reconnects < 3 and time.monotonic() < deadline:
            states.append(live.state)
            time.sleep(0.001)
    finally:
        live.stop()
    assert RECONNECTING in states and STREAMING in states
    assert camera.opened >= 3 and live.reconnects >= 3
    assert live.state == ENDED
    assert not live._thread.is_alive()


def test_a_slow_consumer_gets_the_newest_frame_and_nothing_queues():
    camera = FlakyCamera(failures=0, frames=10_000)
    live = LiveSource("door-1", "0", fps=20, now=lambda: START, opener=camera).start()
    got = []
    try:
        for frame in live.frames():
            got.append(int(frame.image[0, 0, 0]))
            time.sleep(0.05)  # slower than the camera
            if len(got) == 5:
                break
    finally:
        live.stop()
    gaps = np.diff(got) % 256
    assert np.all(gaps > 1), "frames produced meanwhile were dropped, not queued"
    assert threading.active_count() < 50


def test_every_frame_is_decoded_but_only_those_due_at_fps_are_converted():
    camera = FlakyCamera(failures=0, frames=10_000)  # about 400 frames/s
    live = LiveSource("door-1", "0", fps=10, now=lambda: START, opener=camera).start()
    try:
        deadline = time.monotonic() + 10
        while live.stats.converted < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        live.stop()
    assert live.stats.received == camera.grabbed and camera.retrieved == live.stats.converted
    assert live.stats.converted >= 5 and camera.grabbed > 5 * camera.retrieved


def test_due_frames_the_pipeline_never_took_are_counted_as_skipped():
    camera = FlakyCamera(failures=0, frames=10_000)
    live = LiveSource("door-1", "0", fps=20, now=lambda: START, opener=camera).start()
    try:
        deadline = time.monotonic() + 10
        while live.stats.converted < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # nobody polls: each converted frame is replaced by the next
        taken = live.poll()
        assert taken is not None and live.poll() is None  # one frame is handed over once
    finally:
        live.stop()
    assert live.stats.analysed == 1
    assert live.stats.skipped == live.stats.converted - 1 - (live._latest is not taken)
