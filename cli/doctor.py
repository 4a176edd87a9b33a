"""`footfall doctor`: one line per check, non-zero exit if any fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from footfall.config.schema import Config, MqttConfig
from footfall.edge.sources import source_kind
from footfall.models.fetch import verify_file
from footfall.models.manifest import ModelError, entry_for, locate
from footfall.storage.lock import current_holder, describe
from footfall.sync.mqtt import SESSION_EXPIRY_S as BOX_SESSION_S
from footfall.sync.mqtt_client import make_client, parse_broker_url

MIN_FREE_BYTES = 512 * 1024 * 1024


def _model_roles(config: Config) -> list[tuple[str, str]]:
    """The models this config runs: the person detector always, the face models unless count_only."""
    roles = [(config.models.person_detector, "person_detector")]
    if config.privacy.mode != "count_only":
        roles += [(config.models.detector, "detector"), (config.models.recognizer, "recognizer")]
    return roles


def _models(config: Config) -> str:
    lines = []
    for name, role in _model_roles(config):
        entry = entry_for(name, role)
        verdict = verify_file(entry, locate(name, config.models.dir))
        if not verdict.ok:
            raise ModelError(f"{verdict.path}: {verdict.state}")
        lines.append(f"{name} ({entry.licence_note})")
    return "; ".join(lines)


def _load(config: Config) -> str:
    from footfall.recognition.persons import person_detector_from_config

    person_detector_from_config(config)
    if config.privacy.mode == "count_only":
        return "person detector open (count_only: no face model is loaded)"
    from footfall.recognition.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer.from_config(config)
    return f"person detector and face sessions open, match threshold {analyzer.pack.match_threshold:g}"


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


STORE_KEYS = ("mqtt.username", "mqtt.password")


class Refused(PermissionError):
    """The broker refused a login: the message names the user and the key holding its password."""


def password_source(mq: MqttConfig, key: str) -> str:
    """Where the password `mq` logs in with comes from (`key` when it is `mq.password`), never its value."""
    if mq.password is not None:
        return key
    if mq.password_file is not None:
        return f"mqtt.password_file ({mq.password_file})"
    if "FOOTFALL_MQTT_PASSWORD" in os.environ:
        return "$FOOTFALL_MQTT_PASSWORD"
    if os.environ.get("CREDENTIALS_DIRECTORY") and mq.secret() is not None:
        return "the systemd credential mqtt-password"
    return f"no password is set ({key})"


@contextlib.contextmanager
def _logged_in(mq: MqttConfig, client_id: str, keep_s: int, keys: tuple[str, str]) -> Iterator[paho.Client]:
    """A connection as `mq`'s user for a check; `keys` are the config keys of its user name and
    password, named when the broker refuses the login.

    Where the broker makes each user name its client id (use_username_as_clientid), this login
    takes the running daemon's (or console's) place for a moment. So it never starts clean: the
    session is resumed and kept `keep_s` as its owner keeps it, nothing is acknowledged, and
    what the broker had queued goes to the owner when it reconnects. Under MQTT 5 a session of
    its own is not kept (3.1.1 cannot say so: one, empty, stays per client id).
    """
    host, port, _ = parse_broker_url(mq.url)
    v5 = mq.protocol == "5"
    client = make_client(mq, client_id, persistent=True, manual_ack=True)
    answer: dict[str, object] = {}
    client.on_connect = lambda c, u, flags, reason, p: answer.update(reason=reason, resumed=flags.session_present)
    try:
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = keep_s
            client.connect(host, port, keepalive=10, clean_start=False, properties=properties)
        else:
            client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise OSError(f"mqtt.url: {host}:{port} unreachable ({exc})") from None
    try:
        deadline = time.monotonic() + 5
        while "reason" not in answer and time.monotonic() < deadline:
            client.loop(0.1)
        reason = answer.get("reason")
        if reason is None:
            raise TimeoutError(f"mqtt.url: {host}:{port} did not answer the MQTT handshake within 5 s")
        if getattr(reason, "is_failure", True):
            user = f"user {mq.username!r}" if mq.username else "a login without user name"
            raise Refused(f"the broker refused {user} ({reason}): check {keys[0]} and {password_source(mq, keys[1])}")
        yield client
    finally:
        if v5 and answer.get("resumed") is False:
            goodbye = Properties(PacketTypes.DISCONNECT)
            goodbye.SessionExpiryInterval = 0
            client.disconnect(properties=goodbye)
        else:
            client.disconnect()


def _broker(config: Config, heard: dict[str, dict]) -> str:
    """The store's login; while logged in, the daemon's retained status is read into `heard`
    (for the live cameras' line: one login, so a broker that binds client ids to users takes the
    daemon's place once)."""
    from footfall.sync import events

    topic = events.topic(config.mqtt.topic_prefix, config.store_id, events.STATUS)
    with _logged_in(config.mqtt, f"footfall-doctor-{config.store_id}", BOX_SESSION_S, STORE_KEYS) as client:
        client.on_message = lambda c, u, m: heard.update(status=_status_fields(m.payload))
        client.subscribe(topic, qos=0)
        deadline = time.monotonic() + 3
        while "status" not in heard and time.monotonic() < deadline:
            client.loop(0.1)
        client.unsubscribe(topic)  # the session may be the daemon's: leave it as it was
        heard.setdefault("status", {})  # logged in: no retained status is no figures, not no login
    return f"{config.mqtt.url} accepts this store's credentials"


def _console_broker(config: Config) -> str:
    """The guide console's login (console.mqtt_username and its password, else the store's)."""
    from footfall.console.server import SESSION_EXPIRY_S as CONSOLE_SESSION_S

    cc, mq = config.console, config.console_mqtt()
    keys = ("console.mqtt_username" if cc.mqtt_username is not None else "mqtt.username",
            "console.mqtt_password" if (cc.mqtt_username, cc.mqtt_password) != (None, None) else "mqtt.password")
    with _logged_in(mq, f"footfall-doctor-console-{config.store_id}", CONSOLE_SESSION_S, keys):
        pass
    own = "its own user" if config.console.mqtt_username is not None else "the store's user (no console.mqtt_username)"
    return f"{mq.url} accepts the guide console's credentials: {own} {mq.username or '(none)'}"


def _status_fields(payload: bytes | bytearray) -> dict:
    """The retained status's JSON object, read as every reader of the contract reads it; {} for a
    payload that is not one (the live cameras' line then says there are no figures)."""
    from footfall.sync import events

    try:
        return events.decode_object(bytes(payload))
    except events.PayloadError:
        return {}


def _live_figures(config: Config, heard: dict[str, dict]) -> str:
    """Each live camera's figures from the daemon's retained status (read by the broker check):
    what the box keeps up with."""
    if "status" not in heard:
        return "no figures (the broker is unreachable or refuses the login: see the broker line)"
    return describe_live(heard["status"], {c.id: c.fps for c in config.cameras})


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


def run_checks(config: Config) -> int:
    """Run every check, print one line each, return 0 only if all pass."""
    mode = ", count_only: no face template is computed or kept" if config.privacy.mode == "count_only" else ""
    print(f"ok    config valid (store {config.store_id}, {len(config.cameras)} camera(s){mode})")
    heard: dict[str, dict] = {}  # what the broker check read for the live cameras' line
    checks: list[tuple[str, Callable[[Config], str]]] = [
        ("models present and verified", _models),
        ("models load", _load),
        ("cameras", _cameras),
        ("broker", lambda c: _broker(c, heard)),
        ("console broker login", _console_broker),
        ("live cameras", lambda c: _live_figures(c, heard)),
        ("storage and disk", _storage),
        ("state files", _state_files),
    ]
    failed = 0
    for name, check in checks:
        try:
            print(f"ok    {name}: {check(config)}")
        except Exception as exc:  # a failing check is reported, never fatal to the others
            failed += 1
            print(f"FAIL  {name}: {exc}")
    return 1 if failed else 0
