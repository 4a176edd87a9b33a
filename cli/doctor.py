"""`footfall doctor`: one line per check, non-zero exit if any fails."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from footfall.config.schema import Config
from footfall.edge.sources import source_kind
from footfall.edge.storage_lock import current_holder, describe
from footfall.models.fetch import verify_file
from footfall.models.manifest import ModelError, entry_for, locate
from footfall.sync.mqtt_client import make_client, parse_broker_url

MIN_FREE_BYTES = 512 * 1024 * 1024


def _models(config: Config) -> str:
    lines = []
    for name, role in ((config.models.detector, "detector"), (config.models.recognizer, "recognizer")):
        entry = entry_for(name, role)
        verdict = verify_file(entry, locate(name, config.models.dir))
        if not verdict.ok:
            raise ModelError(f"{verdict.path}: {verdict.state}")
        lines.append(f"{name} ({entry.licence_note})")
    return "; ".join(lines)


def _load(config: Config) -> str:
    from footfall.recognition.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer.from_config(config)
    return f"sessions open, match threshold {analyzer.pack.match_threshold:g}"


def _storage(config: Config) -> str:
    d = Path(config.storage.dir)
    probe = d if d.exists() else next((p for p in d.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        raise PermissionError(f"{d} is not writable by this user")
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise OSError(f"only {free // 2**20} MiB free under {probe}")
    holder = current_holder(d)
    owner = "not in use" if holder is None else f"in use by {describe(holder)}"
    return f"{d} writable, {free // 2**30} GiB free, {owner}"


# What moving a damaged state file aside costs, by file.
_STATE_FILES = {
    "outbox.db": "unsent events in it would be lost",
    "gallery.db": "enrolled members and staff must be enrolled again (members import)",
    "windows.db": "open visit windows are lost: people seen in the last hours count as new visits",
    "counts.db": "the counts kept on this box are lost (those already published are not)",
    "appointments.db": "appointments must be imported again",
}


def _quick_check(path: Path) -> str | None:
    """None if `path` passes SQLite's quick_check (opened read-only), else what is wrong."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    return None if rows == ["ok"] else "; ".join(rows[:3])


def _state_files(config: Config) -> str:
    d = Path(config.storage.dir)
    files = sorted(d.glob("*.db")) if d.is_dir() else []
    if not files:
        return f"none yet in {d} (created at the first start)"
    bad = []
    for path in files:
        problem = _quick_check(path)
        if problem is not None:
            cost = _STATE_FILES.get(path.name, "what it holds is lost")
            bad.append(f"{path} is damaged ({problem}). To recover: stop the service (systemctl stop footfall), "
                       f"move the file aside (mv {path} {path}.damaged), start the service again, which "
                       f"creates it empty; {cost}")
    if bad:
        raise OSError(" | ".join(bad))
    return f"{len(files)} file(s) in {d} pass quick_check: {', '.join(p.name for p in files)}"


def _cameras(config: Config) -> str:
    if not config.cameras:
        raise ValueError("no [[cameras]] configured")
    seen = []
    for i, camera in enumerate(config.cameras):
        seen.append(f"{camera.id}: {_camera(i, camera.source)}")
    return "; ".join(seen)


def _camera(index: int, source: str) -> str:
    kind = source_kind(source)
    if kind == "file":
        cap = cv2.VideoCapture(source)
        try:
            ok, _ = cap.read()
        finally:
            cap.release()
        if not ok:
            raise OSError(f"cameras[{index}].source: cannot read a frame from {source}")
        return "video file readable"
    if kind == "usb":
        device = source if source.startswith("/dev/") else f"/dev/video{source}"
        if not os.path.exists(device):
            raise OSError(f"cameras[{index}].source: {device} does not exist")
        if not os.access(device, os.R_OK):
            raise PermissionError(f"cameras[{index}].source: {device} is not readable by this user")
        return f"{device} present"
    url = urlsplit(source)
    port = url.port or {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(url.scheme, 554)
    try:
        with socket.create_connection((url.hostname, port), timeout=3):
            return f"{url.hostname}:{port} answers"
    except OSError as exc:
        raise OSError(f"cameras[{index}].source: {url.hostname}:{port} unreachable ({exc})") from None


def _broker(config: Config) -> str:
    host, port, _ = parse_broker_url(config.mqtt.url)
    client = make_client(config.mqtt, f"footfall-doctor-{os.getpid()}")
    answer: dict[str, str] = {}
    client.on_connect = lambda c, u, f, reason, p: answer.update(reason=str(reason))
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise OSError(f"mqtt.url: {host}:{port} unreachable ({exc})") from None
    deadline = time.monotonic() + 5
    while "reason" not in answer and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    reason = answer.get("reason")
    if reason is None:
        raise TimeoutError(f"mqtt.url: {host}:{port} did not answer the MQTT handshake within 5 s")
    if reason != "Success":
        raise PermissionError(f"mqtt: the broker refused the connection: {reason}")
    return f"{config.mqtt.url} accepts this store's credentials"


def _live_figures(config: Config) -> str:
    """Each live camera's figures from the daemon's retained status: what the box keeps up with."""
    import json

    from footfall.sync import events

    host, port, _ = parse_broker_url(config.mqtt.url)
    client = make_client(config.mqtt, f"footfall-doctor-live-{os.getpid()}")
    got: dict[str, dict] = {}
    topic = events.topic(config.mqtt.topic_prefix, config.store_id, events.STATUS)
    client.on_connect = lambda c, u, f, reason, p: c.subscribe(topic, qos=0)
    client.on_message = lambda c, u, m: got.update(status=json.loads(m.payload or b"{}"))
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return "no figures (the broker is unreachable: see the broker line)"
    deadline = time.monotonic() + 3
    while "status" not in got and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return describe_live(got.get("status", {}), {c.id: c.fps for c in config.cameras})


def describe_live(status: dict, fps: dict[str, float]) -> str:
    """One line from a status payload: per camera analysed frames/s of its fps, skipped, decode and
    inference ms, last-frame age; what to do when a camera falls behind."""
    stats = status.get("camera_stats") or {}
    if status.get("state") != "online" or not stats:
        return "no figures yet (the daemon is not running, or has no live camera)"
    parts = []
    for camera, s in sorted(stats.items()):
        target = fps.get(camera)
        behind = target is not None and s.get("analysed_fps", 0) < 0.9 * target
        parts.append(f"{camera}: {s.get('analysed_fps')}/{target} frames/s analysed, {s.get('skipped')} skipped, "
                     f"decode {s.get('decode_ms')} ms, inference {s.get('inference_ms')} ms, "
                     f"last frame {s.get('frame_age_s')} s ago" + (" (behind: see docs/daemon.md, capacity)" if behind else ""))
    return "; ".join(parts)


CHECKS: list[tuple[str, Callable[[Config], str]]] = [
    ("models present and verified", _models),
    ("models load", _load),
    ("cameras", _cameras),
    ("broker", _broker),
    ("live cameras", _live_figures),
    ("storage and disk", _storage),
    ("state files", _state_files),
]


def run_checks(config: Config) -> int:
    """Run every check, print one line each, return 0 only if all pass."""
    mode = ", count_only: no face template is computed or kept" if config.privacy.mode == "count_only" else ""
    print(f"ok    config valid (store {config.store_id}, {len(config.cameras)} camera(s){mode})")
    failed = 0
    for name, check in CHECKS:
        try:
            print(f"ok    {name}: {check(config)}")
        except Exception as exc:  # a failing check is reported, never fatal to the others
            failed += 1
            print(f"FAIL  {name}: {exc}")
    return 1 if failed else 0
