"""The HQ dashboard's section of `hq.toml` (`[dashboard]`), read by `footfall hq serve`.

Logins are salted scrypt hashes (`footfall hq serve --hash-password`), never passwords: a
shared password (with any name but a user's) and/or one token per analyst. Without a login the
dashboard does not start. Every limit here is documented, with its default, in docs/security.md
("HQ dashboard").
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from footfall.config.schema import Duration, TimeZone, _Section, check_host_names
from footfall.web.access import Logins

_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def _check_hash(v: str) -> str:
    if not v.startswith("scrypt$"):
        raise ValueError("must be a hash printed by `footfall hq serve --hash-password`")
    return v


class DashboardConfig(_Section):
    language: Literal["zh", "en"] = Field("zh", description="Language of the dashboard's labels (the page also has a toggle).")
    listen: str = Field("127.0.0.1:8090", description="HOST:PORT the dashboard listens on.")
    timezone: TimeZone = Field("Asia/Shanghai", description="IANA time zone whose date is 'today' in the date range.")
    password_hash: str | None = Field(None, description="Salted hash of the shared dashboard password (footfall hq serve --hash-password).")
    users: dict[str, str] = Field(default_factory=dict, description="Per-user login: name -> hash of that user's token (footfall hq serve --hash-password).")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names the dashboard answers to besides IP addresses, localhost and the listen host, e.g. the name a TLS proxy serves it under; any other Host header is refused (DNS rebinding).")
    max_connections: int = Field(32, ge=1, le=1024, description="Open connections at most; when full, the oldest connection still sending its request is closed for a new one, and if none is, the new one is answered 503.")
    max_connections_per_address: int = Field(8, ge=1, le=1024, description="Open connections from one client address at most; its oldest still sending its request makes room, else 503.")
    request_timeout: Duration = Field(timedelta(seconds=10), description="A request (headers and body) must arrive whole within this time, however slowly it trickles; also the longest a write may block.")
    login_failures: int = Field(5, ge=1, le=1000, description="Failed logins from one client address before it must wait.")
    login_backoff: Duration = Field(timedelta(seconds=2), description="The first wait after login_failures failures; it doubles with every further failure.")
    login_backoff_max: Duration = Field(timedelta(minutes=15), description="The longest wait imposed on one client address.")
    login_per_minute: int = Field(60, ge=1, le=100_000, description="Login attempts per minute from all clients together; beyond it a login is answered 429.")
    login_clients_tracked: int = Field(4096, ge=16, le=1_000_000, description="Client addresses whose failed logins are remembered (the least recently seen is forgotten first).")
    login_concurrency: int = Field(2, ge=1, le=64, description="Password hashes computed at once (16 MiB each); a login beyond it is answered 503.")
    max_days: int = Field(366, ge=1, le=3660, description="Longest date range a view may ask for.")
    database_url: str | None = Field(None, description="libpq URL (no password) of the database the dashboard reads, e.g. a read replica; default database.url.")
    pool_size: int = Field(4, ge=1, le=64, description="Database connections kept by the dashboard.")
    query_timeout: Duration = Field(timedelta(seconds=15), description="A dashboard query running longer is cancelled by the database.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        m = _LISTEN.match(v.strip())
        if not m or not 0 <= int(m.group(2)) < 65536:
            raise ValueError(f"must look like HOST:PORT, e.g. 127.0.0.1:8090, got {v!r}")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"must be a libpq URL postgresql://user@host:port/dbname, got scheme {parts.scheme!r}")
        if parts.password is not None:
            raise ValueError("must not carry a password: the dashboard uses database.password_file or the environment")
        return v

    @field_validator("password_hash")
    @classmethod
    def _password_hash(cls, v: str | None) -> str | None:
        return None if v is None else _check_hash(v)

    @field_validator("users")
    @classmethod
    def _users(cls, v: dict[str, str]) -> dict[str, str]:
        for name, token_hash in v.items():
            if not name.strip() or len(name) > 40:
                raise ValueError(f"user name {name!r} must be 1 to 40 characters")
            try:
                _check_hash(token_hash)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        Logins(v, None)   # names that are one name once normalised, or cannot be shown, are refused
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, v: list[str]) -> list[str]:
        return check_host_names(v, "hq.example.com")
