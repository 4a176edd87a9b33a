"""`footfall demo`: a store day replayed through the whole daemon, zero configuration.

It starts Mosquitto on loopback (when installed), runs the daemon on generated entrance clips,
and prints the visits and alerts a subscriber receives, then the counts against the truth. The
CRM's side (bookings, a no-show, a guide's ack) is played by `demo_crm.py`. The console, the
dashboard, the broker and PostgreSQL then stay up until Enter in a terminal, or `--keep` seconds.

The package ships no face photos (their rights belong to their owners). The demo builds its
entrance clips from a labelled photo set: $FOOTFALL_SAMPLE_FACES, or `shared/data/faces`
beside the working directory or the checkout. Clips and state live in a temporary directory
that is deleted at the end.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import select
import sys
import tempfile
import threading
import time
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from footfall.config.schema import CameraConfig, parse_config
from footfall.console.server import Console
from footfall.edge.daemon import Daemon
from footfall.edge.decisions import Decision
from footfall.edge.pipeline import Pipeline, replay
from footfall.edge.store import Store
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.sync import events
from footfall.sync.mqtt_client import local_config, make_client
from footfall.tooling.demo_crm import CrmDay, guide_ack, import_crm_day, plan_crm_day
from footfall.tooling.local_broker import LocalBroker, mosquitto_binary
from footfall.tooling.scenario import STORE_TZ, SpriteBank, build_scenario, enrolment, expected_counts
from footfall.web.passwords import hash_password

if TYPE_CHECKING:
    from footfall.tooling.local_hq import LocalHq

CHECKOUT = Path(__file__).resolve().parents[1]


def sample_faces_dir() -> Path | None:
    """Where labelled sample photos are, if anywhere."""
    env = os.environ.get("FOOTFALL_SAMPLE_FACES")
    candidates = [Path(env)] if env else []
    candidates += [base / "shared" / "data" / "faces" for base in (Path.cwd().parent, CHECKOUT.parent)]
    return next((c for c in candidates if c.is_dir()), None)


def describe(d: Decision) -> str:
    """One line for a decision, as a store manager would read it."""
    when = d.passage.first_seen.strftime("%m-%d %H:%M:%S")
    name = d.person.name if d.person else "?"
    if d.kind == "staff":
        return f"{when}  {d.passage.camera_id}  staff ({name}): not counted"
    tier = d.person.tier if d.person else None
    who = f"member {d.member_id} ({tier})" if d.member_id else f"visitor {(d.visitor_id or '')[:8]}"
    kind = "new visit" if d.kind == "visit" else "re-entry "
    began = d.visit_started or d.passage.first_seen
    since = "" if d.kind == "visit" else f", visit began {began.astimezone(d.passage.first_seen.tzinfo):%H:%M}"
    return f"{when}  {d.passage.camera_id}  {kind}  {who}{since}"


def run_demo(keep: float | None = None) -> int:
    """Replay a generated store day through the daemon and a broker on loopback; print what guides
    and HQ would receive, then a summary against the ground truth.

    The console, the dashboard, the broker and PostgreSQL then stay up: in a terminal until Enter
    (or Ctrl-C), at most `keep` seconds when given; without a terminal `keep` seconds (default 0).
    """
    faces_dir = sample_faces_dir()
    if faces_dir is None:
        print("footfall demo needs labelled photos to build its entrance clips: "
              "set FOOTFALL_SAMPLE_FACES to a folder of <identity>/<photo> images")
        return 1
    logging.getLogger("footfall").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="footfall-demo-") as tmp:
        binary = mosquitto_binary()
        broker = LocalBroker(Path(tmp), binary) if binary else None
        config = parse_config({"store_id": "demo-store", "timezone": STORE_TZ, "storage": {"dir": f"{tmp}/state"},
                               "mqtt": {"url": broker.url if broker else "mqtt://127.0.0.1:1"}})
        try:
            return _demo(config, faces_dir, Path(tmp), broker, keep)
        finally:
            if broker:
                broker.stop()


def _demo(config, faces_dir: Path, tmp: Path, broker: LocalBroker | None, keep: float | None) -> int:
    analyzer = FaceAnalyzer.from_config(config)
    pack = analyzer.pack
    print(f"footfall demo: {pack.detector.file} + {pack.recognizer.file}; today's store day in {STORE_TZ}")
    print("rendering entrance clips from the labelled photos ...")
    # Today in the store's time zone, ending before midnight: the console's TODAY panel then shows
    # the very day the terminal summary counts.
    today = datetime.now(ZoneInfo(STORE_TZ)).date()
    bank = SpriteBank(faces_dir, analyzer)
    scenario = build_scenario(bank, tmp, config.dedup.window, size="small", day=today, past_midnight=False)
    # The rendered cameras' entry lines and door, as an installer would configure them.
    config = config.model_copy(update={"cameras": [CameraConfig.model_validate(c) for c in scenario.cameras()]})
    people = list(enrolment(scenario, analyzer))
    crm = plan_crm_day(scenario, bank)
    _enrol(config, analyzer, people, crm)
    for person, _ in people:
        print(f"enrolled {person.role} {person.person_id}")
    if crm.absent is not None:
        print(f"imported from the CRM: member {crm.absent['member_id']} ({crm.absent['tier']}, with a profile)")
    for b in crm.bookings:
        print(f"imported booking {b.appointment_id}: {b.member_id} at {b.scheduled_at:%H:%M} "
              f"({b.channel}, advisor {b.advisor})")
    if broker is None:
        print("mosquitto is not installed: decisions are printed, nothing is published")
        return _offline(config, analyzer, scenario)
    print(f"broker: mosquitto on {broker.url}; printing what subscribers receive")
    password = secrets.token_urlsafe(8)
    console_config = config.model_copy(update={"console": config.console.model_copy(
        update={"password_hash": hash_password(password), "language": "en"})})
    console = Console(console_config, listen="127.0.0.1:0").start()
    hq = _start_hq(broker, config)
    try:
        return _with_console(config, analyzer, scenario, broker, console, password, people, crm, hq, keep)
    finally:
        console.stop()
        if hq is not None:
            hq.stop()


def _enrol(config, analyzer, people, crm: CrmDay) -> None:
    """The scenario's members and staff, then the CRM's exports (a member, the bookings), written
    beside the store's state."""
    with Store(config, analyzer.pack.spec, command="footfall demo") as store:
        for person, vectors in people:
            store.enroll(person, vectors)
    import_crm_day(config, crm, config.storage.dir.parent / f"crm-{config.store_id}")


HQ_STORES = ("demo-store-2", "demo-store-3")  # two more stores replay the same day into head office


def _start_hq(broker: LocalBroker, config) -> LocalHq | None:
    """Head office on this machine (PostgreSQL, a collector, the dashboard) when PostgreSQL is installed."""
    try:
        from footfall.tooling.local_hq import LocalHq, hq_unavailable
    except ModuleNotFoundError as exc:  # psycopg: a store box's install has no head office
        print(f"HQ dashboard: not started ({exc.name} is not installed: pip install 'footfall[hq]')")
        return None
    reason = hq_unavailable()
    if reason:
        print(f"HQ dashboard: not started ({reason})")
        return None
    try:
        return LocalHq(broker.url, timezones={s: STORE_TZ for s in (config.store_id, *HQ_STORES)}).start()
    except (OSError, RuntimeError) as exc:
        print(f"HQ dashboard: not started ({exc})")
        return None


def _with_console(config, analyzer, scenario, broker: LocalBroker, console: Console, password: str,
                  people, crm: CrmDay, hq: LocalHq | None, keep: float | None) -> int:
    print(f"guide console: {console.url}  (password {password}; any guide name)")
    if hq is not None:
        print(f"HQ dashboard:  {hq.url}  (password {hq.password}; any name); "
              f"{len(HQ_STORES) + 1} stores replay the day into it")
    if sys.stdin.isatty():
        input("open the console in a browser, then press Enter to start the store day ... ")
    print()
    watcher = Watcher(broker.port, config.mqtt.topic_prefix, config.store_id)
    try:
        Daemon(config, once=True, analyzer=analyzer, replay=scenario.sources()).run()
        watcher.wait_stopped(15)
        watcher.take_first_arrival()
    finally:
        watcher.close()
    counts = watcher.tally
    truth = expected_counts(scenario.walks, scenario.window, scenario.tz)
    print()
    print(f"summary of {len(scenario.clips)} clips, {len(scenario.walks)} walk-ins "
          f"(from the visit events received):")
    print(f"  {'':<18}{'counted':>8}{'expected':>10}")
    for label, key in (("visits", "visits"), ("re-entries", "reentries"), ("member visits", "member_visits"),
                       ("unidentified", "unidentified"), ("exits", "exits")):
        print(f"  {label:<18}{counts.get(key, 0):>8}{truth.get(key, 0):>10}")
    for label, got, expected in (("arrival alerts", len(watcher.arrivals), truth.get("member_visits", 0)),
                                 ("appointment alerts", watcher.appointments, crm.arrivals),
                                 ("no-show alerts", watcher.no_shows, crm.no_shows),
                                 ("guide acks", watcher.acks, min(1, len(watcher.arrivals)))):
        print(f"  {label:<18}{got:>8}{expected:>10}")
    if hq is not None:
        received = {k: counts.get(k, 0) for k in ("visits", "reentries", "member_visits")}
        deadline = time.monotonic() + 10
        ingested = hq.totals()
        while any(ingested[k] != v for k, v in received.items()) and time.monotonic() < deadline:
            time.sleep(0.2)  # the collector commits in batches
            ingested = hq.totals()
        refused = f", {ingested['refused']} message(s) refused (see ingest_errors)" if ingested["refused"] else ""
        print(f"  HQ (PostgreSQL): {ingested['visits']} visits, {ingested['reentries']} re-entries, "
              f"{ingested['member_visits']} member visits{refused}")
        for store_id in HQ_STORES:
            print(f"store {store_id}: replaying the same day ...", flush=True)
            other = config.model_copy(update={"store_id": store_id, "storage": config.storage.model_copy(
                update={"dir": config.storage.dir.parent / f"state-{store_id}"})})
            _enrol(other, analyzer, people, crm)
            Daemon(other, once=True, analyzer=analyzer, replay=scenario.sources()).run()
        hq.wait_idle()
        print("\nHQ, by store:")
        print(f"  {'store':<14}{'visits':>8}{'re-entries':>12}{'members':>9}")
        for row in hq.by_store():
            print(f"  {row['store_id']:<14}{row['visits']:>8}{row['reentries']:>12}{row['member_visits']:>9}")
        print(_hq_appointments(hq, scenario.clips[0][0].start_time.date(), len(HQ_STORES) + 1, crm))
    where = console.url + (f" and the HQ dashboard at {hq.url}" if hq is not None else "")
    keep_up(f"the guide console stays at {where}", keep)
    return 0


def _hq_appointments(hq: LocalHq, day: date, stores: int, crm: CrmDay) -> str:
    """One line: the chain's bookings, arrivals and no-shows of `day` and the guides' answers, as HQ
    holds them once the collector has caught up (its dashboard's appointment and response views)."""
    import psycopg

    from footfall.hq.read import conversion_by_channel, response_times

    assert hq.postgres is not None, "HQ is not started"
    expected = (stores * len(crm.bookings), stores * crm.no_shows)
    deadline = time.monotonic() + 10
    while True:  # the last store's alerts may still be on their way
        with psycopg.connect(hq.postgres.url) as conn:
            booked = conversion_by_channel(conn, day, day)
            answered = response_times(conn, day, day)
        got = (sum(r["booked"] for r in booked), sum(r["no_show"] for r in booked))
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    arrived, alerts = sum(r["arrived"] for r in booked), sum(r["alerts"] for r in answered)
    acked = sum(r["acked"] for r in answered)
    medians = [r["p50_s"] for r in answered if r["p50_s"] is not None]
    median = f" (median {medians[0]:.0f} s)" if len(medians) == 1 else ""
    return (f"\nHQ appointments, all stores: {got[0]} booked, {arrived} arrived, {got[1]} no-shows; "
            f"guides answered {acked} of {alerts} arrival alerts{median}")


def keep_up(servers: str, keep: float | None) -> None:
    """Hold the servers up: in a terminal until Enter or Ctrl-C (at most `keep` seconds when given),
    else for `keep` seconds (default 0: scripts and CI end at once)."""
    terminal = sys.stdin.isatty()
    if not terminal and not keep:
        return
    try:
        if terminal and keep is None:
            input(f"\n{servers}; press Enter to end the demo ... ")
        elif terminal:
            print(f"\n{servers}; press Enter to end the demo (it ends by itself in {keep:g} s) ... ", flush=True)
            if select.select([sys.stdin], [], [], keep)[0]:
                sys.stdin.readline()
        else:
            print(f"\n{servers} for {keep:g} s (Ctrl-C ends the demo) ...", flush=True)
            time.sleep(keep or 0)
    except (KeyboardInterrupt, EOFError):
        print()
    print("demo ended: console, dashboard, broker and database stopped", flush=True)


class Watcher:
    """A subscriber that prints visits and alerts as they arrive and tallies them."""

    def __init__(self, port: int, prefix: str, store_id: str) -> None:
        """Watch every topic of store `store_id` under `prefix` (mqtt.topic_prefix)."""
        self.prefix, self.store_id = prefix, store_id
        self.tally = {"visits": 0, "reentries": 0, "member_visits": 0, "unidentified": 0, "exits": 0}
        self.arrivals: list[events.ArrivalAlert] = []  # received, in order
        self.appointments = self.no_shows = self.acks = 0
        self._acked = threading.Event()
        self._stopped = threading.Event()
        self.client = make_client(local_config(port), "footfall-demo-watcher", protocol="5")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(events.topic_filter(prefix, "#", store_id), qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        name = events.store_topic_name(self.prefix, self.store_id, message.topic)
        kind = events.PAYLOADS.get(name) if name is not None else None
        if kind is None:
            return
        try:
            event = kind.from_json(events.decode_object(message.payload))
        except events.PayloadError:
            return
        line = self._take(event)
        if line:
            print(line, flush=True)

    @functools.singledispatchmethod
    def _take(self, event: events.Payload) -> str | None:
        """Tally a message; the line to print for it, if any."""
        return None

    @_take.register
    def _visit(self, v: events.VisitEvent) -> str:
        self.tally["visits" if v.kind == "visit" else "reentries"] += 1
        self.tally["member_visits"] += v.kind == "visit" and v.member_id is not None
        self.tally["unidentified"] += not v.identified
        who = (f"member {v.member_id}" if v.member_id else f"visitor {v.visitor_id[:8]}"
               + ("" if v.identified else " (no face seen)"))
        return f"{v.first_seen_ts:%m-%d %H:%M:%S}  {v.kind:<8} {who}"

    @_take.register
    def _arrival(self, a: events.ArrivalAlert) -> str:
        self.arrivals.append(a)
        return f"{a.ts:%m-%d %H:%M:%S}  ARRIVAL  {a.name} ({a.tier}) -> guides' devices"

    @_take.register
    def _appointment(self, a: events.AppointmentAlert) -> str:
        self.appointments += 1
        early = a.minutes_early
        when = f"{early} min early" if early >= 0 else f"{-early} min late"
        return (f"{a.ts:%m-%d %H:%M:%S}  BOOKED   {a.member_id} for {a.scheduled_at:%H:%M} "
                f"({a.channel}, advisor {a.advisor}): {when}")

    @_take.register
    def _no_show(self, n: events.NoShowAlert) -> str:
        self.no_shows += 1
        return (f"{n.ts:%m-%d %H:%M:%S}  NO-SHOW  {n.member_id} booked for "
                f"{n.scheduled_at:%H:%M}, not here {n.grace_minutes} min later -> follow-up")

    @_take.register
    def _ack(self, a: events.Ack) -> str:
        self.acks += 1
        self._acked.set()
        return f"{a.ts:%m-%d %H:%M:%S}  ACK      {a.guide} takes care of the arrival"

    @_take.register
    def _counts(self, c: events.Counts) -> None:
        self.tally["exits"] = c.exits  # the day's running count, retained

    @_take.register
    def _status(self, s: events.Status) -> None:
        if s.state == "stopped":
            self._stopped.set()

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    def take_first_arrival(self, timeout: float = 10) -> bool:
        """A guide takes the day's first arrival: its ack, published as the console does, is back
        from the broker (and seen by the console and HQ) before this returns True."""
        if not self.arrivals:
            return False
        ack = guide_ack(self.arrivals[0])
        topic = events.topic(self.prefix, self.store_id, ack.TOPIC)
        self.client.publish(topic, json.dumps(ack.to_json()), qos=1).wait_for_publish(timeout)
        return self._acked.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _offline(config, analyzer, scenario) -> int:
    with Store(config, analyzer.pack.spec, command="footfall demo", media_clock=True) as store:
        decisions = replay(Pipeline(config, analyzer), store, scenario.sources())
    for d in decisions:
        if d.kind != "same_entry":
            print(describe(d))
    truth = expected_counts(scenario.walks, scenario.window, scenario.tz)
    print(f"\nsummary: {sum(d.kind == 'visit' for d in decisions)} visits (expected {truth.get('visits', 0)}), "
          f"{sum(d.kind == 'reentry' for d in decisions)} re-entries (expected {truth.get('reentries', 0)})")
    return 0
