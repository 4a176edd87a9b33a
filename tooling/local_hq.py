"""Head office on one machine, for the demo: a throw-away PostgreSQL, one collector on the given
broker, and the dashboard on a loopback port with a one-time password. stop() ends all three
and deletes the database."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from footfall.config.hq import parse_hq_config
from footfall.hq import read
from footfall.hq.collector import Collector, connect_pool
from footfall.hq.dashboard import Dashboard, PostgresReadSide, open_pool
from footfall.tooling.local_postgres import LocalPostgres, unavailable_reason
from footfall.web.passwords import hash_password


def hq_unavailable() -> str | None:
    """Why HQ cannot run here (PostgreSQL missing, ...), or None."""
    return unavailable_reason()


class LocalHq:
    """PostgreSQL + collector + dashboard; `url` and `password` once started."""

    def __init__(self, broker_url: str, *, timezones: dict[str, str] | None = None, language: str = "en",
                 topic_prefix: str = "footfall") -> None:
        self.password = secrets.token_urlsafe(8)
        self.broker_url = broker_url
        self.timezones = dict(timezones or {})
        self.language = language
        self.topic_prefix = topic_prefix
        self.postgres: LocalPostgres | None = None
        self.collector: Collector | None = None
        self.dashboard: Dashboard | None = None
        self._pools: list[Any] = []
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30) -> LocalHq:
        """Start the database, the collector (subscribed before this returns) and the dashboard."""
        try:
            self.postgres = LocalPostgres(durable=False).start()
            config = parse_hq_config({
                "database": {"url": self.postgres.url},
                "mqtt": {"url": self.broker_url, "username": None, "topic_prefix": self.topic_prefix},
                # The demo replays all of today, hours of which may still be ahead of the clock.
                "collector": {"group": "demo", "client_id": f"hq-demo-{secrets.token_hex(4)}", "reconcile": False,
                              "max_future": "24h"},
                "timezones": self.timezones,
                "dashboard": {"language": self.language, "password_hash": hash_password(self.password),
                              "listen": "127.0.0.1:0"}})
            collector_pool = connect_pool(config)
            self._pools.append(collector_pool)
            self.collector = Collector(config, collector_pool)
            self._thread = threading.Thread(target=self.collector.run, name="hq-demo-collector", daemon=True)
            self._thread.start()
            if not self.collector.wait_connected(timeout):
                raise RuntimeError(f"the HQ collector did not connect to {self.broker_url}")
            read_pool = open_pool(self.postgres.url, None, config.dashboard)
            self._pools.append(read_pool)
            self.dashboard = Dashboard(config.dashboard, PostgresReadSide(read_pool),
                                       silent_after=config.silent_after).start()
        except BaseException:
            self.stop()
            raise
        return self

    def totals(self) -> dict[str, int]:
        """Visits, re-entries and member visits HQ has committed so far, over all days, and the
        messages it refused (`refused`, kept in ingest_errors)."""
        assert self.postgres is not None, "not started"
        import psycopg

        with psycopg.connect(self.postgres.url) as conn:
            row = conn.execute("SELECT coalesce(sum(visits), 0), coalesce(sum(reentries), 0), "
                               "coalesce(sum(member_visits), 0), (SELECT count(*) FROM ingest_errors) "
                               "FROM hourly").fetchone()
        assert row is not None
        return {"visits": int(row[0]), "reentries": int(row[1]), "member_visits": int(row[2]), "refused": int(row[3])}

    def wait_idle(self, quiet: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until nothing has been committed for `quiet` seconds (what was sent is stored)."""
        assert self.collector is not None, "not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.collector.stats.last_commit
            if last and time.monotonic() - last >= quiet:
                return
            time.sleep(0.1)

    def by_store(self) -> list[dict[str, Any]]:
        """Totals per store over every store day HQ holds."""
        assert self.postgres is not None, "not started"
        import psycopg

        with psycopg.connect(self.postgres.url) as conn:
            row = conn.execute("SELECT min(store_day), max(store_day) FROM hourly").fetchone()
            if row is None or row[0] is None:
                return []
            return read.counts(conn, row[0], row[1], "store")

    @property
    def url(self) -> str:
        assert self.dashboard is not None, "not started"
        return self.dashboard.url

    def stop(self) -> None:
        """Stop the dashboard, the collector (after its batch at hand) and the database."""
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
        if self.collector is not None:
            self.collector.stop()
            if self._thread is not None:
                self._thread.join(10)
            self.collector = None
        for pool in self._pools:
            pool.close()
        self._pools = []
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
