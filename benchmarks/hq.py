"""`footfall bench hq`: a chain's busy day through Mosquitto into one, then two, HQ collectors.

Simulated stores (publisher processes, one MQTT 5 connection each, QoS 1) publish every
store's day of visits, member arrivals and guides' acks as fast as the broker takes them,
through a local Mosquitto, into `footfall hq collect` processes writing to a local
PostgreSQL (durable: fsync and synchronous commit on, as in production). Phase one runs one
collector; phase two runs two in the same shared-subscription group and SIGKILLs one of them
mid-run, then starts it again with the same client id (its persistent session gets back what
it had not acknowledged). Phases three and four (one, then two collectors) measure the
collectors alone: their sessions wait on the broker while the whole day is published, then
they drain it (events/s from their first commit to the last; no latency figure).

Figures per phase: events, events/s (first publish to last commit), latency publish -> commit
(p50, p99; commit time from PostgreSQL's track_commit_timestamp), lost (published, never
stored), duplicated (stored or counted more than once: rows by event id, and the hourly
roll-up against the rows), and the CPU seconds each part used, the largest of which is the
bottleneck. Both clocks are this machine's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from footfall.sync import events
from footfall.tooling.local_broker import LocalBroker, mosquitto_binary
from footfall.tooling.local_postgres import LocalPostgres, unavailable_reason

TZ = timezone(timedelta(hours=8))
PUBLISHERS = 2
ARRIVAL_SHARE = 0.1  # of visits made by members: an arrival alert, and a guide's ack


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def day_of_events(store: str, visits: int, day: datetime, rng: random.Random) -> list[tuple[str, dict]]:
    """One store's day: visits (a fifth re-entries) from 10:00 to 22:00, arrivals and their acks."""
    out: list[tuple[str, dict]] = []
    span = 12 * 3600
    for i in range(visits):
        ts = day + timedelta(hours=10, seconds=span * (i + rng.random()) / visits)
        stamp = ts.isoformat(timespec="milliseconds")
        member = rng.random() < ARRIVAL_SHARE
        event_id = str(uuid.uuid4())
        out.append((events.topic("footfall", store, events.VISITS), {
            "event_id": event_id, "store_id": store, "ts": stamp, "kind": "reentry" if rng.random() < 0.2 else "visit",
            "visitor_id": uuid.uuid4().hex[:16], "member_id": f"m-{i}" if member else None,
            "role": "member" if member else "visitor", "camera_id": "door-1", "first_seen_ts": stamp,
            "identified": True}))
        if member:
            out.append((events.topic("footfall", store, events.ALERT_ARRIVAL), {
                "event_id": str(uuid.uuid4()), "store_id": store, "ts": stamp, "member_id": f"m-{i}",
                "name": "member", "tier": "gold", "visit_event_id": event_id, "appointment": None}))
            acked = (ts + timedelta(seconds=rng.uniform(5, 90))).isoformat(timespec="milliseconds")
            out.append((events.topic("footfall", store, events.ALERT_ACK), {
                "event_id": str(uuid.uuid4()), "store_id": store, "ts": acked, "visit_event_id": event_id,
                "guide": "g1"}))
    return out


def publish_main(port: int, stores: list[str], visits: int, day_iso: str, seed: int, out_path: str) -> None:
    """A publisher process: every event of its stores, interleaved store by store, then {event_id: sent_at}."""
    from footfall.sync.mqtt_client import local_config, make_client

    rng = random.Random(seed)
    day = datetime.fromisoformat(day_iso)
    per_store = [day_of_events(s, visits, day, rng) for s in stores]
    sent: dict[str, float] = {}
    acked = [0]
    client = make_client(local_config(port), f"bench-pub-{seed}", protocol="5")
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    longest = max(len(e) for e in per_store)
    total = 0
    for i in range(longest):
        for store_events in per_store:
            if i < len(store_events):
                topic, body = store_events[i]
                payload = json.dumps(body)
                sent[body["event_id"]] = time.time()
                client.publish(topic, payload, qos=1)
                total += 1
        while total - acked[0] > 5000:  # keep paho's own queue bounded
            time.sleep(0.005)
    deadline = time.monotonic() + 300
    while acked[0] < total and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    Path(out_path).write_text(json.dumps(sent))


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


class _Cpu:
    """CPU seconds used by named groups of processes, sampled while they run (dead ones keep their last figure)."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], float] = {}

    def sample(self, groups: dict[str, list[int]]) -> None:
        for name, pids in groups.items():
            for pid in pids:
                value = _cpu_seconds(pid)
                if value:
                    self.last[(name, pid)] = value

    def totals(self, base: dict[tuple[str, int], float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, pid), value in self.last.items():
            out[name] = out.get(name, 0.0) + value - base.get((name, pid), 0.0)
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


_STORED = "SELECT (SELECT count(*) FROM visits) + (SELECT count(*) FROM alerts) + (SELECT count(*) FROM acks)"


def _scalar(conn: psycopg.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


class _Collectors:
    """The phase's `footfall hq collect` processes, one config and log file each, in one group."""

    def __init__(self, workdir: Path, db_url: str, broker_url: str, group: str, count: int) -> None:
        self.configs: list[Path] = []
        self.logs: list[Path] = []
        for i in range(count):
            path = workdir / f"hq-{group}-{i}.toml"
            path.write_text(f'[database]\nurl = "{db_url}"\n[mqtt]\nurl = "{broker_url}"\n'
                            f'[collector]\ngroup = "{group}"\nclient_id = "{group}-{i}"\nbatch_size = 1000\n'
                            f'batch_interval = "0.1s"\nreconcile = false\nmax_future = "48h"\n')
            self.configs.append(path)
            self.logs.append(workdir / f"{group}-{i}.log")
        self.procs = [self._start(i) for i in range(count)]

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        with open(self.logs[i], "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "footfall", "hq", "collect", "--config",
                                     str(self.configs[i])], stdout=out, stderr=subprocess.STDOUT)

    def wait_subscribed(self) -> None:
        """Until every collector's log says it is connected (and subscribed)."""
        deadline = time.monotonic() + 60
        while not all(log.exists() and "connected to" in log.read_text(errors="replace") for log in self.logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a collector did not start:\n"
                                   + "\n".join(log.read_text() for log in self.logs if log.exists()))
            time.sleep(0.1)
        time.sleep(0.5)

    def start_again(self) -> None:
        """Start every stopped collector again: their sessions kept what queued meanwhile."""
        self.procs = [self._start(i) for i in range(len(self.configs))]

    def kill_last(self) -> None:
        """SIGKILL the last collector, and a second later start it again with the same client id."""
        self.procs[-1].send_signal(signal.SIGKILL)
        self.procs[-1].wait()
        time.sleep(1.0)
        self.procs.append(self._start(len(self.configs) - 1))

    def stop(self) -> None:
        """SIGTERM the running collectors and wait for each (30 s, then SIGKILL)."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    def redelivered(self) -> int:
        """The duplicates the collectors ignored, from their last log lines."""
        total = 0
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if "stopped:" in line and "duplicates" in line:
                    total += int(line.split(" rows, ")[1].split()[0])
        return total


def _publishers(workdir: Path, broker: LocalBroker, group: str, stores: int, visits: int,
                seed: int) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """Start the publisher processes on yesterday's day (store time); returns them and their output files."""
    day = (datetime.now(UTC).astimezone(TZ) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    names = [f"store-{i:05d}" for i in range(stores)]
    outs = [workdir / f"sent-{group}-{k}.json" for k in range(PUBLISHERS)]
    pubs = [subprocess.Popen([sys.executable, "-m", "footfall.benchmarks.hq", "publish", str(broker.port),
                              ",".join(names[k::PUBLISHERS]), str(visits), day.isoformat(), str(k + seed),
                              str(outs[k])]) for k in range(PUBLISHERS)]
    return pubs, outs


def _commit_times(conn: psycopg.Connection) -> dict[str, float]:
    """Event id -> when the row holding it was committed (epoch seconds)."""
    commits: dict[str, float] = {}
    for table in ("visits", "alerts", "acks"):
        for event_id, committed in conn.execute(
                f"SELECT event_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM {table}"):
            commits[event_id] = float(committed)
    return commits


def _duplicated(conn: psycopg.Connection, sent: int) -> tuple[int, int]:
    """(rows stored, rows or roll-up counts stored more than once)."""
    rows = _scalar(conn, _STORED)
    distinct = _scalar(conn, "SELECT (SELECT count(DISTINCT (store_id, event_id)) FROM visits) + "
                             "(SELECT count(DISTINCT (store_id, event_id)) FROM alerts) + "
                             "(SELECT count(DISTINCT (store_id, event_id)) FROM acks)")
    rolled = _scalar(conn, "SELECT coalesce(sum(visits + reentries), 0) FROM hourly")
    visit_rows = _scalar(conn, "SELECT count(*) FROM visits")
    return rows, (rows - distinct) + (rolled - visit_rows) + max(0, rows - sent)


def run_phase(workdir: Path, pg: LocalPostgres, db_url: str, broker: LocalBroker, *, collectors: int, stores: int,
              visits: int, kill: bool, progress: bool, drain: bool = False) -> dict[str, Any]:
    """One phase on the fresh database `db_url` (the collectors apply the schema); returns its figures."""
    group = f"bench{collectors}{'d' if drain else ''}"
    fleet = _Collectors(workdir, db_url, broker.url, group, collectors)
    conn = psycopg.connect(db_url, autocommit=True)
    fleet.wait_subscribed()
    pubs, outs = _publishers(workdir, broker, group, stores, visits, seed=collectors * 100)
    cpu = _Cpu()
    pg_pid = pg.postmaster_pid() or 0

    def groups() -> dict[str, list[int]]:
        return {"collectors": [p.pid for p in fleet.procs], "mosquitto": [broker.pid],
                "postgresql": [pg_pid, *_children(pg_pid)], "publishers": [p.pid for p in pubs]}

    cpu.sample(groups())
    base = dict(cpu.last)
    expected_rough = stores * visits * (1 + 2 * ARRIVAL_SHARE)
    killed_at: int | None = None
    if drain:  # the collectors' sessions stay on the broker while they are away; the day queues there
        fleet.stop()
        for p in pubs:
            p.wait()
        fleet.start_again()

    def watch() -> None:
        """Sample the CPU; with `kill`, SIGKILL the last collector once 40 % of the day is stored
        (the stores may finish publishing before that), and start it again."""
        nonlocal killed_at
        cpu.sample(groups())
        if not kill or killed_at is not None:
            return
        stored = _scalar(conn, _STORED)
        if stored >= 0.4 * expected_rough:
            killed_at = stored
            if progress:
                print(f"  killed collector {group}-{collectors - 1} at {stored} rows", file=sys.stderr)
            fleet.kill_last()

    while any(p.poll() is None for p in pubs):
        watch()
        time.sleep(0.05)
    sent: dict[str, float] = {}
    for out in outs:
        sent.update(json.loads(out.read_text()))
    wait_until = time.monotonic() + 300
    while time.monotonic() < wait_until:
        watch()
        if _scalar(conn, _STORED) >= len(sent):
            break
        time.sleep(0.05)
    time.sleep(1.0)  # anything redelivered late would show as a duplicate now
    cpu.sample(groups())
    commits = _commit_times(conn)
    rows, duplicated = _duplicated(conn, len(sent))
    errors = _scalar(conn, "SELECT count(*) FROM ingest_errors")
    conn.close()
    fleet.stop()
    latencies = [(commits[e] - t) * 1000 for e, t in sent.items() if e in commits]
    # Draining, the clock starts at the first commit: the collectors' own start-up is not ingest.
    first = min(commits.values()) if drain and commits else min(sent.values())
    last = max(commits.values()) if commits else time.time()
    used = cpu.totals(base)
    return {
        "collectors": collectors, "events": len(sent), "stored": rows, "seconds": round(last - first, 2),
        "events_per_s": round(len(sent) / (last - first), 1) if last > first else 0.0,
        "latency_ms_p50": None if drain else round(_percentile(latencies, 0.5), 1),
        "latency_ms_p99": None if drain else round(_percentile(latencies, 0.99), 1),
        "lost": sum(1 for e in sent if e not in commits), "duplicated": duplicated,
        "ingest_errors": errors, "redelivered_and_ignored": fleet.redelivered(),
        "killed_collector_at_rows": killed_at, "cpu_s": used,
        "bottleneck": next(iter(used), "unknown"),
    }


def bench_hq(stores: int = 500, visits: int = 60, progress: bool = True) -> dict[str, Any]:
    """Both phases; the combined figures of the run."""
    reason = unavailable_reason()
    binary = mosquitto_binary()
    if reason or binary is None:
        raise FileNotFoundError(reason or "mosquitto is not installed (apt-get install mosquitto)")
    if stores < 1 or visits < 1:
        raise ValueError("--stores and --visits must be >= 1")
    workdir = Path(tempfile.mkdtemp(prefix="footfall-bench-hq-"))
    pg = LocalPostgres(durable=True, settings={"track_commit_timestamp": "on", "shared_buffers": "128MB"}).start()
    broker = LocalBroker(workdir, binary, extra_conf="max_queued_messages 0\nmax_inflight_messages 0\n")
    try:
        phases = []
        for collectors, kill, drain in ((1, False, False), (2, True, False), (1, False, True), (2, False, True)):
            if progress:
                print(f"phase: {collectors} collector(s){', one killed mid-run' if kill else ''}"
                      f"{', draining a queued day' if drain else ''} ...", file=sys.stderr)
            with pg.database(migrated=False) as db_url:
                phases.append(run_phase(workdir, pg, db_url, broker, collectors=collectors, stores=stores,
                                        visits=visits, kill=kill, progress=progress, drain=drain))
    finally:
        broker.stop()
        pg.stop()
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    one, two, drain_one, drain_two = phases
    return {
        "stores": stores, "visits_per_store": visits,
        "events": sum(p["events"] for p in phases),
        "events_per_s": two["events_per_s"],
        "latency_ms_p50": two["latency_ms_p50"], "latency_ms_p99": two["latency_ms_p99"],
        "lost": sum(p["lost"] for p in phases), "duplicated": sum(p["duplicated"] for p in phases),
        "one_collector": one, "two_collectors": two,
        "drain_one_collector": drain_one, "drain_two_collectors": drain_two,
        "drain_two_vs_one": (round(drain_two["events_per_s"] / drain_one["events_per_s"], 2)
                             if drain_one["events_per_s"] else None),
        "two_vs_one": round(two["events_per_s"] / one["events_per_s"], 2) if one["events_per_s"] else None,
        "bottleneck": two["bottleneck"],
    }


def format_table(result: dict[str, Any]) -> str:
    """A human-readable summary."""
    lines = [f"{result['stores']} stores x {result['visits_per_store']} visits (+ arrivals and acks)"]
    for key in ("one_collector", "two_collectors", "drain_one_collector", "drain_two_collectors"):
        p = result[key]
        latency = ("" if p["latency_ms_p50"] is None else
                   f"p50 {p['latency_ms_p50']:.0f} ms  p99 {p['latency_ms_p99']:.0f} ms  ")
        lines.append(f"{key:<21} {p['events']:>8} events  {p['events_per_s']:>9.1f} events/s  {latency}"
                     f"lost {p['lost']}  duplicated {p['duplicated']}  cpu {p['cpu_s']}")
    lines.append(f"two collectors / one: {result['two_vs_one']}x live, {result['drain_two_vs_one'] or 'n/a'}x draining; "
                 f"bottleneck: {result['bottleneck']}")
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) == 8 and sys.argv[1] == "publish":
    publish_main(int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7])
