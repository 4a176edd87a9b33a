"""Live cameras that misbehave: a real MJPEG-over-HTTP stream that dies, comes back, stalls and lies.

`MjpegServer` serves `multipart/x-mixed-replace` JPEG frames on 127.0.0.1 (as many IP cameras
do) and can be stopped and started again on the same port, made to stop in the middle of a
frame, or to send bytes that are not a JPEG. OpenCV reads it over FFmpeg like any camera URL.
Every wait is bounded by a deadline.
"""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.broker import Broker, Subscriber, mosquitto_path, wait_until

from footfall.edge.sources import ENDED, RECONNECTING, STREAMING, LiveSource

START = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))
BOUNDARY = b"frame"


class MjpegServer:
    """An MJPEG camera on 127.0.0.1. `mode`: "ok", "stall" (stops half-way through a frame) or "garbage"."""

    def __init__(self, port: int = 0, fps: float = 25.0) -> None:
        self.port = port
        self.period = 1.0 / fps
        self.mode = "ok"
        self.frames_sent = 0
        self._httpd: socketserver.TCPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                with owner._lock:
                    owner._connections.append(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.end_headers()
                try:
                    owner._serve(self.wfile)
                except OSError:
                    pass  # the client went away, or the server was stopped

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._stopping.clear()
        self._httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mjpeg-server", daemon=True)
        self._thread.start()
        return self

    def _serve(self, out) -> None:
        while not self._stopping.is_set():
            image = np.full((120, 160, 3), self.frames_sent % 256, np.uint8)
            ok, jpeg = cv2.imencode(".jpg", image)
            assert ok
            data = jpeg.tobytes()
            if self.mode == "garbage":
                data = b"\x00 this is not a picture \xff" * 40
            out.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(data)))
            if self.mode == "stall":
                out.write(data[: len(data) // 2])
                out.flush()
                while self.mode == "stall" and not self._stopping.is_set():
                    time.sleep(0.02)
                data = data[len(data) // 2:]
            out.write(data + b"\r\n")
            out.flush()
            self.frames_sent += 1
            time.sleep(self.period)

    def stop(self) -> None:
        """Stop listening and cut every open stream (the camera is switched off)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def frames_after(live: LiveSource, after: float, timeout: float, what: str) -> None:
    """Wait until the source has a frame read after monotonic time `after`."""
    wait_until(lambda: live.last_frame_at is not None and live.last_frame_at > after and live.state == STREAMING,
               timeout, what)


def test_a_camera_switched_off_and_on_again_reconnects_and_nothing_leaks():
    threads_before, fds_before = threading.active_count(), open_fds()
    server = MjpegServer().start()
    live = LiveSource("door-1", server.url, fps=10, now=lambda: START, backoff=(0.1, 0.5),
                      open_timeout=2.0, read_timeout=1.0).start()
    try:
        frames_after(live, 0.0, 15, "the first frames")
        server.stop()
        wait_until(lambda: live.state == RECONNECTING, 10, "the reconnecting state after the camera died")
        assert live.alive
        time.sleep(1.0)  # several failed attempts, backing off
        lost_at = live.reconnects
        assert lost_at >= 2
        server.start()  # same port
        frames_after(live, time.monotonic(), 15, "streaming again after the camera came back")
        assert live.alive
    finally:
        live.stop()
        server.stop()
    assert live.state == ENDED and not live.alive
    wait_until(lambda: threading.active_count() <= threads_before + 1, 5,
               f"threads back to {threads_before} (now {threading.active_count()})")
    wait_until(lambda: open_fds() <= fds_before + 3, 5, f"open fds back to {fds_before} (now {open_fds()})")


def test_a_stream_that_stalls_mid_frame_or_sends_garbage_does_not_kill_the_reader():
    server = MjpegServer().start()
    live = LiveSource("door-1", server.url, fps=10, now=lambda: START, backoff=(0.1, 0.5),
                      open_timeout=2.0, read_timeout=1.0).start()
    try:
        frames_after(live, 0.0, 15, "the first frames")
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
    finally:
        live.stop()
        server.stop()
    assert not live.alive


def test_stop_returns_promptly_while_the_stream_is_stalled():
    server = MjpegServer().start()
    live = LiveSource("door-1", server.url, fps=10, now=lambda: START, backoff=(0.1, 0.5),
                      open_timeout=2.0, read_timeout=1.0).start()
    try:
        frames_after(live, 0.0, 15, "the first frames")
        server.mode = "stall"
        time.sleep(0.3)  # the reader is now blocked inside a read
        began = time.monotonic()
        live.stop(timeout=5.0)
        assert not live.alive and time.monotonic() - began < 3.0
    finally:
        live.stop()
        server.stop()


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_a_daemon_with_two_cameras_keeps_the_healthy_one_running_while_the_other_dies(
        tmp_path: Path, default_analyzer):
    from footfall.config.schema import load_config
    from footfall.edge.daemon import Daemon

    broker = Broker(tmp_path / "broker").start()
    door, till = MjpegServer().start(), MjpegServer().start()
    config = tmp_path / "footfall.toml"
    config.write_text(f"""store_id = "sh-001"
timezone = "Asia/Shanghai"
[mqtt]
url = "{broker.url}"
[storage]
dir = "{tmp_path / 'state'}"
[[cameras]]
id = "door-1"
source = "{door.url}"
fps = 5
[[cameras]]
id = "till-1"
source = "{till.url}"
fps = 5
""")
    status = Subscriber(broker.port, "footfall/sh-001/status")
    daemon = Daemon(load_config(config), analyzer=default_analyzer)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()

    def cameras_reported(door_state: str, till_state: str):
        return lambda ms: any(m.payload.get("state") == "online" and
                              m.payload.get("cameras") == {"door-1": door_state, "till-1": till_state} for m in ms)

    try:
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
        daemon.stop()
        thread.join(30)
        door.stop()
        till.stop()
        status.close()
        broker.stop()
    assert not thread.is_alive()
    assert not any(s.alive for s in daemon.live_sources)
