"""Camera sources: RTSP/HTTP streams, USB devices and video files, as timestamped frames.

A file is replayed on the media clock (`start_time` + the frame's position), so an hour of
store time runs in seconds; several files merge in media-clock order. A live camera is read
by its own thread that keeps only the newest frame, and reconnects with exponential backoff
when the stream is lost. Network streams are opened with open and read timeouts, so a camera
that stops sending in the middle of a frame counts as lost instead of blocking its reader.
"""

from __future__ import annotations

import heapq
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from footfall.sync.events import CameraState

log = logging.getLogger(__name__)

STREAMING: CameraState = "streaming"
RECONNECTING: CameraState = "reconnecting"
ENDED: CameraState = "ended"


class SourceError(Exception):
    """A camera source cannot be opened or read; the message names the camera."""


@dataclass(frozen=True)
class Frame:
    camera_id: str
    ts: datetime
    image: np.ndarray


OPEN_TIMEOUT_S = 10.0   # a network stream that does not answer within this is retried later
READ_TIMEOUT_S = 5.0    # a network stream silent this long (a stall, even mid-frame) is lost


def open_capture(source: str | int, *, open_timeout: float = OPEN_TIMEOUT_S,
                 read_timeout: float = READ_TIMEOUT_S) -> cv2.VideoCapture:
    """A capture for a camera: network URLs through FFmpeg with open and read timeouts.

    Without the read timeout, FFmpeg waits for a stalled stream forever (the TCP connection is
    still up), and the reader thread with it.
    """
    if isinstance(source, str) and source_kind(source) == "network":
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)])
    return cv2.VideoCapture(source)


def source_kind(source: str) -> str:
    """"network" for stream URLs, "usb" for /dev/videoN or a device index, else "file"."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.IGNORECASE):
        return "network"
    if re.fullmatch(r"\d+", source) or re.fullmatch(r"/dev/video\d+", source):
        return "usb"
    return "file"


class FpsSampler:
    """Keeps frames at a target rate from media timestamps, on a fixed grid (no drift)."""

    EPSILON = 1e-6

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.origin: float | None = None
        self.next_slot = 0

    def keep(self, t: float) -> bool:
        """Whether the frame at media time `t` (seconds) is kept."""
        if self.origin is None:
            self.origin = t
        slot = (t - self.origin) / self.period + self.EPSILON
        if slot < self.next_slot:
            return False
        self.next_slot = int(slot) + 1
        return True


class FileSource:
    """A video file replayed on the media clock."""

    def __init__(self, camera_id: str, path: str | Path, start_time: datetime, fps: float) -> None:
        if start_time.tzinfo is None:
            raise SourceError(f"camera {camera_id}: start_time must carry a UTC offset")
        self.camera_id = camera_id
        self.path = Path(path)
        self.start_time = start_time
        self.fps = fps
        self.state = STREAMING
        if not self.path.is_file():
            raise SourceError(f"camera {camera_id}: video file {self.path} not found")

    def frames(self) -> Iterator[Frame]:
        """Every sampled frame, stamped start_time + position in the file."""
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"camera {self.camera_id}: cannot open video file {self.path}")
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        sampler = FpsSampler(self.fps)
        index = 0
        try:
            while cap.grab():
                # Position from the frame index where the container gives a rate: exact, where
                # CAP_PROP_POS_MSEC is not for some codecs.
                t = index / native if native > 0 else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                index += 1
                if not sampler.keep(t):
                    continue  # grabbed, never decoded
                ok, image = cap.retrieve()
                if ok and image is not None:
                    yield Frame(self.camera_id, self.start_time + timedelta(seconds=t), image)
        finally:
            cap.release()
            self.state = ENDED


def merge_by_time(sources: Iterable[FileSource]) -> Iterator[Frame]:
    """Frames of several file sources in media-clock order."""
    return heapq.merge(*(s.frames() for s in sources), key=lambda f: f.ts)


class LiveSource:
    """A network or USB camera read by its own thread; the newest frame wins.

    The reader drops frames it has no time for (never queues), and on loss of the stream
    reconnects with exponential backoff, reporting `reconnecting` meanwhile. A stream that
    stalls, sends something that is not a picture, or makes OpenCV raise is a lost stream:
    the reader thread never dies of it.
    """

    def __init__(self, camera_id: str, source: str, fps: float, *, now: Callable[[], datetime],
                 backoff: tuple[float, float] = (0.5, 30.0),
                 opener: Callable[[str | int], cv2.VideoCapture] | None = None,
                 open_timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S) -> None:
        self.camera_id = camera_id
        self.source = int(source) if source.isdigit() else source
        self.fps = fps
        self.now = now
        self.backoff_min, self.backoff_max = backoff
        self.opener = opener or (lambda s: open_capture(s, open_timeout=open_timeout, read_timeout=read_timeout))
        self.state = RECONNECTING
        self.reconnects = 0
        self.last_frame_at: float | None = None  # monotonic, for the watchdog
        self._latest: Frame | None = None
        self._last_polled: Frame | None = None
        self._next_poll = 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    def start(self) -> LiveSource:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)
        self.state = ENDED

    def _run(self) -> None:
        delay = self.backoff_min
        while not self._stop.is_set():
            cap = None
            got_any = False
            try:
                cap = self.opener(self.source)
                if cap is not None and cap.isOpened():
                    while not self._stop.is_set():
                        ok, image = cap.read()
                        if not ok or image is None:
                            break
                        got_any = True
                        self.state = STREAMING
                        self.last_frame_at = time.monotonic()
                        with self._cond:
                            self._latest = Frame(self.camera_id, self.now(), image)
                            self._cond.notify_all()
            except Exception:  # an OpenCV error on a bad stream is a lost stream, never the thread's end
                log.exception("camera %s: reading the stream failed", self.camera_id)
            finally:
                if cap is not None:
                    try:
                        cap.release()
                    except Exception:
                        log.exception("camera %s: releasing the stream failed", self.camera_id)
            if got_any:
                delay = self.backoff_min
            if self._stop.is_set():
                break
            self.state = RECONNECTING
            self.reconnects += 1
            log.warning("camera %s: stream lost or unavailable, retrying in %.1f s", self.camera_id, delay)
            self._stop.wait(delay)
            delay = min(self.backoff_max, delay * 2)

    def poll(self) -> Frame | None:
        """The newest frame if it is new and a frame is due (at most `fps` a second), else None."""
        now = time.monotonic()
        with self._cond:
            frame = self._latest
        if frame is None or frame is self._last_polled or now < self._next_poll:
            return None
        self._last_polled = frame
        self._next_poll = max(self._next_poll + 1.0 / self.fps, now)
        return frame

    @property
    def alive(self) -> bool:
        """The reader thread is running (streaming or retrying)."""
        return self._thread.is_alive()

    def frames(self) -> Iterator[Frame]:
        """The newest frame, at most `fps` times a second, until stopped."""
        period = 1.0 / self.fps
        next_due = time.monotonic()
        last_seen: Frame | None = None
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and (self._latest is None or self._latest is last_seen):
                    self._cond.wait(0.5)
                frame = self._latest
            if self._stop.is_set() or frame is None:
                return
            wait = next_due - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                with self._cond:
                    frame = self._latest or frame  # newest wins
            next_due = max(next_due + period, time.monotonic())
            last_seen = frame
            yield frame
