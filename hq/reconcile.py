"""Reconciliation: each store's own hourly counts (counts/get) against what HQ ingested.

HQ publishes, as its own broker user (`reconcile.mqtt_username`, never the collector's), one
`counts/get` per store day (`from` = the day's local midnight, `to` = the
next, `by` = "hour") with an MQTT 5 Response Topic under the store's `replies/` branch (the
one branch the broker ACL lets a box publish answers on) and Correlation Data. Each answer's
hourly buckets are summed per store-local hour and compared with HQ's `hourly` roll-up;
every check is recorded in `reconcile_checks`, every differing hour in
`reconcile_differences`, and a store that does not answer within `reconcile.timeout` is
recorded as such. `compare` is the pure rule.

HQ's side of the comparison is what the count views show (`hourly_counts`). With `adopt`
(`footfall hq reconcile --adopt`) a gap is closed: for each differing hour where the box counts
at least what HQ's own events give (events lost on the way, never more at HQ), the box's figures
go to `adopted_hours`, marked with the check that adopted them, and the hour reads as the box
counted it. An hour where HQ holds more than the box is left as it is, and reported.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dtime
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg_pool import ConnectionPool

from footfall.config.hq import HqConfig, reconcile_mqtt
from footfall.hq.ingest import zone_of
from footfall.sync import events
from footfall.sync.mqtt_client import make_client, parse_broker_url

log = logging.getLogger(__name__)

_LOCK_KEY = 0x72656363  # one reconciler of a collector group at a time
MAX_REPLY_BYTES = 1024 * 1024


Figures = tuple[int, int, int, int]  # visits, re-entries, member visits, unidentified visits of one hour


@dataclass
class Result:
    """One store day checked: whether the box answered, the hours that differ (each with
    `adopted`: whether this check closed it), and the box's figures adopted, by hour."""

    store_id: str
    day: date
    answered: bool
    reason: str | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    adopted: dict[int, Figures] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        """Whether a problem is left: no answer, or an hour that still differs."""
        return not self.answered or any(not d.get("adopted") for d in self.differences)

    def to_json(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "day": self.day.isoformat(), "answered": self.answered,
                "reason": self.reason, "differences": self.differences, "adopted_hours": sorted(self.adopted)}


def day_range(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The store day as [local midnight, next local midnight)."""
    return (datetime.combine(day, dtime(0), tz),
            datetime.combine(day + timedelta(days=1), dtime(0), tz))


def read_answer(store: str, payload: bytes) -> events.CountsReply | str:
    """A store's counts/get answer (`events.CountsReply`), or why it cannot be used."""
    try:
        reply = events.CountsReply.from_json(events.decode_object(payload))
    except events.PayloadError as exc:
        return f"answer refused: {exc}"
    if reply.store_id != store:
        return f"answer names store {reply.store_id[:80]!r}"
    return reply


def store_hours(buckets: Iterable[events.CountsBucket | dict[str, Any]], day: date, tz: tzinfo) -> dict[int, Figures]:
    """A counts/get answer's hourly buckets (read, or as JSON) as {local hour: (visits, reentries,
    member_visits, unidentified)} of `day`."""
    hours: dict[int, Figures] = {}
    for b in buckets:
        bucket = b if isinstance(b, events.CountsBucket) else events.CountsBucket.from_json(b)
        start = bucket.start.astimezone(tz)
        if start.date() != day:
            continue
        old = hours.get(start.hour, (0, 0, 0, 0))
        hours[start.hour] = (old[0] + bucket.visits, old[1] + bucket.reentries, old[2] + bucket.member_visits,
                             old[3] + bucket.unidentified)
    return hours


def compare(hq: Mapping[int, tuple[int, ...]], store: Mapping[int, tuple[int, ...]]) -> list[dict[str, int]]:
    """The hours whose visits or re-entries (the first two figures) differ, in hour order."""
    out = []
    for hour in sorted(set(hq) | set(store)):
        h, s = hq.get(hour, (0, 0))[:2], store.get(hour, (0, 0))[:2]
        if h != s:
            out.append({"hour": hour, "hq_visits": h[0], "store_visits": s[0], "hq_reentries": h[1],
                        "store_reentries": s[1]})
    return out


def adoptable(own: tuple[int, ...], box: tuple[int, ...]) -> bool:
    """Whether adopting the box's figures closes an hour: the box counts at least HQ's own events
    (visits and re-entries), so the hour can read as the box counted it."""
    return box[0] >= own[0] and box[1] >= own[1]


def hour_ended(day: date, hour: int, tz: tzinfo, now: datetime) -> bool:
    """Whether the store hour `hour` of `day` is over at `now`: an hour still running is never
    adopted, as its adopted snapshot would hide the visits the box counts after it."""
    start = datetime.combine(day, dtime(hour), tz)
    return start + timedelta(hours=1) <= now


class Reconciler:
    """Asks stores for their counts over MQTT and records the comparison in PostgreSQL."""

    def __init__(self, config: HqConfig, pool: ConnectionPool) -> None:
        self.config = config
        self.pool = pool
        self.prefix = config.mqtt.topic_prefix

    def run(self, stores: list[str] | None = None, days: list[date] | None = None,
            now: datetime | None = None, *, adopt: bool = False) -> list[Result]:
        """Check `stores` (default: every store HQ knows) for `days` (default: today and yesterday,
        store time); with `adopt`, close the gaps the box's counts can close (see the module)."""
        now = now or datetime.now(UTC)
        with self.pool.connection() as conn:
            known: dict[str, str] = dict(conn.execute("SELECT store_id, timezone FROM stores").fetchall())
        zones = dict(known)
        zones.update(self.config.timezones)
        wanted = stores if stores is not None else sorted(known)
        asks: list[tuple[str, date, tzinfo]] = []
        for store in wanted:
            tz = zone_of(zones.get(store, "+00:00"))
            today = now.astimezone(tz).date()
            for day in days or [today - timedelta(days=1), today]:
                asks.append((store, day, tz))
        answers = self._ask(asks)
        results = []
        with self.pool.connection() as conn:
            for i, (store, day, tz) in enumerate(asks):
                answer = answers.get(i)
                if answer is None:
                    result = Result(store, day, False,
                                    f"no answer within {self.config.reconcile.timeout.total_seconds():g} s")
                elif isinstance(answer, str):
                    result = Result(store, day, False, answer[:300])
                else:
                    box = store_hours(answer.buckets, day, tz)
                    result = Result(store, day, True, None, compare(_hours(conn, "hourly_counts", store, day), box))
                    own = _hours(conn, "hourly", store, day)
                    for d in result.differences:
                        figures = box.get(d["hour"], (0, 0, 0, 0))
                        d["adopted"] = (adopt and store in known and hour_ended(day, d["hour"], tz, now)
                                        and adoptable(own.get(d["hour"], (0, 0)), figures))
                        if d["adopted"]:
                            result.adopted[d["hour"]] = figures
                results.append(result)
            record(conn, results)
        return results

    def _ask(self, asks: list[tuple[str, date, tzinfo]]) -> dict[int, events.CountsReply | str]:
        run_id = uuid.uuid4().hex[:12]
        answers: dict[int, events.CountsReply | str] = {}
        done = threading.Condition()
        subscribed = threading.Event()
        host, port, _ = parse_broker_url(self.config.mqtt.url)
        # Its own user and client id: under use_username_as_clientid the collector's user would
        # take the collector's connection, and the clean start below would discard its session.
        client_id = self.config.reconcile.mqtt_client_id or f"hq-reconcile-{run_id}"
        client = make_client(reconcile_mqtt(self.config), client_id, protocol="5")

        def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if not reason.is_failure:
                c.subscribe(events.topic_filter(self.prefix, events.reply_name(f"hq-{run_id}", "#")), qos=1)

        def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
            index = _correlation(message.properties)
            if index is None or not 0 <= index < len(asks) or len(message.payload) > MAX_REPLY_BYTES:
                return
            store = asks[index][0]
            name = events.store_topic_name(self.prefix, store, message.topic)
            if name is None or not events.is_reply(name):
                return  # an answer must come from the store's own branch (the ACL's guarantee)
            answer = read_answer(store, bytes(message.payload))
            with done:
                answers.setdefault(index, answer)
                done.notify_all()

        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = on_message
        client.connect_async(host, port, 30, clean_start=True)
        client.loop_start()
        try:
            timeout = self.config.reconcile.timeout.total_seconds()
            if not subscribed.wait(timeout):
                log.warning("reconcile: could not subscribe at %s within %g s", self.config.mqtt.url, timeout)
                return {}
            for i, (store, day, tz) in enumerate(asks):
                start, end = day_range(day, tz)
                props = Properties(PacketTypes.PUBLISH)
                props.ResponseTopic = events.topic(self.prefix, store, events.reply_name(f"hq-{run_id}", str(i)))
                props.CorrelationData = str(i).encode()
                props.MessageExpiryInterval = max(1, int(timeout))
                client.publish(events.topic(self.prefix, store, events.COUNTS_GET),
                               json.dumps({"from": start.isoformat(), "to": end.isoformat(), "by": "hour"}),
                               qos=1, properties=props)
            deadline = time.monotonic() + timeout
            with done:
                while len(answers) < len(asks) and time.monotonic() < deadline:
                    done.wait(deadline - time.monotonic())
                return dict(answers)
        finally:
            client.disconnect()
            client.loop_stop()

    def run_alone(self, stores: list[str] | None = None, days: list[date] | None = None, *,
                  adopt: bool = False) -> list[Result]:
        """`run` while holding the reconcilers' advisory lock, waiting for a round in progress to end:
        two reconcilers never share reconciliation's broker user (and so its client id) at once.
        psycopg.errors.LockNotAvailable when the lock is still held after twice `reconcile.timeout` + 30 s."""
        wait_ms = int((2 * self.config.reconcile.timeout + timedelta(seconds=30)).total_seconds() * 1000)
        with self.pool.connection() as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{wait_ms}ms",))
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            finally:
                conn.execute("RESET lock_timeout")
            try:
                return self.run(stores, days, adopt=adopt)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))

    def every(self, interval: timedelta, stop: threading.Event) -> None:
        """Reconcile every `interval` until `stop`; one reconciler of the database at a time (advisory lock)."""
        while not stop.wait(interval.total_seconds()):
            try:
                with self.pool.connection() as conn:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
                    if not row or not row[0]:
                        continue
                    try:
                        results = self.run()
                    finally:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
                bad = [r for r in results if not r.answered or r.differences]
                log.info("reconciled %d store day(s); %d with a problem", len(results), len(bad))
            except Exception as exc:  # the collector goes on; the next round tries again
                log.warning("reconcile failed: %s", exc)


def _correlation(properties: Any) -> int | None:
    """The index of the request an answer's MQTT 5 Correlation Data names, or None."""
    try:
        return int(bytes(getattr(properties, "CorrelationData", b"") or b"-1"))
    except (ValueError, TypeError):
        return None


_ADOPT = ("INSERT INTO adopted_hours (store_id, store_day, store_hour, visits, reentries, member_visits, "
          "unidentified, check_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
          "ON CONFLICT (store_id, store_day, store_hour) DO UPDATE SET visits = EXCLUDED.visits, "
          "reentries = EXCLUDED.reentries, member_visits = EXCLUDED.member_visits, "
          "unidentified = EXCLUDED.unidentified, check_id = EXCLUDED.check_id, adopted_at = now()")


def _hours(conn: psycopg.Connection, table: str, store: str, day: date) -> dict[int, tuple[int, int]]:
    """{hour: (visits, reentries)} of one store day: `hourly` (HQ's own events) or `hourly_counts`
    (what the count views show)."""
    return {h: (v, r) for h, v, r in conn.execute(
        f"SELECT store_hour, visits, reentries FROM {table} WHERE store_id = %s AND store_day = %s", (store, day))}


def record(conn: psycopg.Connection, results: list[Result]) -> None:
    """Store the checks, their differing hours and what they adopted, in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        for r in results:
            cur.execute("INSERT INTO reconcile_checks (store_id, store_day, answered, differences, reason) "
                        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                        (r.store_id, r.day, r.answered, len(r.differences), r.reason))
            row = cur.fetchone()
            assert row is not None
            if r.differences:
                cur.executemany("INSERT INTO reconcile_differences (check_id, store_hour, hq_visits, store_visits, "
                                "hq_reentries, store_reentries, adopted) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                [(row[0], d["hour"], d["hq_visits"], d["store_visits"], d["hq_reentries"],
                                  d["store_reentries"], bool(d.get("adopted"))) for d in r.differences])
            if r.adopted:
                cur.executemany(_ADOPT, [(r.store_id, r.day, hour, *figures, row[0])
                                         for hour, figures in sorted(r.adopted.items())])
