"""What the live cameras cost and deliver: per camera figures for `status`, `doctor` and /metrics.

`CameraMeter` turns each reader's running totals (`edge/sources.py` ReaderStats) and the
inference time the daemon spent on its frames into rates over the last interval. `render`
writes the Prometheus text exposition format; `MetricsServer` serves it on GET /metrics
(loopback by default, off unless `metrics.port` is set).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from footfall.edge.sources import STREAMING, LiveSource

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class CameraFigures:
    """One live camera over the last interval (rates) and since start (totals)."""

    camera_id: str
    state: str
    analysed_fps: float
    received: int
    analysed: int
    skipped: int
    decode_ms: float       # reader CPU per received frame (decoding) plus per converted frame (conversion)
    inference_ms: float    # pipeline time per analysed frame
    frame_age_s: float | None
    reconnects: int

    def status_fields(self) -> dict[str, float]:
        """The camera's entry in `status` (`camera_stats`)."""
        out = {"analysed_fps": round(self.analysed_fps, 2), "received": self.received, "analysed": self.analysed,
               "skipped": self.skipped, "decode_ms": round(self.decode_ms, 2),
               "inference_ms": round(self.inference_ms, 2)}
        if self.frame_age_s is not None:
            out["frame_age_s"] = round(self.frame_age_s, 3)
        return out


class CameraMeter:
    """Rates of each live camera between two readings; the daemon adds inference time per frame."""

    def __init__(self, sources: Iterable[LiveSource]) -> None:
        self.sources = list(sources)
        self.inference_s: dict[str, float] = {s.camera_id: 0.0 for s in self.sources}
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def add_inference(self, camera_id: str, seconds: float) -> None:
        """Time the pipeline spent on one analysed frame of `camera_id`."""
        with self._lock:
            self.inference_s[camera_id] = self.inference_s.get(camera_id, 0.0) + seconds

    def read(self) -> list[CameraFigures]:
        """Every live camera's figures; rates since the previous `read` (or since start)."""
        now = time.monotonic()
        return [self._figures(source, now) for source in self.sources]

    def _figures(self, source: LiveSource, now: float) -> CameraFigures:
        s = source.stats
        since, before = self._last.get(source.camera_id, (source.started_at, 0))
        self._last[source.camera_id] = (now, s.analysed)
        elapsed = now - since
        with self._lock:
            inference = self.inference_s.get(source.camera_id, 0.0)
        decode = s.decode_s / s.received if s.received else 0.0
        convert = s.convert_s / s.converted if s.converted else 0.0
        return CameraFigures(source.camera_id, source.state,
                             (s.analysed - before) / elapsed if elapsed > 0 else 0.0,
                             s.received, s.analysed, s.skipped, 1000 * (decode + convert),
                             1000 * inference / s.analysed if s.analysed else 0.0, source.frame_age(),
                             source.reconnects)


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


CAMERA_METRICS = (
    ("footfall_camera_streaming", "gauge", "1 while the camera's stream delivers frames"),
    ("footfall_camera_frames_received_total", "counter", "frames decoded from the camera"),
    ("footfall_camera_frames_analysed_total", "counter", "frames the pipeline analysed"),
    ("footfall_camera_frames_skipped_total", "counter", "frames due at the camera's fps that were never analysed"),
    ("footfall_camera_decode_seconds_total", "counter", "reader CPU time decoding and converting frames"),
    ("footfall_camera_inference_seconds_total", "counter", "pipeline time spent on the camera's frames"),
    ("footfall_camera_frame_age_seconds", "gauge", "seconds since the camera last delivered a frame"),
    ("footfall_camera_reconnects_total", "counter", "times the stream was lost and opened again"),
)


def render(meter: CameraMeter, stage_s: dict[str, float], extra: dict[str, float]) -> str:
    """The Prometheus text exposition: per camera, per pipeline stage, and the process."""
    lines: list[str] = []
    values: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name, _, _ in CAMERA_METRICS}
    for source in meter.sources:
        s, labels = source.stats, {"camera": source.camera_id}
        age = source.frame_age()
        with meter._lock:
            inference = meter.inference_s.get(source.camera_id, 0.0)
        for name, value in (("footfall_camera_streaming", float(source.state == STREAMING)),
                            ("footfall_camera_frames_received_total", s.received),
                            ("footfall_camera_frames_analysed_total", s.analysed),
                            ("footfall_camera_frames_skipped_total", s.skipped),
                            ("footfall_camera_decode_seconds_total", s.decode_s + s.convert_s),
                            ("footfall_camera_inference_seconds_total", inference),
                            ("footfall_camera_reconnects_total", source.reconnects)):
            values[name].append((labels, float(value)))
        if age is not None:
            values["footfall_camera_frame_age_seconds"].append((labels, age))
    for name, kind, help_text in CAMERA_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [_line(name, value, labels) for labels, value in values[name]]
    lines += ["# HELP footfall_stage_seconds_total pipeline time by stage", "# TYPE footfall_stage_seconds_total counter"]
    lines += [_line("footfall_stage_seconds_total", v, {"stage": k}) for k, v in sorted(stage_s.items())]
    lines += ["# TYPE process_cpu_seconds_total counter", _line("process_cpu_seconds_total", process_cpu_s()),
              "# TYPE process_resident_memory_bytes gauge", _line("process_resident_memory_bytes", rss_bytes())]
    for name, value in sorted(extra.items()):
        lines += [f"# TYPE {name} gauge", _line(name, value)]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """GET /metrics on `host:port`, answered from `text()` on the server's own thread."""

    def __init__(self, host: str, port: int, text: Callable[[], str]) -> None:
        produce = text

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                try:
                    body = produce().encode()
                except Exception:  # a scrape never stops the daemon
                    log.exception("metrics: the page could not be produced")
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        """Serve on a thread of its own."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()
