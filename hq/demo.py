"""The HQ part of `footfall demo`: a throw-away PostgreSQL and a collector on the demo's broker.

`start_hq_demo` returns None (and says why) where PostgreSQL is not installed. The object
keeps the pool and the config, so the demo can show the chain's figures, or serve them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from footfall.config.hq import HqConfig, parse_hq_config
from footfall.hq import read
from footfall.hq.collector import Collector, connect_pool
from footfall.hq.local_postgres import LocalPostgres, unavailable_reason


class HqDemo:
    """PostgreSQL on loopback and one collector subscribed to `broker_url`; stop() removes both."""

    def __init__(self, broker_url: str, timezones: dict[str, str]) -> None:
        self.postgres = LocalPostgres(durable=False).start()
        try:
            self.config: HqConfig = parse_hq_config({
                "database": {"url": self.postgres.url}, "mqtt": {"url": broker_url, "username": None},
                "collector": {"client_id": "hq-demo", "batch_interval": "0.1s", "reconcile": False},
                "timezones": timezones})
            self.pool = connect_pool(self.config)
            self.collector = Collector(self.config, self.pool)
        except Exception:
            self.postgres.stop()
            raise
        self._thread = threading.Thread(target=self.collector.run, name="hq-demo-collector", daemon=True)
        self._thread.start()
        if not self.collector.wait_connected(10):
            self.stop()
            raise RuntimeError(f"the HQ collector could not reach {broker_url}")
        time.sleep(0.3)  # its SUBACK

    @property
    def url(self) -> str:
        """The libpq URL of the demo's HQ database."""
        return self.postgres.url

    def wait_idle(self, quiet: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until nothing has been committed for `quiet` seconds (what was sent is stored)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.collector.stats.last_commit
            if last and time.monotonic() - last >= quiet:
                return
            time.sleep(0.1)

    def by_store(self) -> list[dict[str, Any]]:
        """Totals per store over every store day HQ holds."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT min(store_day), max(store_day) FROM hourly").fetchone()
            if row is None or row[0] is None:
                return []
            return read.counts(conn, row[0], row[1], "store")

    def stop(self) -> None:
        """Stop the collector, close the pool, remove the database."""
        self.collector.stop()
        self._thread.join(10)
        self.pool.close()
        self.postgres.stop()


def start_hq_demo(broker_url: str, timezones: dict[str, str]) -> HqDemo | None:
    """An HqDemo, or None with the reason printed where PostgreSQL is missing."""
    reason = unavailable_reason()
    if reason:
        print(f"HQ part skipped: {reason}")
        return None
    return HqDemo(broker_url, timezones)
