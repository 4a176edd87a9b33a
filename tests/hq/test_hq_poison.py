"""Poison messages at head office, through the real path: a store -> Mosquitto -> `footfall hq collect`
(a process) -> PostgreSQL.

One message holding a value PostgreSQL or Python refuses (a NUL, a lone surrogate, a date out of
range, a number too large for a float, a control character) must become one `ingest_errors` row and
nothing else: the collector keeps running, and another store's visits sent right behind it are all
stored. When a value the checks let through is still refused by the database, the batch is split
until the refused row stands alone; the rest is stored and that row is kept as an ingest error.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.broker import Broker, mosquitto_path, wait_until
from support.hq import an_hour_ago, recent_visit, scalar
from support.hq_collector import Store, config_for, start_collector

from footfall.hq.collector import Collector, connect_pool
from footfall.hq.dashboard import BadRequest, parse_store
from footfall.hq.writer import Written, is_refusal, write_bisecting
from footfall.tooling.local_postgres import LocalPostgres
from footfall.tooling.processes import end_process

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")

CALM_VISITS = 20


def stamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def status(store: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "store_id": store, "ts": an_hour_ago(), "state": "online", "version": "1.0",
            "cameras": {"door-1": "streaming"}, "storage": "ok", **fields}


def no_show(store: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "store_id": store, "ts": an_hour_ago(), "appointment_id": "a-1",
            "member_id": "m-1", "scheduled_at": an_hour_ago(), "grace_minutes": 30, **fields}


def appointment_alert(store: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "store_id": store, "ts": an_hour_ago(), "appointment_id": "a-1",
            "member_id": "m-1", "scheduled_at": an_hour_ago(), "channel": "wechat", "advisor": "Li",
            "minutes_early": 5, **fields}


def ack(store: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "store_id": store, "ts": an_hour_ago(), "visit_event_id": "e-1",
            "guide": "Wang", **fields}


def counts(store: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "store_id": store, "ts": an_hour_ago(),
            "date": datetime.now(UTC).date().isoformat(), "visits": 1, "reentries": 0, "member_visits": 0,
            "unidentified": 0, "by_hour": [0] * 24, **fields}


def booking(store: str, event_id: str, **fields: Any) -> dict[str, Any]:
    # The CRM's appointments/upsert: no event envelope; the marker rides in the appointment id.
    return {"appointment_id": event_id, "member_id": "m-1", "scheduled_at": an_hour_ago(), "channel": "phone",
            "advisor": "Li", **fields}


# name -> (topic name, payload builder, the poisoned fields)
POISONS: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "NUL in a text column": ("visits", recent_visit, {"visitor_id": "v\u00001"}),
    "NUL in a JSONB key (a camera id)": ("status", status, {"cameras": {"door\u00001": "streaming"}}),
    "NUL in a JSONB value (a camera state)": ("status", status, {"cameras": {"door-1": "stream\u0000ing"}}),
    "NUL in the version": ("status", status, {"version": "1.0\u0000"}),
    "lone surrogate in a text column": ("visits", recent_visit, {"camera_id": "door-\ud800"}),
    "lone surrogate in a JSONB key": ("status", status, {"cameras": {"\udfff": "streaming"}}),
    "lone surrogate in a guide's name": ("alerts/ack", ack, {"guide": "Wang \ud83d"}),
    "year 1 timestamp": ("visits", recent_visit, {"ts": "0001-01-01T00:00:00.000+08:00"}),
    "year 1 first_seen_ts": ("visits", recent_visit, {"first_seen_ts": "0001-01-01T00:30:00.000+08:00"}),
    "year 9999 scheduled_at of a no-show": ("alerts/no_show", no_show,
                                            {"scheduled_at": "9999-12-31T23:59:59.000-10:00"}),
    "year 9999 booking": ("appointments/upsert", booking, {"scheduled_at": "9999-12-31T23:30:00.000-10:00"}),
    "1970 timestamp": ("visits", recent_visit, {"ts": "1970-01-01T00:00:00.000+00:00",
                                                "first_seen_ts": "1970-01-01T00:00:00.000+00:00"}),
    "year 1 counts date": ("counts", counts, {"date": "0001-01-01"}),
    "an offset no zone has": ("visits", recent_visit,
                              {"ts": stamp(datetime.now(UTC)).replace("+00:00", "+23:59"),
                               "first_seen_ts": stamp(datetime.now(UTC)).replace("+00:00", "+23:59")}),
    "an integer too large for a float": ("alerts/no_show", no_show, {"grace_minutes": 10**400}),
    "a huge float": ("alerts/appointment", appointment_alert, {"minutes_early": 1e308}),
    "NaN": ("alerts/appointment", appointment_alert, {"minutes_early": float("nan")}),
    "Infinity": ("alerts/no_show", no_show, {"grace_minutes": float("inf")}),
    "an escape sequence in a guide's name": ("alerts/ack", ack, {"guide": "\u001b[2J\u001b[31mWang"}),
    "a newline in an id": ("visits", recent_visit, {"visitor_id": "v-1\nINFO forged log line"}),
    "a C1 control character": ("visits", recent_visit, {"camera_id": "door\u009b1"}),
}


def stored_visits(url: str, ids: list[str]) -> int:
    return scalar(url, "SELECT count(*) FROM visits WHERE event_id = ANY(%s)", ids)


def errors_quoting(url: str, marker: str) -> int:
    return scalar(url, "SELECT count(*) FROM ingest_errors WHERE strpos(payload_excerpt, %s) > 0", marker)


def rows_holding(url: str, marker: str) -> int:
    """Rows of any event table whose event id (or appointment id) is `marker`."""
    total = 0
    for table in ("visits", "alerts", "no_shows", "acks", "status_history", "store_counts"):
        total += scalar(url, f"SELECT count(*) FROM {table} WHERE event_id = %s", marker)
    return total + scalar(url, "SELECT count(*) FROM appointments WHERE appointment_id = %s", marker)


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"), extra_conf="max_queued_messages 100000\n").start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def module_db(postgres: LocalPostgres) -> Iterator[str]:
    with postgres.database() as url:
        yield url


@pytest.fixture(scope="module")
def collector_process(broker: Broker, module_db: str, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    """`footfall hq collect` on the module's broker and database, subscribed before the first test."""
    workdir = tmp_path_factory.mktemp("hq")
    config = workdir / "hq.toml"
    config.write_text(f'[database]\nurl = "{module_db}"\n[mqtt]\nurl = "{broker.url}"\n'
                      f'[collector]\nclient_id = "hq-poison"\nbatch_interval = "0.2s"\nreconcile = false\n')
    proc = start_collector(config, workdir / "collector.log")
    store = Store(broker.port)
    try:
        probes: list[str] = []

        def subscribed() -> bool:  # a probe sent before the subscription reaches nobody: send another
            probes.append(str(uuid.uuid4()))
            store.send("footfall/probe/visits", recent_visit("probe", probes[-1]))
            time.sleep(0.3)
            return stored_visits(module_db, probes) > 0

        wait_until(subscribed, 30, "the collector subscribed")
        yield proc
    finally:
        store.close()
        end_process(proc, 10)


@pytest.mark.parametrize("case", list(POISONS))
def test_a_poison_message_becomes_one_ingest_error_and_the_next_stores_visits_are_all_stored(
        case: str, broker: Broker, module_db: str, collector_process: subprocess.Popen[bytes]) -> None:
    name, build, poison = POISONS[case]
    marker = f"poison-{uuid.uuid4().hex}"
    store = Store(broker.port)
    try:
        store.send(f"footfall/sh-001/{name}", build("sh-001", marker, **poison))
        calm = store.visits(f"calm-{marker[-6:]}", CALM_VISITS)  # right behind it, mostly in the same batch
        wait_until(lambda: stored_visits(module_db, calm) == CALM_VISITS, 15,
                   f"all {CALM_VISITS} visits of the other store")
        wait_until(lambda: errors_quoting(module_db, marker) == 1, 5, "the poison as one ingest error")
    finally:
        store.close()
    assert collector_process.poll() is None, "the collector process is still running"
    assert rows_holding(module_db, marker) == 0, "nothing of the poison was stored as an event"


def test_a_flood_of_poison_interleaved_with_visits_loses_no_visit(
        broker: Broker, module_db: str, collector_process: subprocess.Popen[bytes]) -> None:
    store = Store(broker.port)
    sent: list[str] = []
    markers: list[str] = []
    try:
        for round_ in range(3):
            for name, build, poison in POISONS.values():
                markers.append(f"flood-{uuid.uuid4().hex}")
                store.send(f"footfall/sh-001/{name}", build("sh-001", markers[-1], **poison))
                sent += store.visits(f"calm-flood-{round_}", 2)
        wait_until(lambda: stored_visits(module_db, sent) == len(sent), 30, f"all {len(sent)} visits")
        wait_until(lambda: sum(errors_quoting(module_db, m) for m in markers) == len(markers), 10,
                   f"{len(markers)} ingest errors")
    finally:
        store.close()
    assert collector_process.poll() is None


# -- store ids: the collector stores exactly those the dashboard can show -------------------------

def dashboard_accepts(store: str) -> bool:
    try:
        parse_store({"store": [store]})
    except BadRequest:
        return False
    return True


@pytest.mark.parametrize("store", ["sh-001", "SH_2.b", "a" * 64, "a" * 65, "sh 001", "商店-1", "sh-001é"])
def test_the_collector_stores_exactly_the_store_ids_the_dashboard_accepts(
        store: str, broker: Broker, module_db: str, collector_process: subprocess.Popen[bytes]) -> None:
    marker = f"store-id-{uuid.uuid4().hex}"
    client = Store(broker.port)
    try:
        client.send(f"footfall/{store}/visits", recent_visit(store, marker))
        wait_until(lambda: stored_visits(module_db, [marker]) + errors_quoting(module_db, marker) == 1, 10,
                   "the visit stored or kept as an error")
    finally:
        client.close()
    assert (stored_visits(module_db, [marker]) == 1) is dashboard_accepts(store)


# -- the database refuses a row the checks let through: the batch is split around it ---------------

def test_bisection_writes_everything_but_the_refused_item_in_few_writes() -> None:
    written: list[int] = []
    calls = 0

    def write(items: Sequence[int]) -> Written:
        nonlocal calls
        calls += 1
        if 13 in items:
            raise psycopg.errors.CheckViolation("refused")
        written.extend(items)
        return Written(len(items), 0, 0)

    total, refused = write_bisecting(list(range(100)), write)
    assert sorted(written) == [i for i in range(100) if i != 13]
    assert [item for item, _ in refused] == [13]
    assert total.inserted == 99
    assert calls <= 2 * 7 + 1, "about two writes per halving, not one per item"


def test_bisection_does_not_split_a_batch_the_database_could_not_take_at_all() -> None:
    def write(items: Sequence[int]) -> Written:
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(psycopg.OperationalError):
        write_bisecting([1, 2, 3], write)


@pytest.mark.parametrize("exc, refusal", [
    (psycopg.errors.CheckViolation("x"), True),
    (psycopg.errors.UntranslatableCharacter("x"), True),
    (psycopg.errors.DatetimeFieldOverflow("x"), True),
    (psycopg.errors.ProgramLimitExceeded("x"), True),
    (ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
    (OverflowError("date value out of range"), True),
    (psycopg.OperationalError("server closed the connection"), False),
    (psycopg.errors.DiskFull("x"), False),
    (psycopg.errors.AdminShutdown("x"), False),
    (psycopg.errors.InsufficientPrivilege("x"), False),
    (psycopg.errors.UndefinedTable("x"), False),
])
def test_only_a_refusal_of_the_data_itself_is_split_out_everything_else_is_retried(exc, refusal) -> None:
    assert is_refusal(exc) is refusal


def test_a_row_the_database_refuses_is_kept_as_an_ingest_error_and_the_rest_of_its_batch_is_stored(
        tmp_path: Path, hq_db: str) -> None:
    # A constraint the message checks know nothing about stands for any refusal they did not foresee.
    with psycopg.connect(hq_db) as conn:
        conn.execute("ALTER TABLE visits ADD CONSTRAINT no_refused_visitor CHECK (visitor_id <> 'refused')")
    broker = Broker(tmp_path / "mosquitto").start()
    config = config_for(hq_db, broker.url, batch_interval="0.5s", batch_size=200)
    pool = connect_pool(config)
    collector = Collector(config, pool)
    thread = threading.Thread(target=collector.run)
    thread.start()
    store = Store(broker.port)
    try:
        assert collector.wait_connected(5)
        time.sleep(0.2)
        good = store.visits("sh-001", 60)
        refused = str(uuid.uuid4())
        store.send("footfall/sh-001/visits", recent_visit("sh-001", refused, visitor_id="refused"))
        good += store.visits("sh-001", 60)
        wait_until(lambda: stored_visits(hq_db, good) == len(good), 15, "every other visit of the batch")
        wait_until(lambda: errors_quoting(hq_db, refused) == 1, 5, "the refused visit as an ingest error")
        reason = scalar(hq_db, "SELECT reason FROM ingest_errors WHERE strpos(payload_excerpt, %s) > 0", refused)
        assert "refused by the database" in reason and "no_refused_visitor" in reason
        assert stored_visits(hq_db, [refused]) == 0
        assert scalar(hq_db, "SELECT sum(visits) FROM hourly") == len(good)
        assert thread.is_alive()
    finally:
        store.close()
        collector.stop()
        thread.join(10)
        pool.close()
        broker.stop()
