"""`footfall bench soak`: the daemon on a generated store day, replayed over and over for N minutes.

One daemon runs the whole time against a local Mosquitto; each loop replays the scenario one
store day later than the one before, so every visit window closes and the counts roll over at
midnight. A subscriber records every event id that reaches the broker. The figures: memory,
threads and open files at the start and the end, the outbox's largest backlog, and the events
committed to the outbox against those received (`lost` must be 0).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from footfall.config.schema import Config
from footfall.edge.sources import ENDED, STREAMING, FileSource, Frame, merge_by_time
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.sync import events
from footfall.sync.mqtt_client import LocalSubscriber
from footfall.tooling.local_broker import LocalBroker, mosquitto_binary
from footfall.tooling.scenario import SAMPLE_FPS, STORE_TZ, Scenario, SpriteBank, build_scenario, enrolment

STORE = "soak-001"
SAMPLE_EVERY_S = 0.5


def rss_mb() -> float:
    """Resident memory of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class LoopingReplay:
    """The scenario's clips as one file source, replayed a store day later each loop until the deadline."""

    camera_id = "door-1"

    def __init__(self, scenario: Scenario, deadline: float, on_loop=None) -> None:
        self.scenario = scenario
        self.deadline = deadline
        self.on_loop = on_loop
        self.loops = 0
        self.state = STREAMING

    def frames(self) -> Iterator[Frame]:
        try:
            while time.monotonic() < self.deadline or self.loops == 0:
                shift = timedelta(days=self.loops)
                sources = [FileSource(c.camera_id, p, c.start_time + shift, SAMPLE_FPS)
                           for c, p in self.scenario.clips]
                yield from merge_by_time(sources)
                self.loops += 1
                if self.on_loop is not None:
                    self.on_loop(self.loops)
        finally:
            self.state = ENDED


class EventCounter:
    """A consumer on the store's topics that keeps every event id it receives."""

    def __init__(self, port: int) -> None:
        self.ids: set[str] = set()
        self._lock = threading.Lock()
        self._subscriber = LocalSubscriber(port, "soak-counter", events.topic_filter("footfall", "#", STORE),
                                           self._keep, name="the soak's subscriber")

    def _keep(self, event: dict[str, Any]) -> None:
        event_id = event.get("event_id")
        if event_id:
            with self._lock:
                self.ids.add(event_id)

    def received(self) -> set[str]:
        with self._lock:
            return set(self.ids)

    def close(self) -> None:
        self._subscriber.close()


def outbox_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT event_id FROM outbox")}
    finally:
        conn.close()


def bench_soak(config: Config, faces_dir: Path, *, minutes: float, progress: bool = True) -> dict:
    """Replay the small generated scenario through one daemon for `minutes`; returns the figures."""
    from footfall.edge.daemon import Daemon

    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("the soak needs mosquitto (apt-get install mosquitto)")
    analyzer = FaceAnalyzer.from_config(config)
    bank = SpriteBank(faces_dir, analyzer)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "clips").mkdir()
        scenario = build_scenario(bank, tmp / "clips", config.dedup.window, size="small")
        broker = LocalBroker(tmp, binary)
        counter = EventCounter(broker.port)
        try:
            run_config = config.model_copy(update={
                "store_id": STORE, "timezone": STORE_TZ,
                "mqtt": config.mqtt.model_copy(update={"url": broker.url, "username": None, "password": None,
                                                       "client_id": None}),
                "storage": config.storage.model_copy(update={"dir": tmp / "state"})})
            started = time.monotonic()

            warm: dict[str, float] = {}

            def report(loops: int) -> None:
                if loops == 1:  # models, arenas and caches are allocated by now
                    warm["rss"] = rss_mb()
                if progress:
                    print(f"soak: loop {loops} done after {time.monotonic() - started:.0f} s, "
                          f"rss {rss_mb()} MB", file=sys.stderr)

            replay = LoopingReplay(scenario, started + minutes * 60, on_loop=report)
            daemon = Daemon(run_config, once=True, analyzer=analyzer, replay=[replay])  # type: ignore[list-item]
            for person, vectors in enrolment(scenario, analyzer):
                daemon.store.gallery.enroll(person, vectors)
            start = {"rss": rss_mb(), "threads": threading.active_count(), "fds": open_fds()}
            depth = {"max": 0}
            done = threading.Event()

            def sample() -> None:
                while not done.wait(SAMPLE_EVERY_S):
                    try:
                        depth["max"] = max(depth["max"], daemon.store.outbox.stats().pending)
                    except RuntimeError:
                        return  # the outbox was closed at shutdown

            sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
            sampler.start()
            code = daemon.run()
            done.set()
            sampler.join(5)
            end = {"rss": rss_mb(), "threads": threading.active_count(), "fds": open_fds()}
            sent = outbox_ids(tmp / "state" / "outbox.db")
            deadline = time.monotonic() + 10
            while not sent <= counter.received() and time.monotonic() < deadline:
                time.sleep(0.1)
            received = counter.received()
        finally:
            counter.close()
            broker.stop()
    return {
        "minutes": round((time.monotonic() - started) / 60, 2),
        "loops": replay.loops,
        "exit_code": code,
        "decisions": daemon.decisions,
        # The first loop is the warm-up (sessions, arenas, buffers are allocated by the first
        # inferences); the soak's RSS runs from its end, which is what a leak would show.
        "rss_mb_cold": start["rss"],
        "rss_mb_start": warm.get("rss", start["rss"]), "rss_mb_end": end["rss"],
        "rss_growth_pct": round(100 * (end["rss"] - warm.get("rss", start["rss"])) / warm.get("rss", start["rss"]), 2),
        "events_sent": len(sent), "events_received": len(sent & received), "lost": len(sent - received),
        "max_outbox_depth": depth["max"],
        "threads_start": start["threads"], "threads_end": end["threads"],
        "fds_start": start["fds"], "fds_end": end["fds"],
    }


def format_table(r: dict) -> str:
    rows = [("minutes", r["minutes"]), ("loops of the store day", r["loops"]), ("decisions", r["decisions"]),
            ("events sent (outbox rows)", r["events_sent"]), ("events received", r["events_received"]),
            ("lost", r["lost"]), ("largest outbox backlog", r["max_outbox_depth"]),
            ("RSS MB before warm-up", r["rss_mb_cold"]),
            ("RSS MB after the first loop -> end", f"{r['rss_mb_start']} -> {r['rss_mb_end']} ({r['rss_growth_pct']} %)"),
            ("threads start -> end", f"{r['threads_start']} -> {r['threads_end']}"),
            ("open fds start -> end", f"{r['fds_start']} -> {r['fds_end']}")]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)
