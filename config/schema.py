"""The configuration file, modelled once.

pydantic models with `extra="forbid"`: a typo is an error naming the key, each
field carries its default and description in one place, and the loader turns
pydantic's error locations into key paths such as `cameras[1].fps`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def check_timezone(name: str) -> str:
    """An IANA time zone name, or ValueError naming it."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


TimeZone = Annotated[str, AfterValidator(check_timezone)]


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message names the key."""


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """`url` with any user:password@ part replaced by `***@`, for messages and logs."""
    return _USERINFO.sub("***@", str(url))


def parse_duration(value: Any) -> timedelta:
    """Parse "3h", "90m", "45s", "1h30m" or a number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a duration such as \"3h\", \"90m\" or \"45s\"")
    try:
        if isinstance(value, (int, float)):
            return timedelta(seconds=value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m and any(m.groups()):
                h, mi, s = (float(g) if g else 0.0 for g in m.groups())
                return timedelta(hours=h, minutes=mi, seconds=s)
    except (OverflowError, ValueError):
        raise ValueError(f"duration out of range: {value!r}") from None
    raise ValueError(f"must be a duration such as \"3h\", \"90m\" or \"45s\", got {value!r}")


_BROKER_URL = re.compile(r"^mqtts?://(?:\[[0-9A-Fa-f:.]+\]|[^/:\s\[\]]+)(:\d{1,5})?/?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsConfig(_Section):
    dir: Path | None = Field(None, description="Directory of model files; default: the pack shipped in the package. $FOOTFALL_MODELS_DIR overrides it.")
    detector: str = Field("face_detection_yunet_2023mar.onnx", description="Detector file name, as in the model manifest.")
    recognizer: str = Field("edgeface_xs.onnx", description="Recognizer file name, as in the model manifest.")
    person_detector: str = Field("yolox_nano.onnx", description="Person detector file name, as in the model manifest: people are tracked by their bodies and faces looked for on them.")


class QualityConfig(_Section):
    min_face_px: int = Field(40, ge=8, description="Smallest accepted face: the shorter side of the detected box, in pixels.")
    min_score: float = Field(0.7, ge=0, le=1, description="Smallest accepted detector score.")
    min_sharpness: float = Field(25.0, ge=0, description="Smallest accepted variance of the Laplacian of the aligned face (blur).")
    max_yaw: float = Field(0.5, ge=0, le=1, description="Largest accepted nose offset from the eye midline, as a fraction of the eye distance (0 = frontal).")
    max_roll_deg: float = Field(30.0, ge=0, le=90, description="Largest accepted tilt of the eye line, in degrees.")


class RecognitionConfig(_Section):
    det_size: int = Field(640, gt=0, multiple_of=32, description="Detector input side in pixels (fixed-input models ignore it).")
    det_score: float | None = Field(None, ge=0, le=1, description="Detector score threshold; default: the model's manifest value.")
    match_threshold: float | None = Field(None, ge=-1, le=1, description="Cosine similarity for 'same person'; default: the recognizer's measured manifest value.")
    batch_size: int = Field(8, gt=0, description="Faces embedded per network run.")
    threads: int = Field(1, ge=0, description="onnxruntime intra-op threads of each session; 0 = one per core. One is fastest on a 2-core box: the sessions run one after another and a second thread costs more to hand work to than it saves (docs/recognition.md).")
    motion_share: float = Field(0.002, ge=0, le=1, description="Share of a frame that must move before faces are looked for (0 = look in every frame).")
    quality: QualityConfig = QualityConfig()


def _positive_duration(v: timedelta) -> timedelta:
    if v <= timedelta(0):
        raise ValueError("must be > 0")
    return v


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive_duration)]


class DedupConfig(_Section):
    window: Duration = Field(timedelta(hours=3), description="An entry within this time of the same person's previous entry is a re-entry.")
    threshold: float | None = Field(None, ge=-1, le=1, description="Cosine at which a passage re-enters an open window; default: the recognizer's calibrated manifest value.")
    margin: float | None = Field(None, ge=0, le=2, description="Required lead of the best open window over the second-best; default: the recognizer's manifest value.")
    same_entry: Duration = Field(timedelta(seconds=60), description="The same person seen again within this time (a second camera, a lost track) is the same entry.")


class MembersConfig(_Section):
    max_vectors: int = Field(20, ge=1, le=1000, description="Most embeddings (photos or vectors) kept per enrolled person; an upsert with more is rejected.")
    threshold: float | None = Field(None, ge=-1, le=1, description="Cosine at which a passage is an enrolled member or staff; default: the recognizer's calibrated manifest value.")
    margin: float | None = Field(None, ge=0, le=2, description="Required lead of the best person over the second-best; default: the recognizer's manifest value.")


class TrackingConfig(_Section):
    max_gap: Duration = Field(timedelta(seconds=1.5), description="A person track ends when the person is unseen this long.")
    min_iou: float = Field(0.15, gt=0, lt=1, description="Smallest overlap of a person box with a track's predicted box to continue it.")
    engine: Literal["bytetrack", "ocsort", "sort"] = Field("bytetrack", description="The multi-object tracker that follows people (the `trackers` package); chosen by measurement, see docs/pipeline.md.")
    person_input: int = Field(416, ge=128, le=1280, multiple_of=32, description="Long side, pixels, of the person detector's input (the frame or the moving region is scaled to it); larger finds smaller people and costs more, see docs/pipeline.md.")
    person_score: float | None = Field(None, ge=0, le=1, description="Person detector score threshold; default: the model's calibrated manifest value.")
    shots: int = Field(3, ge=1, le=10, description="Best faces kept per person track and embedded when it ends.")
    min_hits: int = Field(3, ge=1, le=1000, description="Frames a person must be seen in to be a passage (fewer: a flicker).")
    min_travel: float = Field(0.3, ge=0, le=10, description="Without an entry line, a person track is a passage only when its box moved at least this many box heights (someone seated or standing still is not an entrant).")
    door_join: Duration = Field(timedelta(seconds=3), description="Passages on cameras of one door (cameras[].door) this close in time are one person seen twice, joined unless their faces tell them apart.")


def from_credentials(path: Path) -> Path:
    """`path`, or the copy a systemd unit handed over as the credential of the same file name
    (`LoadCredential=mqtt-password:/etc/footfall/mqtt-password`): the service's dynamic user reads
    that copy where the root-only original is out of its reach (docs/deploy.md)."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / path.name).is_file():
        return Path(directory) / path.name
    return path


# A file the config names that a unit may hand over as a credential (passwords, TLS files).
CredentialPath = Annotated[Path, AfterValidator(from_credentials)]


class MqttConfig(_Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL: mqtt://host[:port] or mqtts://host[:port].")
    username: str | None = None
    password: str | None = Field(None, repr=False, description="Broker password. Better kept out of this file: see password_file.")
    password_file: CredentialPath | None = Field(None, description="File holding the broker password (first line); under a systemd unit, the credential of the same file name if the unit loads one. Without password or password_file: $FOOTFALL_MQTT_PASSWORD, then the systemd credential `mqtt-password` ($CREDENTIALS_DIRECTORY).")
    ca_file: CredentialPath | None = None
    cert_file: CredentialPath | None = None
    key_file: CredentialPath | None = None
    client_id: str | None = Field(None, description="Stable client id; default: footfall-<store_id>.")
    topic_prefix: str = "footfall"
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    max_attempts: int = Field(5, ge=1, le=1000, description="An outbox row the broker refused, or that was in flight alone when the connection dropped, this many times is dead-lettered (kept, counted in status, never sent again).")

    def secret(self) -> str | None:
        """The broker password, from wherever it is kept; a ConfigError names an unreadable file."""
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            return _read_secret(self.password_file, "mqtt.password_file")
        if "FOOTFALL_MQTT_PASSWORD" in os.environ:
            return os.environ["FOOTFALL_MQTT_PASSWORD"]
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials and (Path(credentials) / "mqtt-password").is_file():
            return _read_secret(Path(credentials) / "mqtt-password", "systemd credential mqtt-password")
        return None

    @field_validator("url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        if _USERINFO.search(v):
            raise ValueError(f"must not carry credentials (put them in mqtt.username and mqtt.password), "
                             f"got {redact_url(v)!r}")
        m = _BROKER_URL.match(v)
        if not m or (m.group(1) and not 0 < int(m.group(1)[1:]) < 65536):
            raise ValueError(f"must look like mqtt://host[:port] or mqtts://host[:port], got {redact_url(v)!r}")
        return v


def _read_secret(path: Path, key: str) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return lines[0] if lines else ""


class DownlinkConfig(_Section):
    max_payload: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest downlink message, bytes; the broker is told (MQTT 5 Maximum Packet Size) and larger ones are refused.")
    max_images: int = Field(8, ge=1, le=100, description="Most images in one members/upsert.")
    max_image_pixels: int = Field(16_000_000, ge=10_000, description="Most pixels of one image (width x height from its header, checked before decoding).")
    max_total_pixels: int = Field(32_000_000, ge=10_000, description="Most pixels of all the images of one members/upsert together (from their headers, before decoding).")
    # At most what the events carrying these fields hold (sync/events.py MAX_ID, MAX_TEXT): head office
    # and the guide console read them with those bounds.
    max_id_length: int = Field(128, ge=1, le=200, description="Longest member_id or appointment_id, characters (at most 200).")
    max_text_length: int = Field(256, ge=1, le=256, description="Longest name, tier, channel or advisor, characters (at most 256).")
    max_profile_bytes: int = Field(16 * 1024, ge=2, le=1024 * 1024, description="Largest CRM profile object (JSON bytes) held per member and sent in arrival alerts.")
    inbox: int = Field(1000, ge=1, le=1_000_000, description="Downlink messages waiting for the decision loop (also the MQTT 5 Receive Maximum); while full, nothing more is read from the broker, and a QoS 0 message that still arrives is dropped (counted, reported on errors).")
    error_reports_per_minute: int = Field(60, ge=1, le=60_000, description="Most `errors` events per minute; the rest are counted and the next report carries `suppressed`.")
    counts_max_buckets: int = Field(400, ge=1, le=100_000, description="Most buckets in one counts/get answer.")
    counts_requests_per_minute: int = Field(30, ge=1, le=60_000, description="Most counts/get requests answered per minute; the rest are refused on errors.")
    tombstones: int = Field(100_000, ge=1, le=10_000_000, description="Erase tombstones kept (oldest pruned first): a members/upsert older than a confirmed delete is refused.")


class StorageConfig(_Section):
    dir: Path = Field(Path("/var/lib/footfall"), description="State directory (SQLite files, mode 0600).")


class AlertsConfig(_Section):
    ttl: Duration = Field(timedelta(minutes=2), description="Alerts still unsent this long (wall clock) after they entered the outbox are dropped.")


class AppointmentsConfig(_Section):
    no_show_grace: Duration = Field(timedelta(minutes=30), description="A member with an appointment who has not arrived this long after it is a no-show.")


class PrivacyConfig(_Section):
    mode: Literal["recognise", "count_only"] = Field("recognise", description="recognise: members, staff and re-entries by face embeddings. count_only: entries are counted from faces detected and tracked; no embedding is ever computed or stored, so no member is recognised, staff are counted too and every entry is a visit (the non-biometric alternative).")
    anonymous_store: Literal["disk", "memory"] = Field("disk", description="Where anonymous visitors' open windows live.")


_LISTEN = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def check_host_names(hosts: list[str], example: str) -> list[str]:
    """allowed_hosts of a page server: bare host names (no port or scheme), lower-cased; ValueError
    giving `example` for any other."""
    for host in hosts:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
            raise ValueError(f"a host name without port or scheme, e.g. {example}, got {host!r}")
    return [host.lower() for host in hosts]


def parse_opening_hours(value: Any) -> tuple[time, time] | None:
    """"10:00-22:00" -> (10:00, 22:00); "" -> None (not known). A closing time before the opening
    one runs past midnight; equal times mean always open."""
    if value is None or isinstance(value, tuple):
        return value
    if not isinstance(value, str):
        raise ValueError('must be opening hours such as "10:00-22:00", or ""')
    if not value.strip():
        return None
    m = _HOURS.match(value)
    if m is None:
        raise ValueError(f'must be opening hours such as "10:00-22:00", or "", got {value!r}')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    try:
        return time(h1, m1), time(h2, m2)
    except ValueError:
        raise ValueError(f"not a clock time (00:00 to 23:59) in {value!r}") from None


OpeningHours = Annotated[tuple[time, time] | None, BeforeValidator(parse_opening_hours)]


class ConsoleConfig(_Section):
    language: Literal["zh", "en"] = Field("zh", description="Language of the guide console's labels.")
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT the guide console listens on.")
    password_hash: str | None = Field(None, description="Salted hash of the shared console password (footfall console --hash-password).")
    guides: dict[str, str] = Field(default_factory=dict, description="Per-guide login: guide name -> hash of that guide's token (footfall console --hash-password). A guide listed here logs in only with that token, never with the shared password.")
    mqtt_username: str | None = Field(None, description="The console's own broker user; default: mqtt.username.")
    mqtt_password: str | None = Field(None, repr=False, description="Password of console.mqtt_username; default: mqtt.password. Better kept out of this file: see mqtt_password_file.")
    mqtt_password_file: CredentialPath | None = Field(None, description="File holding the password of console.mqtt_username (first line); under a systemd unit, the credential of the same file name if the unit loads one.")
    mqtt_client_id: str | None = Field(None, description="The console's client id; default: footfall-console-<store_id>.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names (besides IP addresses and localhost) the console answers to, e.g. the name a TLS proxy serves it under; any other Host header is refused (DNS rebinding).")
    max_connections: int = Field(64, ge=2, le=4096, description="Open HTTP connections at most; when full, the oldest connection still sending its request is closed for a new one.")
    request_timeout: Duration = Field(timedelta(seconds=10), description="A request must arrive whole within this time; also the longest a page's stream may block on a write.")
    login_concurrency: int = Field(2, ge=1, le=64, description="Password hashes computed at once (16 MiB each); a login beyond it is answered 503.")
    login_failures_free: int = Field(5, ge=1, le=1000, description="Failed logins from one client address before it must wait.")
    login_backoff: Duration = Field(timedelta(seconds=2), description="The first wait after login_failures_free failures; it doubles with every further failure.")
    login_backoff_max: Duration = Field(timedelta(minutes=15), description="The longest wait imposed on one client address.")
    login_per_minute: int = Field(60, ge=1, le=100_000, description="Login attempts per minute from all clients together; beyond it a login is answered 429.")
    login_clients_tracked: int = Field(4096, ge=16, le=1_000_000, description="Client addresses whose failed logins are remembered (the least recently seen is forgotten first).")
    max_message_bytes: int = Field(65536, ge=1024, le=4 * 1024 * 1024, description="Largest broker message the console accepts; larger ones are dropped.")
    max_acks: int = Field(1000, ge=10, le=1_000_000, description="Acknowledgements kept in memory (only today's, store time); the oldest go first.")
    stream_queue_bytes: int = Field(1024 * 1024, ge=4096, le=256 * 1024 * 1024, description="Bytes queued for one page's stream; a page that falls this far behind is disconnected (the browser reconnects and gets the replay).")
    opening_hours: OpeningHours = Field((time(10), time(22)), description='The store\'s opening hours, store time: "HH:MM-HH:MM" (closing before opening runs past midnight; equal times: always open; "": not known, never flagged). Within them, a box online that counts nobody for quiet_after is flagged on the console.')
    quiet_after: Duration = Field(timedelta(hours=1), description="Within opening hours, a box online with no passage counted for this long is flagged on the console.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        m = _LISTEN.match(v)
        if not m or not 0 < int(m.group(1)) < 65536:
            raise ValueError(f"must look like HOST:PORT, e.g. 127.0.0.1:8080, got {v!r}")
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, v: list[str]) -> list[str]:
        return check_host_names(v, "console.example.com")

    @field_validator("password_hash")
    @classmethod
    def _password_hash(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("scrypt$"):
            raise ValueError("must be a hash printed by `footfall console --hash-password`")
        return v

    @field_validator("guides")
    @classmethod
    def _guides(cls, v: dict[str, str]) -> dict[str, str]:
        for name, token_hash in v.items():
            if not name.strip():
                raise ValueError("a guide name must not be empty")
            if not token_hash.startswith("scrypt$"):
                raise ValueError(f"{name}: must be a hash printed by `footfall console --hash-password`")
        return v


class CameraConfig(_Section):
    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description='rtsp://..., /dev/videoN, a device index such as "0", or a video file.')
    fps: float = Field(5.0, gt=0, description="Frames per second sampled from the source.")
    start_time: datetime | None = Field(None, description="File sources: wall-clock time of the first frame (ISO 8601 with offset).")
    entry_line: tuple[float, float, float, float] | None = Field(None, description="Entry line x1, y1, x2, y2 in fractions of the frame (0..1, origin top left); with it only people whose feet cross it towards `inside` are entries, and those crossing the other way are exits. `footfall camera snapshot` draws it on a frame.")
    inside: tuple[float, float] | None = Field(None, description="A point x, y (fractions of the frame) on the store's side of entry_line; required with it.")
    door: str | None = Field(None, min_length=1, max_length=64, description="Door this camera watches: cameras of one door see one person as one passage (tracking.door_join).")
    detect_source: str | None = Field(None, min_length=1, description="Live cameras: a lower-resolution sub-stream of the same view (e.g. rtsp://.../stream2) analysed instead of `source`: people are detected, tracked and their faces looked for on it. Decoding a 640x360 stream costs a tenth of a 1080p one; faces are then smaller (see docs/daemon.md, capacity).")

    @field_validator("entry_line", "inside")
    @classmethod
    def _fractions(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in v):
            raise ValueError(f"every coordinate must be a fraction of the frame within 0..1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _line_and_inside(self) -> CameraConfig:
        if (self.entry_line is None) != (self.inside is None):
            raise ValueError("entry_line and inside go together: the line, and a point on the store's side of it")
        if self.entry_line is not None and self.inside is not None:
            x1, y1, x2, y2 = self.entry_line
            if math.hypot(x2 - x1, y2 - y1) < 0.01:
                raise ValueError("entry_line must be a line, not a point: its ends are less than 1 % of the frame apart")
            side = (x2 - x1) * (self.inside[1] - y1) - (y2 - y1) * (self.inside[0] - x1)
            if abs(side) < 1e-6:
                raise ValueError("inside must be a point off entry_line, on the store's side of it")
        return self

    @field_validator("start_time")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-23T10:00:00+08:00")
        return v


class MetricsConfig(_Section):
    port: int = Field(0, ge=0, le=65535, description="Port of the Prometheus text endpoint /metrics (per camera frames, skips, decode and inference time, frame age; CPU and memory); 0 = off.")
    host: str = Field("127.0.0.1", min_length=1, description="Address /metrics listens on; loopback unless a scraper on another machine must reach it.")


class Config(_Section):
    store_id: str = Field("demo-store", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Store id; part of every MQTT topic.")
    timezone: TimeZone = Field("UTC", description="IANA time zone of the store: day boundaries and hourly counts.")
    models: ModelsConfig = ModelsConfig()
    recognition: RecognitionConfig = RecognitionConfig()
    tracking: TrackingConfig = TrackingConfig()
    dedup: DedupConfig = DedupConfig()
    members: MembersConfig = Field(default_factory=MembersConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    storage: StorageConfig = StorageConfig()
    alerts: AlertsConfig = AlertsConfig()
    appointments: AppointmentsConfig = AppointmentsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    downlink: DownlinkConfig = Field(default_factory=DownlinkConfig)
    console: ConsoleConfig = ConsoleConfig.model_validate({})
    metrics: MetricsConfig = MetricsConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in v:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            seen.add(cam.id)
        return v

    def console_mqtt(self) -> MqttConfig:
        """The guide console's broker settings: `mqtt`, with the console's own user and password
        (`console.mqtt_username`, `console.mqtt_password` or `mqtt_password_file`) where they are set."""
        cc = self.console
        secret = {"password": cc.mqtt_password, "password_file": cc.mqtt_password_file}
        if cc.mqtt_username is not None:
            return self.mqtt.model_copy(update={"username": cc.mqtt_username, **secret})
        if cc.mqtt_password is not None or cc.mqtt_password_file is not None:
            return self.mqtt.model_copy(update=secret)
        return self.mqtt


def key_path(loc: tuple[int | str, ...]) -> str:
    """('cameras', 1, 'fps') -> 'cameras[1].fps'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key with odd characters is quoted, so the message stays one readable line.
            name = str(part) if re.fullmatch(r"[A-Za-z0-9_-]+", str(part)) else json.dumps(str(part))
            out += f".{name}" if out else name
    return out or "(top level)"


_MESSAGES = {
    "extra_forbidden": lambda e: "unknown key",
    "missing": lambda e: "required key is missing",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']:g}",
    "greater_than_equal": lambda e: f"must be >= {e['ctx']['ge']:g}",
    "less_than_equal": lambda e: f"must be <= {e['ctx']['le']:g}",
    "multiple_of": lambda e: f"must be a multiple of {e['ctx']['multiple_of']:g}",
}


def describe(exc: ValidationError) -> str:
    """One line per problem: `key.path: what is wrong`."""
    lines = []
    for err in exc.errors():
        explain = _MESSAGES.get(err["type"])
        msg = explain(err) if explain else err["msg"].removeprefix("Value error, ")
        lines.append(f"{key_path(err['loc'])}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any]) -> Config:
    """Validate an already-parsed TOML document."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; ConfigError names the file and the key."""
    return load_toml(path, parse_config)


def load_toml(path: str | Path, parse: Callable[[dict[str, Any]], T]) -> T:
    """Read a TOML file and `parse` it; ConfigError names the file (and the key `parse` names)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: " + str(exc).replace("\n", f"\n{path}: ")) from None
