"""Writes a batch of checked messages in one transaction; replays change nothing.

Every insert is `ON CONFLICT DO NOTHING` on (store_id, event_id); the hourly roll-up is
incremented only from the rows an insert actually returned, so a message delivered twice
(an outbox replay, a redelivery after a collector died before its PUBACK) counts once.
Rows are written sorted by key, so two collectors writing overlapping batches take their row
locks in the same order and cannot deadlock each other.

A batch the database refuses because of what one of its rows holds (`is_refusal`) is split in
halves, and each half written again, until the refused row stands alone (`write_bisecting`):
the good rows are stored, and the caller keeps the refused one as an ingest error. Any other
failure (the database unreachable, full, shutting down) is the caller's to retry, whole.

A batch that took an erased member's id out of rows vacuums those tables right after its commit
(`vacuum`), so the old row versions holding the id leave the heap and index pages at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from footfall.hq.ingest import Rejection, Row


@dataclass(frozen=True)
class Written:
    """What a batch did: rows new to the database, rows already there, rejections kept."""

    inserted: int
    duplicates: int
    rejected: int


T = TypeVar("T")
log = logging.getLogger(__name__)

# SQLSTATE classes that speak of the values sent: data exceptions (22), integrity constraint
# violations (23), program limits such as an index row too large (54).
_REFUSAL_CLASSES = ("22", "23", "54")


def is_refusal(exc: BaseException) -> bool:
    """True when writing the same rows again cannot succeed: the database refused a value, or the
    driver could not send one (a NUL in text, a lone surrogate, a date out of range). False for
    everything that may pass (a lost connection, a full disk, a shutdown, missing privileges)."""
    if isinstance(exc, psycopg.Error):
        if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
            return True
        return (exc.sqlstate or "")[:2] in _REFUSAL_CLASSES
    return isinstance(exc, (ValueError, TypeError, OverflowError, ArithmeticError, LookupError))


def add(a: Written, b: Written) -> Written:
    """The figures of two writes together."""
    return Written(a.inserted + b.inserted, a.duplicates + b.duplicates, a.rejected + b.rejected)


def write_bisecting(items: Sequence[T], write: Callable[[Sequence[T]], Written]
                    ) -> tuple[Written, list[tuple[T, BaseException]]]:
    """`write(items)`; when that is refused for its data, write each half on its own, down to the single
    items that are refused, which are returned with their refusal instead of written. About two writes
    per halving for one bad item; any failure that is not a refusal propagates."""
    try:
        return write(items), []
    except Exception as exc:
        if not is_refusal(exc):
            raise
        if len(items) <= 1:
            return Written(0, 0, 0), [(item, exc) for item in items]
    middle = len(items) // 2
    first, refused_first = write_bisecting(items[:middle], write)
    second, refused_second = write_bisecting(items[middle:], write)
    return add(first, second), refused_first + refused_second


_VISIT = ("INSERT INTO visits (store_id, event_id, kind, visitor_id, member_id, role, camera_id, identified, ts, "
          "first_seen_ts, store_day, store_hour) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
          "ON CONFLICT DO NOTHING RETURNING store_id, store_day, store_hour, kind, role, identified")
_ALERT = ("INSERT INTO alerts (store_id, event_id, kind, member_id, visit_event_id, appointment_id, scheduled_at, "
          "channel, advisor, minutes_early, tier, ts, store_day) "
          "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1")
_NO_SHOW = ("INSERT INTO no_shows (store_id, event_id, appointment_id, member_id, scheduled_at, grace_minutes, "
            "channel, ts, store_day) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1")
_ACK = ("INSERT INTO acks (store_id, event_id, visit_event_id, guide, ts) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING 1")
_STATUS = ("INSERT INTO status_history (store_id, event_id, state, version, cameras, storage, outbox_backlog, "
           "dead_letters, ts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1")
_LATEST = ("INSERT INTO store_status (store_id, event_id, state, version, cameras, storage, outbox_backlog, "
           "dead_letters, ts, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
           "ON CONFLICT (store_id) DO UPDATE SET "
           "event_id = EXCLUDED.event_id, state = EXCLUDED.state, version = EXCLUDED.version, "
           "cameras = EXCLUDED.cameras, storage = EXCLUDED.storage, outbox_backlog = EXCLUDED.outbox_backlog, "
           "dead_letters = EXCLUDED.dead_letters, "
           "ts = EXCLUDED.ts, received_at = EXCLUDED.received_at WHERE store_status.ts <= EXCLUDED.ts")
_COUNTS = ("INSERT INTO store_counts (store_id, store_day, event_id, visits, reentries, member_visits, by_hour, ts, "
           "exits) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store_id, store_day) DO UPDATE SET "
           "event_id = EXCLUDED.event_id, visits = EXCLUDED.visits, reentries = EXCLUDED.reentries, "
           "member_visits = EXCLUDED.member_visits, by_hour = EXCLUDED.by_hour, ts = EXCLUDED.ts, "
           "exits = EXCLUDED.exits, "
           "received_at = now() WHERE store_counts.ts < EXCLUDED.ts "
           "OR (store_counts.ts = EXCLUDED.ts AND store_counts.event_id <> EXCLUDED.event_id) RETURNING 1")
_APPOINTMENT = ("INSERT INTO appointments (store_id, appointment_id, member_id, scheduled_at, channel, advisor, "
                "store_day, crm_booked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (store_id, appointment_id) DO UPDATE "
                "SET member_id = EXCLUDED.member_id, scheduled_at = EXCLUDED.scheduled_at, "
                "channel = coalesce(EXCLUDED.channel, appointments.channel), "
                "advisor = coalesce(EXCLUDED.advisor, appointments.advisor), store_day = EXCLUDED.store_day, "
                "crm_booked_at = greatest(appointments.crm_booked_at, EXCLUDED.crm_booked_at), "
                "received_at = now() RETURNING 1")
_CANCELLATION = ("INSERT INTO cancellations (store_id, appointment_id, cancelled_at) VALUES (%s, %s, %s) "
                 "ON CONFLICT (store_id, appointment_id) DO UPDATE "
                 "SET cancelled_at = greatest(cancellations.cancelled_at, EXCLUDED.cancelled_at), "
                 "received_at = now() WHERE cancellations.cancelled_at < EXCLUDED.cancelled_at RETURNING 1")
_HOURLY = ("INSERT INTO hourly (store_id, store_day, store_hour, visits, reentries, member_visits, unidentified) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store_id, store_day, store_hour) DO UPDATE SET "
           "visits = hourly.visits + EXCLUDED.visits, reentries = hourly.reentries + EXCLUDED.reentries, "
           "member_visits = hourly.member_visits + EXCLUDED.member_visits, "
           "unidentified = hourly.unidentified + EXCLUDED.unidentified")
# A zone from config replaces any other; one from the box's status replaces an event offset.
_OUTRANKS = ("(EXCLUDED.tz_source = 'config' OR (EXCLUDED.tz_source = 'status' AND stores.tz_source <> 'config'))")
_STORE = ("INSERT INTO stores (store_id, timezone, tz_source) VALUES (%s, %s, %s) ON CONFLICT (store_id) DO UPDATE "
          "SET last_seen = now(), "
          f"timezone = CASE WHEN {_OUTRANKS} THEN EXCLUDED.timezone ELSE stores.timezone END, "
          f"tz_source = CASE WHEN {_OUTRANKS} THEN EXCLUDED.tz_source ELSE stores.tz_source END")
# The high-volume tables go in one statement per batch: arrays of columns, unnested.
_BULK = {
    "visits": ("INSERT INTO visits (store_id, event_id, kind, visitor_id, member_id, role, camera_id, identified, "
               "ts, first_seen_ts, store_day, store_hour) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
               "%s::text[], %s::text[], %s::text[], %s::text[], %s::bool[], %s::timestamptz[], %s::timestamptz[], "
               "%s::date[], %s::int2[]) ON CONFLICT DO NOTHING "
               "RETURNING store_id, store_day, store_hour, kind, role, identified"),
    "alerts": ("INSERT INTO alerts (store_id, event_id, kind, member_id, visit_event_id, appointment_id, scheduled_at, "
               "channel, advisor, minutes_early, tier, ts, store_day) SELECT * FROM unnest(%s::text[], %s::text[], "
               "%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], "
               "%s::float8[], %s::text[], %s::timestamptz[], %s::date[]) ON CONFLICT DO NOTHING RETURNING 1"),
    "acks": ("INSERT INTO acks (store_id, event_id, visit_event_id, guide, ts) SELECT * FROM unnest(%s::text[], "
             "%s::text[], %s::text[], %s::text[], %s::timestamptz[]) ON CONFLICT DO NOTHING RETURNING 1"),
}
_ERROR = ("INSERT INTO ingest_errors (topic, topic_store_id, reason, payload_bytes, payload_excerpt) "
          "VALUES (%s, %s, %s, %s, %s)")


_SINGLE = {"visits": _VISIT, "alerts": _ALERT, "acks": _ACK}

# Erasure (`members/deleted`): a salted hash of the id is kept, with the store's time of the erasure.
_KEY = "encode(sha256(convert_to(s.salt || m.id, 'UTF8')), 'hex')"
_TOMBSTONE = (f"INSERT INTO erasures (member_key, erased_at) SELECT {_KEY}, m.at FROM erasure_salt s, "
              "unnest(%s::text[], %s::timestamptz[]) AS m(id, at) ON CONFLICT (member_key) DO UPDATE "
              "SET erased_at = greatest(erasures.erased_at, EXCLUDED.erased_at) RETURNING (xmax = 0)")
_ERASED = (f"SELECT m.id, e.erased_at FROM erasure_salt s CROSS JOIN unnest(%s::text[]) AS m(id) "
           f"JOIN erasures e ON e.member_key = {_KEY}")
_GONE = "unnest(%s::text[], %s::timestamptz[]) AS g(id, erased_at)"
# The store's events up to the erasure lose the id, whenever they arrive (an outbox replaying an old
# day); a member visit's visitor id is the member id, so it becomes a fresh anonymous one.
# Each statement with the table it changes: the old row versions there hold the id until a VACUUM.
_SCRUB_EVENTS = (
    ("visits", f"UPDATE visits v SET member_id = NULL, visitor_id = CASE WHEN v.visitor_id = g.id "
               f"THEN replace(gen_random_uuid()::text, '-', '') ELSE v.visitor_id END FROM {_GONE} "
               "WHERE v.member_id = g.id AND v.ts <= g.erased_at"),
    ("alerts", f"UPDATE alerts a SET member_id = NULL, tier = NULL FROM {_GONE} "
               "WHERE a.member_id = g.id AND a.ts <= g.erased_at"),
    ("no_shows", f"UPDATE no_shows n SET member_id = NULL FROM {_GONE} WHERE n.member_id = g.id AND n.ts <= g.erased_at"),
)
# At the erasure itself, also the CRM's bookings and every rejected message quoting the id.
_SCRUB_AT_ERASURE = (
    ("appointments", f"UPDATE appointments p SET member_id = NULL FROM {_GONE} WHERE p.member_id = g.id"),
    ("ingest_errors", "DELETE FROM ingest_errors WHERE EXISTS (SELECT 1 FROM unnest(%s::text[], %s::timestamptz[]) "
                      "AS g(id, at) WHERE strpos(payload_excerpt, g.id) > 0 OR strpos(reason, g.id) > 0 "
                      "OR strpos(topic, g.id) > 0)"),
)
# A box's booking (appointments/booked) from before an erasure that arrives after it loses the id too.
_SCRUB_BOOKINGS = ("UPDATE appointments p SET member_id = NULL FROM unnest(%s::text[], %s::text[], %s::text[]) "
                   "AS b(store_id, appointment_id, id) WHERE p.store_id = b.store_id "
                   "AND p.appointment_id = b.appointment_id AND p.member_id = b.id")
# Not only the heap: an index of the table (visits_member, ...) holds the id too, and a plain VACUUM
# skips the indexes when few pages have dead rows (INDEX_CLEANUP AUTO), as after one erasure.
_VACUUM = "VACUUM (INDEX_CLEANUP ON) {}"


def _params(row: Row) -> tuple[str, tuple[Any, ...]]:
    v, s, e, ts = row.values, row.store_id, row.event_id, row.ts
    if row.table == "visits":
        return _VISIT, (s, e, v["kind"], v["visitor_id"], v["member_id"], v["role"], v["camera_id"],
                        v["identified"], ts, v["first_seen_ts"], v["store_day"], v["store_hour"])
    if row.table == "alerts":
        return _ALERT, (s, e, v["kind"], v["member_id"], v["visit_event_id"], v["appointment_id"], v["scheduled_at"],
                        v["channel"], v["advisor"], v["minutes_early"], v["tier"], ts, v["store_day"])
    if row.table == "no_shows":
        return _NO_SHOW, (s, e, v["appointment_id"], v["member_id"], v["scheduled_at"], v["grace_minutes"],
                          v["channel"], ts, v["store_day"])
    if row.table == "acks":
        return _ACK, (s, e, v["visit_event_id"], v["guide"], ts)
    if row.table == "status":
        return _STATUS, (s, e, v["state"], v["version"], Jsonb(v["cameras"]), v["storage"], v["outbox_backlog"],
                         v["dead_letters"], ts)
    if row.table == "counts":
        return _COUNTS, (s, v["store_day"], e, v["visits"], v["reentries"], v["member_visits"], v["by_hour"], ts,
                         v["exits"])
    if row.table == "appointments":
        return _APPOINTMENT, (s, v["appointment_id"], v["member_id"], v["scheduled_at"], v["channel"],
                              v["advisor"], v["store_day"], v["crm_booked_at"])
    if row.table == "cancellations":
        return _CANCELLATION, (s, v["appointment_id"], ts)
    raise ValueError(f"no table {row.table!r}")


def _rebooked(rows: list[Row]) -> set[int]:
    """The indexes of the cancellations in `rows` (in arrival order) that a later appointments/upsert
    of the same booking in the same list books again. Messages of one batch share the HQ clock, so
    their order decides; a cancellation and an upsert stamped alike read as cancelled (hq/read.py)."""
    last_upsert: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows):
        if r.table == "appointments" and r.values["crm_booked_at"] is not None:
            last_upsert[(r.store_id, r.event_id)] = i
    return {i for i, r in enumerate(rows)
            if r.table == "cancellations" and last_upsert.get((r.store_id, r.event_id), -1) > i}


def write_batch(conn: psycopg.Connection, rows: list[Row], rejections: list[Rejection],
                store_zones: dict[str, tuple[str, str]]) -> Written:
    """Store a batch in one transaction (committed on return).

    `store_zones` maps every store of the batch to (timezone name, "config"|"offset"), as
    used to compute its rows' store days.
    """
    erasures = _latest_erasures(rows)
    rebooked = _rebooked(rows)
    events = [r for i, r in enumerate(rows) if r.table != "erasures" and i not in rebooked]
    with conn.transaction(), conn.cursor() as cur:
        stores = sorted({r.store_id for r in events})
        if stores:
            cur.executemany(_STORE, [(s, *store_zones[s]) for s in stores])
        by_statement: dict[str, list[tuple[Any, ...]]] = {}
        for row in sorted(events, key=lambda r: (r.table, r.store_id, r.event_id, r.ts)):
            sql, params = _params(row)
            by_statement.setdefault(sql, []).append(params)
        inserted, rollup = _insert_bulk(cur, by_statement)
        inserted += _insert_each(cur, by_statement)
        # In the order received: of two statuses with one ts (a connection's online and its will),
        # the later to arrive is the box's latest word.
        _keep_latest_status(cur, [_params(row)[1] for row in events if row.table == "status"])
        _add_to_hourly(cur, rollup)
        erased, scrubbed = _erase(cur, erasures, events)
        inserted += erased
        if rejections:
            cur.executemany(_ERROR, [(r.topic, r.topic_store_id, r.reason, r.payload_bytes,
                                      r.payload_excerpt.replace("\x00", "\ufffd")) for r in rejections])
    vacuum(conn, scrubbed)
    return Written(inserted, len(rows) - inserted, len(rejections))


def _latest_erasures(rows: list[Row]) -> dict[str, datetime]:
    """Member id -> the latest erasure of that member in `rows`."""
    erasures: dict[str, datetime] = {}
    for r in rows:
        if r.table == "erasures":
            erasures[r.values["member_id"]] = max(r.ts, erasures.get(r.values["member_id"], r.ts))
    return erasures


def _insert_bulk(cur: psycopg.Cursor, by_statement: dict[str, list[tuple[Any, ...]]]
                 ) -> tuple[int, Counter[tuple[str, Any, int, str]]]:
    """Insert the high-volume tables' rows, one statement a table, taking them out of `by_statement`;
    returns how many were new and the hourly roll-up of the new visits."""
    inserted = 0
    rollup: Counter[tuple[str, Any, int, str]] = Counter()
    for table, bulk in _BULK.items():
        params_list = by_statement.pop(_SINGLE[table], [])
        if not params_list:
            continue
        cur.execute(bulk, [list(column) for column in zip(*params_list)])
        results = cur.fetchall()
        inserted += len(results)
        if table == "visits":
            for store, day, hour, kind, role, identified in results:
                rollup[(store, day, hour, "visits" if kind == "visit" else "reentries")] += 1
                if kind == "visit" and role == "member":
                    rollup[(store, day, hour, "member_visits")] += 1
                if kind == "visit" and not identified:
                    rollup[(store, day, hour, "unidentified")] += 1
    return inserted, rollup


def _insert_each(cur: psycopg.Cursor, by_statement: dict[str, list[tuple[Any, ...]]]) -> int:
    """Run every other statement over its rows; returns how many rows were new or changed."""
    inserted = 0
    for sql, params_list in by_statement.items():
        cur.executemany(sql, params_list, returning=True)
        while True:
            inserted += len(cur.fetchall())
            if not cur.nextset():
                break
    return inserted


def _add_to_hourly(cur: psycopg.Cursor, rollup: Counter[tuple[str, Any, int, str]]) -> None:
    """Add the new visits' roll-up to the hourly table, one row per (store, day, hour)."""
    keys = sorted({k[:3] for k in rollup})
    if keys:
        cur.executemany(_HOURLY, [(*k, rollup[(*k, "visits")], rollup[(*k, "reentries")],
                                   rollup[(*k, "member_visits")], rollup[(*k, "unidentified")]) for k in keys])


def _keep_latest_status(cur: psycopg.Cursor, statuses: list[tuple[Any, ...]]) -> None:
    """Make the newest status of the batch (in arrival order among equal times) each store's latest,
    unless a newer one is there already (the SQL keeps the newest overall)."""
    latest: dict[str, tuple[Any, ...]] = {}
    for p in statuses:
        if p[0] not in latest or p[8] >= latest[p[0]][8]:
            latest[p[0]] = p
    if latest:
        cur.executemany(_LATEST, [latest[s] for s in sorted(latest)])


def _erase(cur: psycopg.Cursor, erasures: dict[str, datetime], events: list[Row]) -> tuple[int, set[str]]:
    """Record the batch's erasures, then take the id of every erased member out of what the chain
    holds of them; returns how many erasures were new, and the tables where rows changed."""
    new = _tombstone(cur, erasures)
    named: set[str] = {r.values["member_id"] for r in events
                       if r.table in ("visits", "alerts", "no_shows", "appointments") and r.values.get("member_id")}
    named |= set(erasures)
    if not named:
        return new, set()
    cur.execute(_ERASED, (sorted(named),))
    gone: list[tuple[str, datetime]] = sorted(cur.fetchall())
    at_erasure = [g for g in gone if g[0] in erasures]
    statements = [(s, gone) for s in _SCRUB_EVENTS] + [(s, at_erasure) for s in _SCRUB_AT_ERASURE]
    scrubbed: set[str] = set()
    for (table, statement), members in statements:
        if members:
            cur.execute(statement, ([g[0] for g in members], [g[1] for g in members]))
            if cur.rowcount > 0:
                scrubbed.add(table)
    if _scrub_late_bookings(cur, dict(gone), events):
        scrubbed.add("appointments")
    return new, scrubbed


def _tombstone(cur: psycopg.Cursor, erasures: dict[str, datetime]) -> int:
    """Record each erasure under the member's salted hash; returns how many were new."""
    if not erasures:
        return 0
    ids = sorted(erasures)
    cur.execute(_TOMBSTONE, (ids, [erasures[m] for m in ids]))
    return sum(1 for (fresh,) in cur.fetchall() if fresh)


def _scrub_late_bookings(cur: psycopg.Cursor, erased_at: dict[str, datetime], events: list[Row]) -> bool:
    """Take the id out of the batch's box bookings made before that member's erasure; True if a row changed."""
    late = sorted((r.store_id, r.values["appointment_id"], r.values["member_id"]) for r in events
                  if r.table == "appointments" and r.values["member_id"] in erased_at
                  and r.ts <= erased_at[r.values["member_id"]])
    if not late:
        return False
    cur.execute(_SCRUB_BOOKINGS, [list(column) for column in zip(*late)])
    return cur.rowcount > 0


def vacuum(conn: psycopg.Connection, tables: Iterable[str]) -> bool:
    """`VACUUM (INDEX_CLEANUP ON)` each table, on `conn` outside any transaction (VACUUM cannot run
    in one): the row versions an erasure left dead, which still hold the id, leave the heap and
    index pages at once rather than when autovacuum comes by. Returns False when it did not run.

    Only what no transaction may still see is removed (one begun before the erasure keeps the old
    rows until autovacuum); WAL and backups are out of its reach (docs/security.md). A failure is
    logged, never raised: the erasure itself is committed already.
    """
    names = sorted(set(tables))
    if not names:
        return True
    if conn.info.transaction_status != TransactionStatus.IDLE:
        log.warning("erasure: VACUUM of %s left to autovacuum: the connection is inside a transaction",
                    ", ".join(names))
        return False
    autocommit = conn.autocommit
    try:
        conn.autocommit = True
        for table in names:
            conn.execute(SQL(_VACUUM).format(Identifier(table)))
        return True
    except psycopg.Error as exc:
        log.warning("erasure: VACUUM of %s failed (%s); autovacuum clears the old rows later",
                    ", ".join(names), str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return False
    finally:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.autocommit = autocommit


def now_utc(conn: psycopg.Connection) -> datetime:
    """The database clock."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]
