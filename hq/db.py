"""Logging in to the HQ database, and telling a refused login from a database out of reach.

libpq reports both as a connection failure without an SQLSTATE, so the words decide: PostgreSQL
answers a wrong password (and, on purpose, an unknown role) with "password authentication
failed", libpq says "no password supplied" when the server asked for one it was not given, and a
`pg_hba.conf` that admits nobody from here says so. Those are refusals: waiting does not make
them pass, so the collector stops and the dashboard says which it is. (A server whose
`lc_messages` is not English words them otherwise; they then read as "not reachable".)
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from footfall.config.hq import DatabaseConfig, database_password, password_source
from footfall.config.schema import ConfigError

CONNECT_TIMEOUT_S = 10
_PASSWORD = ("password authentication failed", "no password supplied", "password is required")
_HBA = ("pg_hba.conf",)


class LoginRefused(ConfigError):
    """The database refused the login: the message names the user and where the password came from."""


@dataclass(frozen=True)
class Login:
    """How a program logs in: the libpq URL (no password), the password, and where that came from."""

    url: str
    password: str | None
    source: str

    @classmethod
    def of(cls, database: DatabaseConfig, url: str | None = None) -> Login:
        """The login of `database` (its url, or `url`: the dashboard's replica), with its password."""
        return cls(url or database.url, database_password(database), password_source(database))

    @property
    def user(self) -> str:
        try:
            return str(conninfo_to_dict(self.url).get("user") or "(the system user)")
        except psycopg.Error:
            return "(unknown)"

    def connect(self, **kwargs: object) -> psycopg.Connection:
        """A connection; LoginRefused when the server refuses the login, else psycopg's error."""
        extra = dict(kwargs)
        if self.password is not None:
            extra["password"] = self.password
        extra.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        try:
            return psycopg.connect(self.url, **extra)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            refused = self.refusal(exc)
            if refused is not None:
                raise refused from None
            raise

    def check(self) -> None:
        """Log in once and out again: LoginRefused, psycopg.OperationalError when out of reach."""
        self.connect().close()

    def check_refused(self) -> None:
        """LoginRefused if the server refuses the login now; a database out of reach passes (it may come back)."""
        try:
            self.check()
        except psycopg.Error:
            pass

    def refusal(self, exc: BaseException) -> LoginRefused | None:
        """The LoginRefused that `exc` means, or None when it is not a refused login."""
        text = str(exc)
        lowered = text.lower()
        if any(words in lowered for words in _PASSWORD):
            return LoginRefused(f"database: PostgreSQL refused the password of user {self.user} "
                                f"({_where(self.url)}); the password came from {self.source}")
        if any(words in lowered for words in _HBA):
            return LoginRefused(f"database: PostgreSQL's pg_hba.conf admits no login of user {self.user} from "
                                f"here ({_where(self.url)}): {_first_line(text)}")
        return None

    def diagnose(self) -> tuple[str, str] | None:
        """Why the database cannot be used, as (reason, words): ("password_refused", ...) or
        ("unreachable", ...); None when a login works now (the failure was something else)."""
        try:
            self.check()
        except LoginRefused as exc:
            return "password_refused", str(exc).removeprefix("database: ")
        except psycopg.Error as exc:
            return "unreachable", f"the database is not reachable ({_where(self.url)}): {_first_line(str(exc))}"
        return None


def _where(url: str) -> str:
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "database.url"
    return f"{info.get('host') or 'local socket'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else "no reason given"
