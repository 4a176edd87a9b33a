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
import os
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
# One decoding thread a camera: the readers of several cameras already share the cores, and
# FFmpeg's frame threads would each hold a frame back (latency) and hide the decoding CPU time.
DECODE_THREADS = 1
# RTSP over TCP: no frame lost to a full UDP buffer while the box is busy (a lost packet smears
# every frame up to the next key frame). Set OPENCV_FFMPEG_CAPTURE_OPTIONS to choose otherwise.
RTSP_OPTIONS = "rtsp_transport;tcp"
# FFmpeg and OpenCV write lines of their own to stderr (a damaged packet, a refused RTSP request),
# which would land between the daemon's JSON log lines; a lost, stalled or unreadable source is
# reported by the readers themselves, in the log. AV_LOG_QUIET, read when FFmpeg first opens
# something: set OPENCV_FFMPEG_LOGLEVEL (16 = errors) to see FFmpeg's own lines again.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def open_capture(source: str | int, *, open_timeout: float = OPEN_TIMEOUT_S,
                 read_timeout: float = READ_TIMEOUT_S) -> cv2.VideoCapture:
    """A capture for a camera: network URLs through FFmpeg with open and read timeouts.

    Without the read timeout, FFmpeg waits for a stalled stream forever (the TCP connection is
    still up), and the reader thread with it.
    """
    if isinstance(source, str) and source_kind(source) == "network":
        if source.lower().startswith("rtsp") and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = RTSP_OPTIONS
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000),
            cv2.CAP_PROP_N_THREADS, DECODE_THREADS])
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
        self._open().release()  # a file that cannot be read is refused at start, before any frame

    def _open(self) -> cv2.VideoCapture:
        """The file opened for reading; SourceError naming the camera, the path and what is wrong."""
        if not self.path.is_file():
            what = "is not a file" if self.path.exists() else "not found"
            raise SourceError(f"camera {self.camera_id}: video file {self.path} {what}")
        try:
            with open(self.path, "rb"):
                pass
        except OSError as exc:
            raise SourceError(f"camera {self.camera_id}: video file {self.path} cannot be read: "
                              f"{exc.strerror}") from None
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {self.camera_id}: cannot open video file {self.path} "
                              f"(not a video format OpenCV reads, or damaged)")
        return cap

    def frames(self) -> Iterator[Frame]:
        """Every sampled frame, stamped start_time + position in the file."""
        cap = self._open()
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


@dataclass
class ReaderStats:
    """What a live camera's reader did since start: the figures of `status`, doctor and /metrics."""

    received: int = 0        # frames decoded from the stream (every one: H.264 needs them all)
    converted: int = 0       # ... of which converted to a picture (due at the camera's fps)
    analysed: int = 0        # ... handed to the pipeline
    skipped: int = 0         # due, converted, but replaced by a newer one before the pipeline took it
    decode_s: float = 0.0    # CPU seconds of the reader thread decoding (grab)
    convert_s: float = 0.0   # CPU seconds converting the due frames to BGR (retrieve)
    size: tuple[int, int] | None = None  # (width, height) of the last picture


class LiveSource:
    """A network or USB camera read by its own thread; the newest frame wins.

    The reader decodes every frame the camera sends (grab: H.264 needs each one to decode the
    next) but converts to a picture only those due at `fps` (retrieve): a 25 frames/s camera
    analysed at 10 costs 10 conversions a second, not 25. A due frame the pipeline has not taken
    by the time the next is due is replaced (newest wins, counted in `stats.skipped`): a box that
    falls behind analyses fewer frames of every camera instead of older ones. Nothing queues.

    On loss of the stream the reader reconnects with exponential backoff, reporting
    `reconnecting` meanwhile. A stream that stalls, sends something that is not a picture, or
    makes OpenCV raise is a lost stream: the reader thread never dies of it.
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
        self.stats = ReaderStats()
        self.started_at = time.monotonic()
        self._latest: Frame | None = None
        self._last_polled: Frame | None = None
        self._next_due = 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    def start(self) -> LiveSource:
        self.started_at = time.monotonic()
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
                    got_any = self._read(cap)
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

    def _read(self, cap: cv2.VideoCapture) -> bool:
        """Decode every frame until the stream ends or stop(); convert the due ones. Whether any came."""
        got_any = False
        while not self._stop.is_set():
            if not self._grab(cap):
                return got_any
            got_any = True
            self.state = STREAMING
            self.last_frame_at = time.monotonic()
            if self.last_frame_at < self._next_due:
                continue  # decoded, never converted
            self._next_due = self._due_after(self.last_frame_at)
            image = self._retrieve(cap)
            if image is None:
                return got_any
            self._offer(Frame(self.camera_id, self.now(), image))
        return got_any

    def _due_after(self, now: float) -> float:
        """When the next frame is due: on a fixed grid at `fps`, restarted after a gap (no burst)."""
        period = 1.0 / self.fps
        due = self._next_due + period
        return due if due > now else now + period

    def _grab(self, cap: cv2.VideoCapture) -> bool:
        started = time.thread_time()
        ok = bool(cap.grab())
        self.stats.decode_s += time.thread_time() - started
        self.stats.received += ok
        return ok

    def _retrieve(self, cap: cv2.VideoCapture) -> np.ndarray | None:
        started = time.thread_time()
        ok, image = cap.retrieve()
        self.stats.convert_s += time.thread_time() - started
        if not ok or image is None or not hasattr(image, "shape"):
            return None
        self.stats.converted += 1
        self.stats.size = (int(image.shape[1]), int(image.shape[0]))
        return image

    def _offer(self, frame: Frame) -> None:
        """The newest due frame for the pipeline; one it never took is counted as skipped."""
        with self._cond:
            if self._latest is not None and self._latest is not self._last_polled:
                self.stats.skipped += 1
            self._latest = frame
            self._cond.notify_all()

    def frame_age(self) -> float | None:
        """Seconds since the stream last delivered a frame (None before the first)."""
        return None if self.last_frame_at is None else time.monotonic() - self.last_frame_at

    def poll(self) -> Frame | None:
        """The newest frame if the pipeline has not had it yet (the reader offers at most `fps` a second), else None."""
        with self._cond:
            frame = self._latest
        if frame is None or frame is self._last_polled:
            return None  # the reader offers frames at `fps` already
        self._last_polled = frame
        self.stats.analysed += 1
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
