"""Logging in and out of a page server with logins (the guide console, the HQ dashboard).

`LoginHandler` runs an attempt the same way for both: the limiter is asked first (`web/limits.py`),
the password is checked on one of the app's few hashing threads, a failure waits
`failure_delay` before it is answered, and a success gets a session cookie (`web/sessions.py`).
Each app draws its own login page for a refusal (`_login_page`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Literal, Protocol

from footfall.web.limits import HashingBusy, HashingGate, LoginLimiter
from footfall.web.server import PageHandler
from footfall.web.sessions import Session, SessionBook

Refusal = Literal["wait", "failed"]   # "wait": limited or every hashing slot busy; "failed": wrong name or secret


class LoginApp(Protocol):
    """What a LoginHandler needs of its app."""

    sessions: SessionBook
    limiter: LoginLimiter
    hashing: HashingGate
    failure_delay: float   # seconds a failed attempt waits before it is answered

    def login(self, name: str, secret: str) -> str | None:
        """The name logged in, or None; verifies one hash."""
        ...


class LoginHandler(PageHandler):
    """A PageHandler whose app has logins and sessions."""

    app: LoginApp

    def _session(self) -> Session | None:
        """The request's session, or None."""
        return self.app.sessions.check(self.headers.get("Cookie"))

    def _login(self, form: Mapping[str, list[str]]) -> None:
        """Answer a posted login form: a session and a redirect to "/", or the login page refusing it."""
        address = str(self.client_address[0])
        wait = self.app.limiter.admit(address)
        if wait > 0:
            self._login_page(HTTPStatus.TOO_MANY_REQUESTS, "wait", {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        name = (form.get("name") or [""])[0]
        secret = (form.get("password") or [""])[0]
        try:
            user = self.app.hashing.run(self.app.login, name, secret)
        except HashingBusy:
            # Each hash takes 16 MiB: a crowd of logins waits outside rather than in memory.
            self._login_page(HTTPStatus.SERVICE_UNAVAILABLE, "wait", {"Retry-After": "1"})
            return
        if user is None:
            self.app.limiter.failed(address)
            time.sleep(self.app.failure_delay)
            self._login_page(HTTPStatus.UNAUTHORIZED, "failed")
            return
        self.app.limiter.succeeded(address)
        token = self.app.sessions.create(user)
        self._redirect("/", {"Set-Cookie": self.app.sessions.set_cookie(token)})

    def _logout(self) -> None:
        """End the request's session (if any) and go back to the login page."""
        token = self.app.sessions.token(self.headers.get("Cookie"))
        if token:
            self.app.sessions.drop(token)
        self._redirect("/login", {"Set-Cookie": self.app.sessions.set_cookie("", 0)})

    def _login_page(self, status: int, refusal: Refusal, headers: dict[str, str] | None = None) -> None:
        """The app's login page, answered with `status`, saying why the attempt was refused."""
        raise NotImplementedError
