"""The answering half every page server here shares (the guide console, the HQ dashboard):
bodies that are never cached and always carry the server's security headers, redirects, and
HEAD answered with headers only."""

from __future__ import annotations

import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger(__name__)


class PageHandler(BaseHTTPRequestHandler):
    """Subclasses set `security_headers` and `log_label`."""

    security_headers: dict[str, str] = {}
    log_label = "http"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(f"{self.log_label}: %s " + format, self.address_string(), *args)

    def _answering(self) -> None:
        """Called as an answer starts (over HTTP/1.0 it is the connection's last): a server that
        counts its connections frees the slot now, before the client can see the answer end."""

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._answering()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in {**self.security_headers, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, where: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": where, **(headers or {})})
