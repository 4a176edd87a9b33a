"""Logged-in browser sessions of the guide console and the HQ dashboard: random tokens in memory,
named by an HttpOnly, SameSite=Strict cookie. A restart logs everybody out."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie


@dataclass(frozen=True)
class Session:
    user: str
    expires: float  # time.monotonic()


class SessionBook:
    """At most `max_sessions` sessions of `ttl` seconds under the cookie `cookie` (the oldest login
    goes first when full)."""

    def __init__(self, cookie: str, ttl: float, max_sessions: int) -> None:
        self.cookie = cookie
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def create(self, user: str) -> str:
        """A new session for `user`; returns its token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._by_token = {t: s for t, s in self._by_token.items() if s.expires > now}
            while len(self._by_token) >= self.max_sessions:
                del self._by_token[next(iter(self._by_token))]
            self._by_token[token] = Session(user, now + self.ttl)
        return token

    def drop(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)

    def token(self, cookie_header: str | None) -> str | None:
        """This book's token in a request's Cookie header, if any."""
        return token_in(cookie_header, self.cookie)

    def check(self, cookie_header: str | None) -> Session | None:
        """The session named by the request's Cookie header, or None (absent, unknown, expired, malformed)."""
        token = self.token(cookie_header)
        if token is None:
            return None
        with self._lock:
            for known, session in self._by_token.items():
                if hmac.compare_digest(known, token):
                    return session if session.expires > time.monotonic() else None
        return None

    def set_cookie(self, token: str, max_age: int | None = None) -> str:
        """The Set-Cookie header value for `token` (an empty token with max_age 0 logs out)."""
        age = int(self.ttl) if max_age is None else max_age
        return f"{self.cookie}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}"


def token_in(cookie_header: str | None, cookie: str) -> str | None:
    """The value of `cookie` in a Cookie header, or None."""
    if not cookie_header:
        return None
    try:
        jar = SimpleCookie(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(cookie)
    return morsel.value if morsel is not None and morsel.value else None
