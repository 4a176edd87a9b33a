"""The HQ dashboard (`footfall hq serve`): the chain's figures from PostgreSQL in a browser.

A small web server from the standard library (as the guide console). The page
(`hq/static/`) fetches JSON from `/api/...`; every endpoint is one function of the read
side (`hq/read.py`, see docs/hq.md), called with the date range of the page.

Access: a login page (the shared password with a name, or a user's own token) gives an
HttpOnly, SameSite=Strict session cookie holding a random token kept in memory only; every
other route needs it. Without a configured login the dashboard does not start.

Hardening, because it faces a head-office network, shared with the guide console (`web/`): at
most `max_connections` connections (`max_connections_per_address` from one address), each
request must arrive whole within `request_timeout` (the oldest one still arriving makes room for
a newcomer); only known Host names are answered (DNS rebinding); logins are limited per address
and for everybody, at most `login_concurrency` passwords are hashed at once, every attempt costs
one hash whatever the name, and the shared password never logs in under a user's name; POSTs
must be same-origin form posts with a small body; date ranges are bounded; the database sessions
are read-only with a statement timeout. See docs/security.md, "HQ dashboard".
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from footfall import __version__
from footfall.config.hq_dashboard import DashboardConfig
from footfall.config.schema import ConfigError
from footfall.hq import read
from footfall.hq.db import Login, LoginRefused
from footfall.sync.events import is_store_id
from footfall.web.access import Logins, same_origin
from footfall.web.app import AppHandler
from footfall.web.limits import HashingGate, LoginLimiter
from footfall.web.passwords import print_password_hash, verify_password
from footfall.web.server import PageServer, parse_listen, serve_until_interrupted
from footfall.web.sessions import Session, SessionBook

log = logging.getLogger(__name__)

COOKIE = "footfall_hq"             # not the console's name: cookies are shared across ports of one host
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 1000                  # logged-in sessions kept (logins are rate-limited too)
MAX_BODY = 4096
LOGIN_FAILURE_DELAY_S = 0.5        # slows down password guessing (per request thread)
MAX_NO_SHOWS = 500
FAILURES = {"password_refused": "the database refused the dashboard's password",
            "unreachable": "the database is not reachable",
            "no_answer": "the database did not answer"}


# -- the read side ------------------------------------------------------------------------

class ReadSide(Protocol):
    """The queries behind the views: hq/read.py's functions, with the connection taken care of."""

    def chain_by_day(self, day_from: date, day_to: date) -> list[dict[str, Any]]: ...
    def store_table(self, day: date, silent_after: timedelta, now: datetime) -> list[dict[str, Any]]: ...
    def store_hourly(self, store_id: str, day: date) -> list[int]: ...
    def adopted_hours(self, store_id: str, day: date) -> list[int]: ...
    def conversion_by_channel(self, day_from: date, day_to: date) -> list[dict[str, Any]]: ...
    def no_show_list(self, day_from: date, day_to: date, limit: int = MAX_NO_SHOWS) -> list[dict[str, Any]]: ...
    def response_times(self, day_from: date, day_to: date) -> list[dict[str, Any]]: ...
    def disagreements(self, day_from: date, day_to: date) -> list[dict[str, Any]]: ...
    def diagnose(self) -> tuple[str, str] | None: ...


class PostgresReadSide:
    """ReadSide over a psycopg connection pool: each call borrows one connection for hq/read.py.
    `login` (how the pool logs in) lets a failure be told apart: a refused password or a database
    out of reach (`diagnose`)."""

    def __init__(self, pool: Any, login: Login | None = None) -> None:
        self.pool = pool
        self.login = login

    def diagnose(self) -> tuple[str, str] | None:
        """("password_refused" | "unreachable", words), or None when a login works (or cannot be tried)."""
        return self.login.diagnose() if self.login is not None else None

    def chain_by_day(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return read.chain_by_day(conn, day_from, day_to)

    def store_table(self, day: date, silent_after: timedelta, now: datetime) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return read.store_table(conn, day, silent_after, now)

    def store_hourly(self, store_id: str, day: date) -> list[int]:
        with self.pool.connection() as conn:
            return read.store_hourly(conn, store_id, day)

    def adopted_hours(self, store_id: str, day: date) -> list[int]:
        with self.pool.connection() as conn:
            return read.adopted_hours(conn, store_id, day)

    def conversion_by_channel(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return read.conversion_by_channel(conn, day_from, day_to)

    def no_show_list(self, day_from: date, day_to: date, limit: int = MAX_NO_SHOWS) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return read.no_show_list(conn, day_from, day_to, limit)

    def response_times(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return read.response_times(conn, day_from, day_to)

    def disagreements(self, day_from: date, day_to: date) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return read.disagreements(conn, day_from, day_to)


def open_pool(url: str, password: str | None, config: DashboardConfig) -> Any:
    """A psycopg pool of read-only sessions in the dashboard's time zone, statements cancelled after
    query_timeout. It connects in the background: a database out of reach is retried, not fatal."""
    from psycopg_pool import ConnectionPool

    # Instants come back in the dashboard's zone, so the page shows every time as HQ reads its clock.
    options = (f"-c default_transaction_read_only=on -c TimeZone={config.timezone} "
               f"-c statement_timeout={int(config.query_timeout.total_seconds() * 1000)}")
    kwargs: dict[str, Any] = {"options": options, "application_name": "footfall-hq-dashboard"}
    if password is not None:
        kwargs["password"] = password
    # A request waits for a connection no longer than a query may run (and at most 10 s).
    wait = min(10.0, config.query_timeout.total_seconds())
    return ConnectionPool(url, min_size=1, max_size=config.pool_size, kwargs=kwargs, open=True,
                          name="hq-dashboard", timeout=wait)


# -- sessions and logins -------------------------------------------------------------------

def login_limiter(config: DashboardConfig) -> LoginLimiter:
    """The guide console's login limiter, with the dashboard's keys."""
    return LoginLimiter(failures_free=config.login_failures, backoff=config.login_backoff.total_seconds(),
                        backoff_max=config.login_backoff_max.total_seconds(), per_minute=config.login_per_minute,
                        max_clients=config.login_clients_tracked)


def allowed_hosts(config: DashboardConfig, listen_host: str) -> list[str]:
    """Host names answered besides IP addresses and localhost: dashboard.allowed_hosts, and the
    listen host when it is a name."""
    hosts = list(config.allowed_hosts)
    try:
        ipaddress.ip_address(listen_host)
    except ValueError:
        hosts.append(listen_host.lower())
    return hosts


def require_login(config: DashboardConfig) -> None:
    """A dashboard without a login must not exist."""
    if not config.password_hash and not config.users:
        raise ConfigError("dashboard.password_hash: no login configured; set dashboard.password_hash "
                          "(from `footfall hq serve --hash-password`) or dashboard.users")


# -- request parameters ----------------------------------------------------------------------

class BadRequest(ValueError):
    """A request parameter that is missing or wrong; the message names it."""


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"{name}: given {len(values)} times")
    return values[0]


def parse_day(query: dict[str, list[str]], name: str, default: date) -> date:
    """An ISO date parameter (YYYY-MM-DD), or `default` when absent."""
    value = _one(query, name)
    if value is None or value == "":
        return default
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: expected a date YYYY-MM-DD, got {value[:40]!r}") from None


def parse_range(query: dict[str, list[str]], today: date, max_days: int) -> tuple[date, date]:
    """`from` and `to` (inclusive); default the last 14 days to today; at most max_days days."""
    day_to = parse_day(query, "to", today)
    day_from = parse_day(query, "from", day_to - timedelta(days=13))
    if day_from > day_to:
        raise BadRequest(f"from: {day_from} is after to: {day_to}")
    if (day_to - day_from).days + 1 > max_days:
        raise BadRequest(f"from..to: {(day_to - day_from).days + 1} days asked, at most {max_days}")
    return day_from, day_to


def parse_store(query: dict[str, list[str]]) -> str:
    value = _one(query, "store")
    if not value:
        raise BadRequest("store: required")
    if not is_store_id(value):  # the collector's check: one rule for the store ids HQ holds
        raise BadRequest(f"store: not a store id: {value[:70]!r}")
    return value


def parse_limit(query: dict[str, list[str]]) -> int:
    value = _one(query, "limit")
    if value is None:
        return MAX_NO_SHOWS
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"limit: expected a whole number, got {value[:20]!r}") from None
    if not 1 <= n <= MAX_NO_SHOWS:
        raise BadRequest(f"limit: must be 1..{MAX_NO_SHOWS}, got {n}")
    return n


# -- the server -------------------------------------------------------------------------------

class _Server(PageServer):
    """The shared page server; a newcomer for whom no connection can make room is answered 503."""

    busy_reply = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n")


class Dashboard:
    """The dashboard's web server over a ReadSide."""

    def __init__(self, config: DashboardConfig, read: ReadSide, *, listen: str | None = None,
                 silent_after: timedelta = timedelta(minutes=10),
                 clock: Callable[[], datetime] | None = None) -> None:
        require_login(config)
        self.config = config
        self.read = read
        self.silent_after = silent_after
        self.zone = ZoneInfo(config.timezone)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.host, self.port = parse_listen(listen or config.listen)
        self.sessions = SessionBook(COOKIE, SESSION_TTL_S, MAX_SESSIONS)
        self.limiter = login_limiter(config)
        self.hashing = HashingGate(config.login_concurrency, "hq-dashboard-login")
        self.failure_delay = LOGIN_FAILURE_DELAY_S
        self.allowed_hosts = allowed_hosts(config, self.host)
        self.language = config.language
        try:
            self._logins = Logins(config.users, config.password_hash)
        except ValueError as exc:
            raise ConfigError(f"dashboard.users: {exc}") from None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Dashboard:
        timeout = self.config.request_timeout.total_seconds()
        handler = type("Handler", (_Handler,), {"app": self, "timeout": timeout})
        self._httpd = _Server((self.host, self.port), handler, max_connections=self.config.max_connections,
                              max_per_address=self.config.max_connections_per_address,
                              request_timeout=timeout, label="hq dashboard")
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hq-dashboard", daemon=True)
        self._thread.start()
        log.info("HQ dashboard: %s", self.url)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.hashing.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def refused(self) -> int:
        """Connections answered 503 because no connection could make room for them."""
        return self._httpd.refused if self._httpd is not None else 0

    def open_connections(self, address: str | None = None) -> int:
        """Connections holding a slot (from `address` only, if given)."""
        return self._httpd.open_connections(address) if self._httpd is not None else 0

    def today(self) -> date:
        return self.clock().astimezone(self.zone).date()

    def failure(self, exc: Exception) -> tuple[str, str]:
        """Why a view could not be read, as (reason, words): "password_refused", "unreachable" (the
        database's login, tried again), else "no_answer" (a query that failed or timed out)."""
        import psycopg

        if isinstance(exc, psycopg.OperationalError):  # a pool that cannot connect says only "timeout"
            try:
                found = self.read.diagnose()
            except Exception:  # the diagnosis must never be the reason a request is not answered
                log.exception("hq dashboard: could not tell why the database failed")
                found = None
            if found is not None:
                return found
        return "no_answer", "the database did not answer"

    def login(self, name: str, secret: str) -> str | None:
        """The user's name if `secret` is that user's own token, or the shared password for a name
        that is not a user's; else None. Every call with a secret verifies exactly one hash."""
        return self._logins.check(name, secret, verify_password)

    # -- the JSON endpoints ----------------------------------------------------------------

    def api(self, path: str, query: dict[str, list[str]], session: Session) -> Any:
        """The answer of GET /api/<path>; BadRequest for a wrong parameter, KeyError for an unknown path."""
        today = self.today()
        if path == "meta":
            return {"user": session.user, "language": self.config.language, "today": today,
                    "timezone": self.config.timezone, "silent_after_s": self.silent_after.total_seconds(),
                    "max_days": self.config.max_days, "version": __version__}
        if path == "stores":
            day = parse_day(query, "day", today)
            return {"day": day, "silent_after_s": self.silent_after.total_seconds(),
                    "rows": self.read.store_table(day, self.silent_after, self.clock())}
        if path == "hourly":
            store, day = parse_store(query), parse_day(query, "day", today)
            return {"store_id": store, "day": day, "hours": self.read.store_hourly(store, day),
                    "adopted": self.read.adopted_hours(store, day)}
        day_from, day_to = parse_range(query, today, self.config.max_days)
        span = {"from": day_from, "to": day_to}
        if path == "chain":
            return {**span, "rows": self.read.chain_by_day(day_from, day_to)}
        if path == "conversion":
            return {**span, "rows": self.read.conversion_by_channel(day_from, day_to)}
        if path == "no-shows":
            limit = parse_limit(query)
            return {**span, "limit": limit, "rows": self.read.no_show_list(day_from, day_to, limit)}
        if path == "response-times":
            return {**span, "rows": self.read.response_times(day_from, day_to)}
        if path == "disagreements":
            return {**span, "rows": self.read.disagreements(day_from, day_to)}
        raise KeyError(path)


# -- HTTP ---------------------------------------------------------------------------------------

_STATIC = {"/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
           "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",    # "no-referrer" would make the browser send `Origin: null` on our own forms
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_FORM = "application/x-www-form-urlencoded"


class _Handler(AppHandler):
    app: Dashboard
    server_version = f"footfall-hq/{__version__}"
    security_headers = _SECURITY_HEADERS
    log_label = "hq dashboard http"
    package = "footfall.hq"
    static = _STATIC
    static_headers = {"Cache-Control": "no-cache"}
    hosts_setting = "dashboard.allowed_hosts"
    page_title = "footfall HQ"
    app_name = "Chain dashboard"
    login_footer = '<p class="lang-switch"><button type="button" class="lang-toggle" id="lang-toggle"></button></p>'

    # -- helpers ---------------------------------------------------------------------------

    def _post_refusal(self) -> tuple[int, str] | None:
        """Why a POST is refused before reading it (another site, not a form, too big), or None."""
        if not same_origin(self.headers):
            return HTTPStatus.FORBIDDEN, "cross-origin request refused"
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != _FORM:
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {_FORM}"
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return HTTPStatus.LENGTH_REQUIRED, "Content-Length required"
        if not 0 <= length <= MAX_BODY:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {MAX_BODY} bytes"
        return None

    def _form(self) -> dict[str, list[str]] | None:
        """The form posted, once it has arrived whole; None if the connection ended first."""
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if len(body) < length:
            return None
        self._request_read()
        return parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)

    # -- routes ----------------------------------------------------------------------------

    def _get(self, path: str, query: str, session: Session) -> bool:
        if not path.startswith("/api/"):
            return False
        self._api(path.removeprefix("/api/"), query, session)
        return True

    def _api(self, name: str, query_string: str, session: Session) -> None:
        try:
            query = parse_qs(query_string, keep_blank_values=True, max_num_fields=16)
            answer = self.app.api(name, query, session)
        except KeyError:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such view: {name[:40]}"})
        except (BadRequest, ValueError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception as exc:  # the database is down, a query timed out: the page shows it, the server lives
            reason, words = self.app.failure(exc)
            log.warning("hq dashboard: /api/%s failed: %s (%s: %s)", name, words, type(exc).__name__,
                        str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "")
            # The page gets the kind of failure; who was refused and where the password came from
            # are for the log, not for every analyst's screen.
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": FAILURES[reason], "reason": reason})
        else:
            self._json(HTTPStatus.OK, answer)

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        if path not in ("/login", "/logout"):
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        refusal = self._post_refusal()
        if refusal is not None:
            self._json(refusal[0], {"error": refusal[1]}, {"Connection": "close"})
            return
        form = self._form()
        if form is None:
            self.close_connection = True
            return
        if path == "/login":
            self._login(form)
            return
        if self._session() is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "login required"})
            return
        self._logout()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection = True


# -- command line -------------------------------------------------------------------------------

def cmd_serve(args: Any) -> int:
    """`footfall hq serve`: the dashboard until Ctrl-C (or `--hash-password`: print a hash and exit)."""
    import sys

    from footfall.config.hq import load_hq_config
    from footfall.edge.logs import log_to_stdout

    if args.hash_password:
        return print_password_hash()
    if not args.config:
        print("error: --config is required (or --hash-password)", file=sys.stderr)
        return 2
    config = load_hq_config(args.config)
    require_login(config.dashboard)
    if args.listen:
        parse_listen(args.listen)
    log_to_stdout(logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    login = Login.of(config.database, config.dashboard.database_url)
    found = login.diagnose()
    if found is not None and found[0] == "password_refused":
        raise LoginRefused(f"database: {found[1]}")  # waiting will not make it pass
    if found is not None:
        log.warning("hq dashboard: %s; the views say so until it answers", found[1])
    pool = open_pool(login.url, login.password, config.dashboard)
    try:
        return serve_until_interrupted(Dashboard(config.dashboard, PostgresReadSide(pool, login),
                                                 listen=args.listen, silent_after=config.silent_after))
    finally:
        pool.close()
