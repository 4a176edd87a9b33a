"""The request handling the guide console and the HQ dashboard share (`AppHandler`).

A GET is answered only for a known Host (DNS rebinding); the app's assets and the shared
web/static/page.js need no session, nor does the login page (web/pages.py); every other page or
answer needs one: without it the page redirects to the login, anything else is 401. JSON
answers are compact UTF-8, dates and decimals as their plain forms (`json_bytes`).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

from footfall.web.access import host_allowed
from footfall.web.login import LoginApp, LoginHandler, Refusal
from footfall.web.pages import WEB, render_page, static_file
from footfall.web.sessions import Session

_INDEX = ("/", "/index.html")
_SHARED_STATIC = {"/page.js": ("page.js", "text/javascript; charset=utf-8")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON; dates, timestamps, durations and decimals as plain forms."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_jsonable).encode("utf-8")


class PageApp(LoginApp, Protocol):
    """What an AppHandler needs of its app besides logins."""

    @property
    def language(self) -> str:
        """The pages' language, "zh" or "en"."""
        ...

    @property
    def allowed_hosts(self) -> list[str]:
        """Host names answered besides IP addresses and localhost."""
        ...


class AppHandler(LoginHandler):
    """A LoginHandler serving an app's pages; subclasses set the class attributes and `_get`."""

    app: PageApp
    package: str                                  # the app's package: static/head.html, index.html, assets
    static: dict[str, tuple[str, str]] = {}       # path -> (file of the app's static/, content type)
    static_headers: dict[str, str] = {}           # added to the assets' answers
    hosts_setting = "allowed_hosts"               # the setting named when a Host is refused
    page_title = "footfall"
    app_name = ""                                 # the login page's heading until the page's script names it
    login_footer = ""                             # HTML under the login form

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json_bytes(payload), "application/json; charset=utf-8", headers)

    def _page(self, package: str, name: str, status: int = HTTPStatus.OK, refusal: Refusal | None = None,
              headers: dict[str, str] | None = None) -> None:
        values = {"lang": self.app.language, "title": self.page_title, "name": self.app_name,
                  "login_footer": self.login_footer,
                  "error_hidden": "" if refusal == "failed" else "hidden",
                  "wait_hidden": "" if refusal == "wait" else "hidden"}
        html = render_page(self.package, package, name, values)
        self._send(status, html.encode("utf-8"), "text/html; charset=utf-8", headers)

    def _login_page(self, status: int, refusal: Refusal | None, headers: dict[str, str] | None = None) -> None:
        self._page(WEB, "login.html", status, refusal, headers)

    def _host_ok(self) -> bool:
        """Refuse a Host that is not this app's (DNS rebinding); answers 421 itself."""
        if host_allowed(self.headers.get("Host"), self.app.allowed_hosts):
            return True
        self._json(HTTPStatus.MISDIRECTED_REQUEST, {"error": f"unknown Host; add it to {self.hosts_setting}"},
                   {"Connection": "close"})
        return False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._request_read()
        if not self._host_ok():
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path in self.static or path in _SHARED_STATIC:
            package, (name, content_type) = ((self.package, self.static[path]) if path in self.static
                                             else (WEB, _SHARED_STATIC[path]))
            self._send(HTTPStatus.OK, static_file(package, name).encode("utf-8"), content_type, self.static_headers)
        elif self._get_public(path):
            return
        elif path == "/login":
            self._login_page(HTTPStatus.OK, None)
        elif (session := self._session()) is None:
            if path in _INDEX:
                self._redirect("/login")
            else:
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "login required"})
        elif path in _INDEX:
            self._page(self.package, "index.html")
        elif not self._get(path, parts.query, session):
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _get_public(self, path: str) -> bool:
        """Answer a GET of `path` that needs no session besides the assets; False if `path` is not one."""
        return False

    def _get(self, path: str, query: str, session: Session) -> bool:
        """Answer a logged-in GET of `path` with the app's own route; False if it has none."""
        return False
