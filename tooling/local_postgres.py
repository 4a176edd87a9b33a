"""A throw-away PostgreSQL cluster on loopback (tests, the demo, the benchmark).

`initdb` and `pg_ctl` on a fresh temporary directory, a free 127.0.0.1 port, trust
authentication for a `footfall` superuser; database() lends a fresh database of its own;
stop() ends the server and deletes the directory. PostgreSQL refuses to run as root, so as root
the cluster is created and run as the `postgres` system user (made by Debian's package) through
`runuser`.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from footfall.tooling.processes import free_port


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    candidates: list[Path] = []
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    return None


def unavailable_reason() -> str | None:
    """Why a local cluster cannot be started here (None when it can)."""
    if postgres_bindir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    return None


class LocalPostgres:
    """A private PostgreSQL server; `url` is its libpq URL (database `footfall`, user `footfall`).

    `durable=False` turns fsync off (tests: faster, and nothing to keep); the benchmark keeps
    the production setting so that commit latency is real.
    """

    def __init__(self, *, durable: bool = True, settings: dict[str, str] | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise FileNotFoundError(reason)
        bindir = postgres_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.durable = durable
        self.settings = dict(settings or {})
        self.dir = Path(tempfile.mkdtemp(prefix="footfall-pg-"))
        self.data = self.dir / "data"
        self.log_file = self.dir / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://footfall@127.0.0.1:{self.port}/footfall"
        self._as_postgres = os.geteuid() == 0
        self._started = False
        self._databases = itertools.count(1)
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir)

    def start(self, timeout: float = 30) -> LocalPostgres:
        """initdb (first time), start the server on its port, create the database; returns self."""
        if not self.data.exists():
            done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "footfall",
                             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
                   f"-c max_connections=50 -c shared_buffers=64MB")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += "".join(f" -c {key}={value}" for key, value in self.settings.items())
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                         "-o", options, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{self.log()}")
        self._started = True
        deadline = time.monotonic() + timeout
        while True:
            created = self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", "footfall", "footfall")
            if created.returncode == 0 or "already exists" in created.stderr:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
            time.sleep(0.1)

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """A fresh database of its own on this server: yields its URL, then drops it (connections and all).

        `migrated` applies head office's schema (footfall.hq.migrate) before it is handed over.
        """
        import psycopg  # head office's extra: the cluster itself needs only the PostgreSQL binaries

        from footfall.hq.migrate import migrate

        name = f"footfall_{next(self._databases)}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url = self.url.rsplit("/", 1)[0] + "/" + name
        try:
            if migrated:
                with psycopg.connect(url) as conn:
                    migrate(conn)
            yield url
        finally:
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

    def postmaster_pid(self) -> int | None:
        """The server's main process id (None when not running)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log(self) -> str:
        """The server log (empty when there is none yet)."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self._started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
