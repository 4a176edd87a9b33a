"""`footfall bench live`: the daemon on N live H.264 cameras over RTSP, in real time.

A rendered store clip (people walking through the door) is served by GStreamer's RTSP server
(`tooling/rtsp_camera.py`, another process: the cameras' encoding is not the box's work) as N
looped streams at the chosen resolution and frame rate. The real daemon reads them (live
sources, person detection on) against a local Mosquitto for `seconds`; a subscriber records
when each visit is published. Figures per camera: frames received, analysed and skipped, and
analysed frames/s; the process's CPU share in total and by stage (decoding in the readers, the
pipeline's stages, the rest); RSS; and the latency from a person leaving the view through the
door (the wall time that frame left the camera) to their visit being published.

`max_cameras` is the most cameras sustained at the target rate (every camera analysed at 90 %
of `fps` or more) with at least 30 % of the CPU free, trying 1, 2, 3 ... cameras. The baseline,
measured in the same run: the person detector alone on the same frames (the ORT bound).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from footfall.config.schema import Config
from footfall.edge.metrics import process_cpu_s, rss_bytes
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.sync import events
from footfall.sync.mqtt_client import LocalSubscriber
from footfall.tooling.local_broker import LocalBroker, mosquitto_binary
from footfall.tooling.rtsp_camera import RtspCameras, gstreamer_missing
from footfall.tooling.scenario import STORE_TZ, Appearance, Clip, SpriteBank, render_clip

STORE = "live-001"
RESOLUTIONS = {"1080p": "1920x1080", "720p": "1280x720", "360p": "640x360"}
MIN_FREE = 0.30          # CPU share that must stay free
RATE_SHARE = 0.9         # a camera keeps up when analysed at this share of its fps or more
WARM_UP_S = 5.0          # not measured: streams opening, first inferences allocating
CLIP_S = 12.0
WALKS = ((1.0, 0.35), (6.0, 0.6))  # (enter_at, lane) of the people in each loop of the clip


@dataclass(frozen=True)
class Streams:
    """The served clip and where each loop's people leave the view (seconds into the loop)."""

    cameras: RtspCameras
    leave_at: tuple[float, ...]
    loop_s: float


def render_store_clip(faces_dir: Path, analyzer: FaceAnalyzer, out: Path) -> tuple[Path, tuple[float, ...]]:
    """A 12 s door clip with two people walking in; the times (s) each has left the view."""
    bank = SpriteBank(faces_dir, analyzer)
    people = [i for i in bank.identities() if len(bank.photos(i)) >= 1][:len(WALKS)]
    appearances = tuple(Appearance(who, bank.photos(who)[0], enter_at=t, walk=3.0, lane=lane)
                        for who, (t, lane) in zip(people, WALKS))
    clip = Clip("door-1", datetime(2026, 11, 23, 10, tzinfo=ZoneInfo(STORE_TZ)),
                CLIP_S, appearances, fps=10.0)
    return render_clip(clip, out, bank), tuple(a.leave_at for a in appearances)


class VisitClock:
    """A subscriber that keeps the wall time each visit reached the broker, by camera."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._subscriber = LocalSubscriber(port, "live-visits", events.topic("footfall", STORE, events.VISITS),
                                           self._keep, name="the visit subscriber")

    def _keep(self, visit: dict[str, Any]) -> None:
        camera = str(visit.get("camera_id", ""))
        with self._lock:
            self.received.append((time.time(), camera))

    def since(self, t: float) -> list[tuple[float, str]]:
        with self._lock:
            return [r for r in self.received if r[0] >= t]

    def close(self) -> None:
        self._subscriber.close()


def latencies(visits: list[tuple[float, str]], starts: list[float], streams: Streams) -> list[float]:
    """Seconds from a person leaving the view (on any camera's stream) to each visit's publication."""
    out = []
    for received, _ in visits:
        left = [t0 + k * streams.loop_s + leave for t0 in starts
                for k in range(int((received - t0) // streams.loop_s) + 1) for leave in streams.leave_at]
        before = [t for t in left if t <= received]
        if before:
            out.append(received - max(before))
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_trial(config: Config, analyzer: FaceAnalyzer, streams: Streams, broker: LocalBroker, clock: VisitClock,
              n: int, fps: float, seconds: float, state: Path) -> dict[str, Any]:
    """The daemon on cameras cam1..camN for `seconds` (after a warm-up); the trial's figures."""
    from footfall.config.schema import CameraConfig
    from footfall.edge.daemon import Daemon

    cameras = [CameraConfig(id=f"cam{i + 1}", source=streams.cameras.url(f"cam{i + 1}"), fps=fps) for i in range(n)]
    run_config = config.model_copy(update={
        "store_id": STORE, "timezone": STORE_TZ, "cameras": cameras,
        "mqtt": config.mqtt.model_copy(update={"url": broker.url, "username": None, "password": None, "client_id": None}),
        "storage": config.storage.model_copy(update={"dir": state})})
    daemon = Daemon(run_config, analyzer=analyzer)
    thread = threading.Thread(target=daemon.run, name="live-daemon", daemon=True)
    plays_before = len(streams.cameras.plays)
    thread.start()
    try:
        time.sleep(WARM_UP_S)
        before = _sample(daemon)
        started = time.time()
        time.sleep(seconds)
        after = _sample(daemon)
    finally:
        daemon.stop()
        thread.join(60)
    starts = [p["t0"] for p in streams.cameras.plays[plays_before:]]
    return _figures(before, after, n, fps, latencies(clock.since(started), starts, streams))


def _sample(daemon: Any) -> dict[str, Any]:
    return {"t": time.monotonic(), "cpu": process_cpu_s(), "stages": dict(daemon.pipeline.stage_s),
            "cameras": {s.camera_id: (s.stats.received, s.stats.analysed, s.stats.skipped,
                                      s.stats.decode_s + s.stats.convert_s) for s in daemon.live_sources}}


def _figures(before: dict[str, Any], after: dict[str, Any], n: int, fps: float, lat: list[float]) -> dict[str, Any]:
    wall = after["t"] - before["t"]
    cores = os.cpu_count() or 1
    cpu = after["cpu"] - before["cpu"]
    per_camera = {}
    decode = 0.0
    for camera, (received, analysed, skipped, dec) in after["cameras"].items():
        r0, a0, s0, d0 = before["cameras"][camera]
        per_camera[camera] = {"received": received - r0, "analysed": analysed - a0, "skipped": skipped - s0,
                              "analysed_fps": round((analysed - a0) / wall, 2)}
        decode += dec - d0
    stages = {k: v - before["stages"].get(k, 0.0) for k, v in after["stages"].items()}
    share = {"decode": decode / (wall * cores), **{k: v / (wall * cores) for k, v in stages.items()}}
    share["other"] = max(0.0, cpu / (wall * cores) - sum(share.values()))
    fps_min = min(c["analysed_fps"] for c in per_camera.values())
    cpu_share = cpu / (wall * cores)
    return {"cameras": n, "seconds": round(wall, 1), "per_camera": per_camera, "analysed_fps_min": fps_min,
            "cpu_share": round(cpu_share, 3), "cpu_free_share": round(1 - cpu_share, 3),
            "cpu_share_by_stage": {k: round(v, 3) for k, v in share.items()},
            "rss_mb": round(rss_bytes() / 2**20, 1),
            "latency_ms_p50": _ms(percentile(lat, 50)), "latency_ms_p95": _ms(percentile(lat, 95)),
            "visits": len(lat), "sustained": fps_min >= RATE_SHARE * fps and 1 - cpu_share >= MIN_FREE}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def ort_bound(config: Config, clip: Path, size: str, frames: int = 30) -> dict[str, float]:
    """The person detector alone on whole frames of the clip at the stream's size: ms a frame, frames/s."""
    from footfall.recognition.persons import person_detector_from_config

    detector = person_detector_from_config(config)
    width, height = (int(v) for v in size.split("x"))
    cap = cv2.VideoCapture(str(clip))
    images: list[np.ndarray] = []
    while len(images) < frames:
        ok, image = cap.read()
        if not ok:
            break
        images.append(cv2.resize(image, (width, height)))
    cap.release()
    detector.detect(images[0])  # warm-up
    started_cpu, started = process_cpu_s(), time.perf_counter()
    for image in images:
        detector.detect(image)
    wall = (time.perf_counter() - started) / len(images)
    cpu = (process_cpu_s() - started_cpu) / len(images)
    return {"ms_per_frame": round(1000 * wall, 1), "cpu_ms_per_frame": round(1000 * cpu, 1),
            "fps": round(1 / wall, 1)}


def bench_live(config: Config, faces_dir: Path, *, cameras: int, resolution: str = "1080p", stream_fps: int = 25,
               fps: float = 10.0, seconds: float = 30.0, detect_resolution: str | None = None,
               max_tried: int | None = None, progress: bool = True) -> dict[str, Any]:
    """The figures at `cameras` cameras, and `max_cameras` found by trying 1, 2, 3 ... (up to `max_tried`)."""
    missing = gstreamer_missing()
    binary = mosquitto_binary()
    if missing or binary is None:
        raise FileNotFoundError(f"bench live needs GStreamer's RTSP server and mosquitto: {missing or 'no mosquitto'}")
    size = RESOLUTIONS.get(resolution, resolution)
    served = RESOLUTIONS.get(detect_resolution, detect_resolution) if detect_resolution else size
    top = max(cameras, max_tried or cameras + 2)
    analyzer = FaceAnalyzer.from_config(config)
    say = (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clip, leave_at = render_store_clip(faces_dir, analyzer, tmp / "door.avi")
        say(f"live: encoding {top} camera(s) at {served}, {stream_fps} frames/s")
        rtsp = RtspCameras({f"cam{i + 1}": clip for i in range(top)}, size=served, fps=stream_fps,
                           log=tmp / "rtsp.log").start()
        streams = Streams(rtsp, leave_at, CLIP_S)
        broker = LocalBroker(tmp, binary)
        clock = VisitClock(broker.port)
        trials: dict[int, dict[str, Any]] = {}
        try:
            for n in sorted({*range(1, top + 1)}):
                say(f"live: {n} camera(s) for {seconds:.0f} s")
                trials[n] = run_trial(config, analyzer, streams, broker, clock, n, fps, seconds, tmp / f"state{n}")
                say(f"live: {n} camera(s): analysed_fps_min {trials[n]['analysed_fps_min']}, "
                    f"CPU free {trials[n]['cpu_free_share']:.0%}")
                if not trials[n]["sustained"] and n >= cameras:
                    break
            helper_cpu = process_cpu_s(rtsp.pid) if rtsp.pid else 0.0
            bound = ort_bound(config, clip, served)
        finally:
            clock.close()
            broker.stop()
            rtsp.stop()
    sustained = [n for n in sorted(trials) if trials[n]["sustained"]]
    max_cameras = 0
    for n in sorted(trials):
        if not trials[n]["sustained"]:
            break
        max_cameras = n
    chosen = trials.get(cameras) or trials[max(trials)]
    return {**chosen, "resolution": size, "analysed_resolution": served, "stream_fps": stream_fps, "fps": fps,
            "max_cameras": max_cameras, "sustained_at": sustained,
            "trials": {n: {k: t[k] for k in ("analysed_fps_min", "cpu_free_share", "latency_ms_p95")}
                       for n, t in trials.items()},
            "ort_bound": bound,
            "analysed_fps_vs_ort_bound": round(sum(c["analysed_fps"] for c in chosen["per_camera"].values())
                                               / bound["fps"], 3),
            "cameras_cpu_s": round(helper_cpu, 1)}


def format_table(r: dict[str, Any]) -> str:
    """The figures as text."""
    rows = [("cameras x stream", f"{r['cameras']} x {r['resolution']} at {r['stream_fps']} frames/s, analysed "
                                 f"{r['analysed_resolution']} at {r['fps']} frames/s"),
            ("analysed frames/s, slowest camera", r["analysed_fps_min"]),
            ("CPU used / free", f"{r['cpu_share']:.0%} / {r['cpu_free_share']:.0%}"),
            ("CPU by stage (share of the box)", ", ".join(f"{k} {v:.1%}" for k, v in r["cpu_share_by_stage"].items())),
            ("RSS MB", r["rss_mb"]),
            ("leaving the view -> visit published p50 / p95 ms", f"{r['latency_ms_p50']} / {r['latency_ms_p95']} "
                                                                  f"({r['visits']} visits)"),
            ("max_cameras (>= 90 % of fps, >= 30 % CPU free)", r["max_cameras"]),
            ("ORT bound: detector alone on whole frames", f"{r['ort_bound']['ms_per_frame']} ms, "
                                                          f"{r['ort_bound']['fps']} frames/s"),
            ("analysed frames/s (all cameras) / ORT bound", r["analysed_fps_vs_ort_bound"])]
    rows += [(f"  {camera}", f"received {c['received']}, analysed {c['analysed']} ({c['analysed_fps']}/s), "
                             f"skipped {c['skipped']}") for camera, c in r["per_camera"].items()]
    rows += [(f"  trial {n} camera(s)", f"{t['analysed_fps_min']}/s, CPU free {t['cpu_free_share']:.0%}, "
                                        f"p95 {t['latency_ms_p95']} ms") for n, t in r["trials"].items()]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)

