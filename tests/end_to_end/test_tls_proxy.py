"""The TLS reverse proxy of config/nginx-footfall.conf.example, in front of the console and the dashboard.

A real nginx runs the example, its ports, certificates and upstreams moved to this machine's
loopback, in front of a real `footfall console` and `footfall hq serve`. Each service answers
under its TLS name (the browser's Host passes through, so allowed_hosts admits it), its session
cookie comes back marked Secure, the console's event stream arrives as it is written, logins
beyond the proxy's burst are refused by the proxy, and plain HTTP only redirects to HTTPS.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker import free_port, wait_until

from footfall.web.passwords import hash_password

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "nginx-footfall.conf.example"
CONSOLE, HQ = "console.store.example", "hq.example"

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                                reason="nginx is not installed (apt-get install nginx)")


class Loopback(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that sends and verifies the name `host` (SNI, certificate, Host)."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={CONSOLE}",
                    "-addext", f"subjectAltName=DNS:{CONSOLE},DNS:{HQ}", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


def serve(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "footfall", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)

    def listening() -> bool:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 60, " ".join(argv[:2]))
    return process


@pytest.fixture
def proxy(tmp_path, certificate, hq_db) -> Iterator[dict[str, int]]:
    """nginx with the example in front of a console and a dashboard: the ports of all four."""
    ports = {name: free_port() for name in ("tls", "http", "console", "dashboard")}
    console_toml = tmp_path / "footfall.toml"
    console_toml.write_text(f'store_id = "sh-001"\n[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
                            f'[console]\nlisten = "127.0.0.1:{ports["console"]}"\nallowed_hosts = ["{CONSOLE}"]\n'
                            f'password_hash = "{hash_password("guide")}"\n')
    hq_toml = tmp_path / "hq.toml"
    hq_toml.write_text(f'[database]\nurl = "{hq_db}"\n[dashboard]\nlisten = "127.0.0.1:{ports["dashboard"]}"\n'
                       f'allowed_hosts = ["{HQ}"]\npassword_hash = "{hash_password("analyst")}"\n')
    cert, key = certificate
    site = EXAMPLE.read_text()
    for old, new in {"listen 443 ssl;": f"listen 127.0.0.1:{ports['tls']} ssl;", "listen [::]:443 ssl;": "",
                     "listen 80;": f"listen 127.0.0.1:{ports['http']};", "listen [::]:80;": "",
                     "/etc/ssl/footfall/console.pem": str(cert), "/etc/ssl/footfall/hq.pem": str(cert),
                     "/etc/ssl/footfall/console.key": str(key), "/etc/ssl/footfall/hq.key": str(key),
                     "127.0.0.1:8080": f"127.0.0.1:{ports['console']}",
                     "127.0.0.1:8090": f"127.0.0.1:{ports['dashboard']}"}.items():
        assert old in site, old
        site = site.replace(old, new)
    (tmp_path / "footfall.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {tmp_path}/{kind};\n" for kind in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}include {tmp_path}/footfall.conf;\n}}\n")
    processes = [serve(["console", "--config", str(console_toml)], ports["console"]),
                 serve(["hq", "serve", "--config", str(hq_toml)], ports["dashboard"])]
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(tmp_path), "-c",
                              str(tmp_path / "nginx.conf"), "-g", "daemon off;"], stderr=subprocess.PIPE)
    processes.append(nginx)
    try:
        def up() -> bool:
            assert nginx.poll() is None, nginx.stderr.read().decode() if nginx.stderr else ""
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", ports["tls"])) == 0

        wait_until(up, 20, "nginx")
        yield ports
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT if process is not nginx else signal.SIGQUIT)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def request(port: int, host: str, cert: Path, method: str, path: str, body: dict | None = None,
            headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, Loopback]:
    conn = Loopback(host, port, context=ssl.create_default_context(cafile=str(cert)), timeout=10)
    data = urllib.parse.urlencode(body).encode() if body is not None else None
    sent = {"Origin": f"https://{host}", **({"Content-Type": "application/x-www-form-urlencoded"} if data else {}),
            **(headers or {})}
    conn.request(method, path, body=data, headers=sent)
    return conn.getresponse(), conn


def log_in(ports: dict[str, int], host: str, cert: Path, password: str) -> str:
    answer, conn = request(ports["tls"], host, cert, "POST", "/login", {"name": "Li Na", "password": password})
    cookie = answer.getheader("Set-Cookie") or ""
    conn.close()
    assert answer.status == 303, answer.status
    assert "secure" in [part.strip().lower() for part in cookie.split(";")], cookie
    return cookie.split(";")[0]


def test_the_console_answers_over_tls_under_its_name_with_a_secure_cookie_and_a_live_stream(proxy, certificate):
    cert, _ = certificate
    answer, conn = request(proxy["tls"], CONSOLE, cert, "GET", "/login")
    assert answer.status == 200 and b"<form" in answer.read()
    assert answer.getheader("Strict-Transport-Security")
    conn.close()
    cookie = log_in(proxy, CONSOLE, cert, "guide")
    answer, conn = request(proxy["tls"], CONSOLE, cert, "GET", "/events", headers={"Cookie": cookie})
    assert answer.status == 200 and answer.getheader("Content-Type", "").startswith("text/event-stream")
    conn.sock.settimeout(5)  # the first events arrive at once, while the stream stays open
    got = b""
    try:
        while b"event: hello" not in got:
            got += answer.read1(65536)
    except TimeoutError:
        raise AssertionError(f"the stream held back its first events; got {got!r}") from None
    conn.close()


def test_the_dashboard_answers_over_tls_under_its_name_with_a_secure_cookie(proxy, certificate):
    cert, _ = certificate
    answer, conn = request(proxy["tls"], HQ, cert, "GET", "/login")
    assert answer.status == 200 and b"<form" in answer.read()
    conn.close()
    cookie = log_in(proxy, HQ, cert, "analyst")
    answer, conn = request(proxy["tls"], HQ, cert, "GET", "/api/meta", headers={"Cookie": cookie})
    assert answer.status == 200 and b'"user"' in answer.read()
    conn.close()


def test_the_proxy_refuses_logins_beyond_its_burst_and_plain_http_only_redirects(proxy, certificate):
    cert, _ = certificate
    statuses = []
    for _ in range(14):
        answer, conn = request(proxy["tls"], CONSOLE, cert, "GET", "/login")
        statuses.append(answer.status)
        conn.close()
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    conn2 = http.client.HTTPConnection("127.0.0.1", proxy["http"], timeout=10)
    conn2.request("GET", "/login", headers={"Host": CONSOLE})
    answer2 = conn2.getresponse()
    assert answer2.status == 301 and answer2.getheader("Location") == f"https://{CONSOLE}/login"
    conn2.close()
