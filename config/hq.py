"""The HQ collector's configuration (`hq.toml`), modelled like the store's (config/schema.py).

The database password is never in the file: it comes from `$FOOTFALL_HQ_DB_PASSWORD` or
from `database.password_file`; a URL carrying a password is refused.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from footfall.config.hq_dashboard import DashboardConfig
from footfall.config.schema import (
    ConfigError,
    CredentialPath,
    Duration,
    MqttConfig,
    _Section,
    check_timezone,
    describe,
    load_toml,
)

PASSWORD_ENV = "FOOTFALL_HQ_DB_PASSWORD"
COLLECTOR_USER = "hq-collector"   # each head-office program logs in to the broker as a user of its own
RECONCILE_USER = "hq-reconcile"
_GROUP = re.compile(r"^[A-Za-z0-9_.-]+$")


class DatabaseConfig(_Section):
    url: str = Field("postgresql://footfall@127.0.0.1:5432/footfall",
                     description="libpq URL of the HQ database, without a password.")
    password_file: CredentialPath | None = Field(None, description=f"File holding the password (else ${PASSWORD_ENV}); under a systemd unit, the credential of the same file name if the unit loads one.")
    pool_size: int = Field(4, ge=1, le=64, description="Connections kept open by the collector.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"must be a libpq URL postgresql://user@host:port/dbname, got scheme {parts.scheme!r}")
        if parts.password is not None:
            raise ValueError(f"must not carry a password: set ${PASSWORD_ENV} or database.password_file")
        return v


class CollectorConfig(_Section):
    group: str = Field("hq", description="Shared-subscription group: collectors with the same group share the load.")
    client_id: str | None = Field(None, description="Stable MQTT client id (persistent session); default hq-<group>-<host>-<n>.")
    session_expiry: Duration = Field(timedelta(days=1), description="How long the broker keeps the session (and queues messages) while the collector is away.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Messages written in one transaction at most.")
    batch_interval: Duration = Field(timedelta(milliseconds=200), description="Longest wait before a partial batch is written.")
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Larger messages go to ingest_errors.")
    max_future: Duration = Field(timedelta(hours=2), description="An event stamped further ahead of the HQ clock goes to ingest_errors.")
    max_past: Duration = Field(timedelta(days=366), description="An event stamped (or an appointment booked) further back than this from the HQ clock goes to ingest_errors.")
    max_booking_ahead: Duration = Field(timedelta(days=366), description="An appointment booked further ahead of the HQ clock goes to ingest_errors.")
    receive_maximum: int | None = Field(None, ge=1, le=65535, description="MQTT 5 Receive Maximum announced in CONNECT: QoS 1 messages the broker may have unacknowledged with this collector; default twice batch_size (at most 65535).")
    max_packet_bytes: int | None = Field(None, ge=4096, le=256 * 1024 * 1024, description="MQTT 5 Maximum Packet Size announced in CONNECT: the broker never sends a larger packet (it drops the message); default max_message_bytes + 64 KiB.")
    qos0_buffer_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024, description="QoS 0 messages waiting in memory at most (payload, topic and 256 bytes each); beyond it new ones are dropped and counted.")
    rejections_logged_per_minute: int = Field(10, ge=0, le=10_000, description="Rejected messages logged one by one a minute at most; the others are counted in one line a minute.")
    ingest_errors_max_rows: int = Field(100_000, ge=100, le=100_000_000, description="ingest_errors keeps the newest this many rows; the collector deletes older ones after each batch that adds some.")
    ingest_errors_max_age: Duration = Field(timedelta(days=30), description="ingest_errors rows older than this are deleted by the collector (checked every minute).")
    reconcile_every: Duration = Field(timedelta(hours=1), description="How often the collector reconciles today and yesterday with every store.")
    reconcile: bool = Field(True, description="Reconcile from the collector (one collector of the group at a time does it).")


    def receive_max(self) -> int:
        """The Receive Maximum the collector announces."""
        return self.receive_maximum or min(65535, 2 * self.batch_size)

    def packet_max(self) -> int:
        """The Maximum Packet Size the collector announces."""
        return self.max_packet_bytes or self.max_message_bytes + 64 * 1024


class ReconcileConfig(_Section):
    timeout: Duration = Field(timedelta(seconds=10), description="How long to wait for the stores' counts/get answers.")
    mqtt_username: str | None = Field(RECONCILE_USER, description="Reconciliation's own broker user (never the collector's: with use_username_as_clientid a shared user would take the collector's session).")
    mqtt_password: str | None = Field(None, repr=False, description="Password of reconcile.mqtt_username. Better kept out of this file: see mqtt_password_file.")
    mqtt_password_file: CredentialPath | None = Field(None, description="File holding that password (first line); under a systemd unit, the credential of the same file name if the unit loads one. Without either, $FOOTFALL_MQTT_PASSWORD or the systemd credential mqtt-password.")
    mqtt_client_id: str | None = Field(None, description="Reconciliation's client id; default hq-reconcile-<run> (under use_username_as_clientid the broker uses the user name).")


class HqConfig(_Section):
    database: DatabaseConfig = Field(default_factory=lambda: DatabaseConfig.model_validate({}))
    mqtt: MqttConfig = Field(default_factory=lambda: MqttConfig.model_validate({"username": COLLECTOR_USER}))
    collector: CollectorConfig = Field(default_factory=lambda: CollectorConfig.model_validate({}))
    reconcile: ReconcileConfig = Field(default_factory=lambda: ReconcileConfig.model_validate({}))
    dashboard: DashboardConfig = Field(default_factory=lambda: DashboardConfig.model_validate({}))
    silent_after: Duration = Field(timedelta(minutes=10), description="A box with no message for this long is flagged silent.")
    timezones: dict[str, str] = Field(default_factory=dict, description="store_id -> IANA zone; a store not listed takes the UTC offset of its events.")

    @model_validator(mode="before")
    @classmethod
    def _collector_user(cls, data: Any) -> Any:
        """`mqtt.username` defaults to the collector's user also when `[mqtt]` is given without it."""
        if isinstance(data, dict) and isinstance(data.get("mqtt"), dict) and "username" not in data["mqtt"]:
            return {**data, "mqtt": {**data["mqtt"], "username": COLLECTOR_USER}}
        return data

    @field_validator("timezones")
    @classmethod
    def _zones(cls, v: dict[str, str]) -> dict[str, str]:
        for store, name in v.items():
            try:
                check_timezone(name)
            except ValueError as exc:
                raise ValueError(f"{store}: {exc}") from None
        return v


_WINDOWS = {"max_future": (timedelta(minutes=1), timedelta(days=7)),
            "max_past": (timedelta(hours=1), timedelta(days=3660)),
            "max_booking_ahead": (timedelta(hours=1), timedelta(days=3660))}


def parse_hq_config(data: dict[str, Any]) -> HqConfig:
    """Validate an already-parsed TOML document."""
    try:
        config = HqConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    if not _GROUP.match(config.collector.group):
        raise ConfigError(f"collector.group: letters, digits, '_', '.', '-' only, got {config.collector.group!r}")
    check_windows(config.collector)
    return config


def check_windows(collector: CollectorConfig) -> None:
    """The time windows of accepted messages within their bounds (ConfigError naming the key)."""
    for key, (low, high) in _WINDOWS.items():
        value = getattr(collector, key)
        if not low <= value <= high:
            raise ConfigError(f"collector.{key}: must be between {low} and {high}, got {value}")


def reconcile_mqtt(config: HqConfig) -> MqttConfig:
    """The broker settings of reconciliation: `[mqtt]` with reconciliation's own user and password."""
    r = config.reconcile
    return config.mqtt.model_copy(update={"username": r.mqtt_username, "password": r.mqtt_password,
                                          "password_file": r.mqtt_password_file})


def load_hq_config(path: str | Path) -> HqConfig:
    """Read and validate hq.toml; ConfigError names the file and the key."""
    return load_toml(path, parse_hq_config)


def password_source(config: DatabaseConfig, env: dict[str, str] | None = None) -> str:
    """Where `database_password` takes the password from, in words an operator can act on."""
    if config.password_file is not None:
        return f"database.password_file ({config.password_file})"
    if PASSWORD_ENV in (os.environ if env is None else env):
        return f"${PASSWORD_ENV}"
    return (f"no password given (neither database.password_file nor ${PASSWORD_ENV} is set; "
            f"libpq's ~/.pgpass or $PGPASSWORD, if any)")


def database_password(config: DatabaseConfig, env: dict[str, str] | None = None) -> str | None:
    """The password: database.password_file (first line) if set, else the environment, else None."""
    if config.password_file is not None:
        try:
            return config.password_file.read_text(encoding="utf-8").splitlines()[0] if config.password_file.stat().st_size else ""
        except OSError as exc:
            raise ConfigError(f"database.password_file: cannot read {config.password_file}: {exc.strerror or exc}") from None
    return (os.environ if env is None else env).get(PASSWORD_ENV)
