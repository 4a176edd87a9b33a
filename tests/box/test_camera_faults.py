"""Live cameras that misbehave: a real MJPEG-over-HTTP stream (tests/support/clips.py) that dies,
comes back, stalls and lies. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.broker import Subscriber, mosquitto_path, wait_until
from support.clips import START, MjpegServer
from support.daemon import PREFIX, camera_table, store_config
from support.daemon_run import online_status, running

from footfall.edge.sources import ENDED, RECONNECTING, STREAMING, LiveSource


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def frames_after(live: LiveSource, after: float, timeout: float, what: str) -> None:
    """Wait until the source has a frame read after monotonic time `after`."""
    wait_until(lambda: live.last_frame_at is not None and live.last_frame_at > after and live.state == STREAMING,
               timeout, what)


@contextmanager
def camera_and_reader() -> Iterator[tuple[MjpegServer, LiveSource]]:
    """An MJPEG camera and a reader of it (quick to give up on a stream and to retry) that has had
    its first frames; both stopped when the block ends."""
    server = MjpegServer().start()
    live = LiveSource("door-1", server.url, fps=10, now=lambda: START, backoff=(0.1, 0.5),
                      open_timeout=2.0, read_timeout=1.0).start()
    try:
        frames_after(live, 0.0, 15, "the first frames")
        yield server, live
    finally:
        live.stop()
        server.stop()


def test_a_camera_switched_off_and_on_again_reconnects_and_nothing_leaks():
    threads_before, fds_before = threading.active_count(), open_fds()
    with camera_and_reader() as (server, live):
        server.stop()
        wait_until(lambda: live.state == RECONNECTING, 10, "the reconnecting state after the camera died")
        assert live.alive
        time.sleep(1.0)  # several failed attempts, backing off
        lost_at = live.reconnects
        assert lost_at >= 2
        server.start()  # same port
        frames_after(live, time.monotonic(), 15, "streaming again after the camera came back")
        assert live.alive
    assert live.state == ENDED and not live.alive
    wait_until(lambda: threading.active_count() <= threads_before + 1, 5,
               f"threads back to {threads_before} (now {threading.active_count()})")
    wait_until(lambda: open_fds() <= fds_before + 3, 5, f"open fds back to {fds_before} (now {open_fds()})")


def test_a_stream_that_stalls_mid_frame_or_sends_garbage_does_not_kill_the_reader():
    with camera_and_reader() as (server, live):
        server.mode = "stall"
        wait_until(lambda: live.state == RECONNECTING, 10, "a stalled stream to count as lost (read timeout)")
        assert live.alive
        server.mode = "ok"
        frames_after(live, time.monotonic(), 15, "frames after the stall")
        server.mode = "garbage"
        wait_until(lambda: live.state == RECONNECTING, 10, "garbage to count as a lost stream")
        time.sleep(0.5)
        assert live.alive
        server.mode = "ok"
        frames_after(live, time.monotonic(), 15, "frames after the garbage")
    assert not live.alive


def test_stop_returns_promptly_while_the_stream_is_stalled():
    with camera_and_reader() as (server, live):
        server.mode = "stall"
        time.sleep(0.3)  # the reader is now blocked inside a read
        began = time.monotonic()
        live.stop(timeout=5.0)
        assert not live.alive and time.monotonic() - began < 3.0


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_a_daemon_with_two_cameras_keeps_the_healthy_one_running_while_the_other_dies(
        tmp_path: Path, broker, default_analyzer):
    door, till = MjpegServer().start(), MjpegServer().start()
    config = store_config(tmp_path, broker, camera_table("door-1", door.url), camera_table("till-1", till.url))
    status = Subscriber(broker.port, PREFIX + "status")

    def cameras_reported(door_state: str, till_state: str):
        return online_status({"door-1": door_state, "till-1": till_state})

    try:
        with running(config, default_analyzer) as daemon:
            status.wait_for(cameras_reported(STREAMING, STREAMING), 30, "both cameras streaming")
            door.stop()
            status.wait_for(cameras_reported(RECONNECTING, STREAMING), 15, "door-1 reconnecting, till-1 streaming")
            (till_source,) = [s for s in daemon.live_sources if s.camera_id == "till-1"]
            frames_after(till_source, time.monotonic(), 10, "till-1 still delivering frames")
            assert all(daemon.stage_health().values()), daemon.stage_health()
            door.start()
            status.wait_for(cameras_reported(STREAMING, STREAMING), 30, "door-1 back after the camera returned")
            assert daemon.frame_errors == 0
    finally:
        door.stop()
        till.stop()
        status.close()
    assert not any(s.alive for s in daemon.live_sources)
