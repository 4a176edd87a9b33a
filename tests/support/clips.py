"""Pictures for the daemon to look at: the replayed entrance clip, and cameras on loopback.

`MjpegServer` serves `multipart/x-mixed-replace` JPEG frames on 127.0.0.1 (as many IP cameras
do) and can be stopped and started again on the same port, made to stop in the middle of a
frame, or to send bytes that are not a JPEG. OpenCV reads it over FFmpeg like any camera URL.
`ClipCamera` is one that shows an empty entrance until told to play a rendered clip.
Registered in tests/conftest.py, so `entrance_clip` is a fixture of every test module.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from datetime import datetime, timedelta, timezone
from io import BufferedIOBase
from pathlib import Path

import cv2
import numpy as np
import pytest

from footfall.recognition.analyzer import FaceAnalyzer
from footfall.tooling.scenario import Appearance, Clip, SpriteBank, frames, render_clip

START = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))
BOUNDARY = b"frame"


@pytest.fixture(scope="module")
def entrance_clip(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, default_analyzer: FaceAnalyzer) -> Path:
    """30 s at the door from START: a stranger, another stranger, a member, the first stranger again, staff."""
    bank = SpriteBank(faces_dir, default_analyzer)
    walkers = (Appearance("bbt_amy", "1.jpg", 1.0), Appearance("bbt_raj", "1.jpg", 6.0, lane=0.7),
               Appearance("deepface_p05", "1.jpg", 12.0), Appearance("bbt_amy", "1.jpg", 20.0, lane=0.4),
               Appearance("deepface_p03", "1.jpg", 25.0))
    path = tmp_path_factory.mktemp("clips") / "door.avi"
    return render_clip(Clip("door-1", START, 30.0, walkers, fps=10), path, bank, seed=1)


def part_header(data: bytes) -> bytes:
    """What comes before a JPEG in the multipart stream."""
    return b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(data))


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
        """Where OpenCV (or the daemon) reads the stream."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        """Listen (on the same port as before, after a `stop`) and serve every client its stream."""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
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

    def _serve(self, out: BufferedIOBase) -> None:
        while not self._stopping.is_set():
            image = np.full((120, 160, 3), self.frames_sent % 256, np.uint8)
            ok, jpeg = cv2.imencode(".jpg", image)
            assert ok
            data = jpeg.tobytes()
            if self.mode == "garbage":
                data = b"\x00 this is not a picture \xff" * 40
            out.write(part_header(data))
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


class ClipCamera(MjpegServer):
    """An MJPEG camera that shows an empty entrance until `play()`, then the clip once, then empty again."""

    def __init__(self, clip: Clip, bank: SpriteBank, seed: int) -> None:
        super().__init__(fps=clip.fps)
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames(clip, bank, seed=seed)]
        self.empty = self.jpegs[0]
        self.playing = threading.Event()
        self.played = threading.Event()

    def play(self) -> None:
        """Show the clip, once, from its first frame."""
        self.playing.set()

    def _serve(self, out: BufferedIOBase) -> None:
        position = 0
        while not self._stopping.is_set():
            if self.playing.is_set() and not self.played.is_set():
                data = self.jpegs[position]
                position += 1
                if position == len(self.jpegs):
                    self.played.set()
            else:
                data = self.empty
            out.write(part_header(data))
            out.write(data + b"\r\n")
            out.flush()
            time.sleep(self.period)
