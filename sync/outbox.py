"""The persistent outbox: every uplink event is on disk before anyone is told it was raised.

Rows leave in insertion order and are marked sent only when the broker has
acknowledged them, so a broker outage, a network cut or a daemon restart loses
nothing (CONTRACT, "MQTT"). Alerts are the exception by design: one still unsent
`alert_ttl` (wall clock) after it entered is dropped — a late pop-up is worse
than none. Visits never expire.

Disk is bounded by pruning the oldest *sent* rows; unsent rows are never
deleted to make room (losing events is worse than using disk).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from footfall.storage.sqlite import StorageError, StoreFile, open_store, purge, transaction
from footfall.sync import events

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"

_SCHEMA = [
    """
    CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
        event_id   TEXT NOT NULL UNIQUE,
        topic      TEXT NOT NULL,
        payload    TEXT NOT NULL,   -- JSON, UTF-8
        alert      INTEGER NOT NULL,
        retain     INTEGER NOT NULL,
        created_at REAL NOT NULL,   -- wall clock, Unix seconds, when the row entered
        sent_at    REAL             -- NULL while unsent
    );
    CREATE INDEX outbox_unsent ON outbox(seq) WHERE sent_at IS NULL;
    """,
    """
    -- A dead-lettered row: the broker could not take it (too large, refused) max_attempts times.
    -- It leaves the queue (sent_at is set, so later rows flow) and is kept and counted.
    ALTER TABLE outbox ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;
    """,
]


def _cause(exc: BaseException) -> BaseException:
    """The first storage error of a chain: when SQLite has already rolled back (disk full),
    `transaction()`'s own ROLLBACK fails too and would hide the real cause."""
    while isinstance(exc.__context__, (OSError, sqlite3.Error)):
        exc = exc.__context__
    return exc


def _confirms_erasure(conn: sqlite3.Connection, seqs: tuple[int, ...]) -> bool:
    """Whether any of these unsent rows is a `members/deleted` confirmation (it names the member)."""
    suffix = "/" + events.MEMBERS_DELETED
    return any(topic.endswith(suffix) for (topic,) in conn.execute(
        "SELECT topic FROM outbox WHERE sent_at IS NULL AND seq IN (SELECT value FROM json_each(?))",
        (json.dumps(list(seqs)),)))


def _abandon(conn: sqlite3.Connection) -> None:
    """Leave no transaction open after a failed COMMIT, so the next write can try again."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _quotes(member_id: str) -> re.Pattern[str]:
    """A whole-word match of the id in decoded text (`m-1` is not in `m-12`)."""
    return re.compile(r"(?<![\w-])" + re.escape(member_id) + r"(?![\w-])")


def _strings(value: Any) -> Iterator[str]:
    """Every string of a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def names_member(event: events.Event, member_id: str) -> bool:
    """Whether an event is one `forget_member` erases with the member: it names them in `member_id`,
    or it is an `errors` report quoting the id anywhere."""
    payload = event.to_json()
    if payload.get("member_id") == member_id:
        return True
    return event.TOPIC == events.ERRORS and any(_quotes(member_id).search(text) for text in _strings(payload))


def _quoted_in(body: str, quoting: re.Pattern[str]) -> bool:
    """Whether a row's JSON text quotes the id. Read decoded: the same id may be written as its
    characters or escaped (`\\u4f1a`), and either way it names the member."""
    try:
        payload = json.loads(body)
    except ValueError:
        return quoting.search(body) is not None
    return any(quoting.search(text) for text in _strings(payload))


def _wall(ts: datetime) -> float:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"the outbox clock must return timezone-aware datetimes, got {ts.isoformat()}")
    return ts.timestamp()


@dataclass(frozen=True)
class Row:
    """One unsent message: `body` is the exact JSON text to publish."""

    seq: int
    event_id: str
    topic: str
    body: str
    alert: bool
    retain: bool
    created_at: datetime

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass(frozen=True)
class OutboxStats:
    """A snapshot for `doctor`, logs and the watchdog; counters are since this Outbox was opened."""

    pending: int
    sent: int
    expired_alerts: int
    dropped_sent: int
    oldest_pending_age_s: float | None
    last_error: str | None
    over_limit: bool
    dead_letters: int = 0


class Outbox(StoreFile):
    """A SQLite outbox of uplink messages. Thread-safe: producers add, the publisher reads and marks."""

    _conn: sqlite3.Connection

    def __init__(self, db_path: str | Path, *, alert_ttl: timedelta, max_rows: int = 100_000,
                 now: Callable[[], datetime]) -> None:
        if alert_ttl <= timedelta(0):
            raise ValueError("alert_ttl must be > 0")
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.path = Path(db_path)
        self.alert_ttl = alert_ttl
        self.max_rows = max_rows
        self.now = now
        self._lock = threading.RLock()
        self._expired_alerts = 0
        self._dropped_sent = 0
        self._last_error: str | None = None
        self._over_limit = False
        self._name = f"the outbox {self.path}"
        self._conn = open_store(self.path, _SCHEMA, "the outbox", self._load)

    @classmethod
    def from_config(cls, storage_dir: str | Path, alert_ttl: timedelta, *,
                    now: Callable[[], datetime], max_rows: int = 100_000) -> Outbox:
        """The daemon's outbox: `storage.dir`/outbox.db, alerts expiring after `alerts.ttl`."""
        return cls(Path(storage_dir) / OUTBOX_FILE, alert_ttl=alert_ttl, max_rows=max_rows, now=now)

    # -- producers -------------------------------------------------------------------

    def add(self, topic: str, payload: dict[str, Any], *, event_id: str, alert: bool, retain: bool = False) -> int:
        """Store a message durably (committed before this returns) and return its sequence number.

        Adding an event_id that is already here keeps the one row and returns its
        number. A disk that refuses the write (full, read-only) raises StorageError
        naming the file; rows added before are untouched.
        """
        if not topic or not event_id:
            raise ValueError("topic and event_id must not be empty")
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        created = _wall(self.now())
        with self._lock:
            conn = self._open()
            with self._writing(conn, "store an event in the outbox"):
                cur = conn.execute(
                    """INSERT INTO outbox (event_id, topic, payload, alert, retain, created_at)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING""",
                    (event_id, topic, body, int(alert), int(retain), created))
                inserted = cur.rowcount == 1
                seq = conn.execute("SELECT seq FROM outbox WHERE event_id = ?", (event_id,)).fetchone()[0]
            if inserted:
                self._rows += 1
                if self._rows > self.max_rows:
                    self._make_room(conn)
                else:
                    self._over_limit = False
            return seq

    def add_event(self, prefix: str, store_id: str, event: events.Event) -> int:
        """`add` an event under its topic of the store (`footfall/{store_id}/visits`, ...)."""
        return self.add(events.topic(prefix, store_id, event.TOPIC), event.to_json(), event_id=event.event_id,
                        alert=event.ALERT, retain=event.RETAINED)

    # -- the publisher ---------------------------------------------------------------

    def pending(self, limit: int, *, after: int = 0) -> list[Row]:
        """Up to `limit` unsent rows with seq > `after`, oldest first.

        Alerts among them that have outlived `alert_ttl` are deleted first (and
        counted): they are never handed out. `after` lets a publisher ask for the
        rows behind the ones it already has in flight; those are not expired
        under its feet.
        """
        with self._lock:
            conn = self._open()
            self._expire_alerts(conn, after)
            rows = conn.execute(
                """SELECT seq, event_id, topic, payload, alert, retain, created_at FROM outbox
                   WHERE sent_at IS NULL AND seq > ? ORDER BY seq LIMIT ?""", (after, limit)).fetchall()
        return [Row(seq, event_id, topic, body, bool(alert), bool(retain),
                    datetime.fromtimestamp(created, UTC))
                for seq, event_id, topic, body, alert, retain, created in rows]

    def expires_in(self, row: Row) -> timedelta | None:
        """Time an alert row has left before it must not be published any more; None for rows that never expire."""
        if not row.alert:
            return None
        return row.created_at + self.alert_ttl - self.now()

    def mark_sent(self, *seqs: int) -> None:
        """Record that the broker acknowledged these rows (one commit for all); their payloads go."""
        if not seqs:
            return
        sent_at = _wall(self.now())
        with self._lock:
            conn = self._open()
            # Refused, the rows stay unsent and go out again later: a duplicate, never a loss.
            with self._writing(conn, "mark rows sent"):
                confirms_erasure = _confirms_erasure(conn, seqs)
                # Once the broker has it, the box keeps only the row's place in the sequence:
                # names, CRM profiles and erasure confirmations do not linger in sent rows.
                conn.executemany("""UPDATE outbox SET sent_at = ?, payload = json_object('event_id', event_id)
                                    WHERE seq = ? AND sent_at IS NULL""",
                                 [(sent_at, seq) for seq in seqs])
            if confirms_erasure:
                # The confirmation was the last row naming an erased member: its WAL frames go too.
                self._purge_after_erasure(conn)

    def dead_letter(self, seq: int, why: str) -> None:
        """Take an unsent row out of the queue for good (it can never be delivered), keeping it, counted.

        Logged with `why`; later rows are no longer held up behind it.
        """
        with self._lock:
            conn = self._open()
            with self._writing(conn, f"dead-letter row {seq}"):
                changed = conn.execute("UPDATE outbox SET dead = 1, sent_at = ? WHERE seq = ? AND sent_at IS NULL",
                                       (_wall(self.now()), seq)).rowcount
            if changed:
                self.dead_letters += 1
                log.error("outbox: row %d dead-lettered (kept in %s, never sent): %s", seq, self.path, why)

    def forget_member(self, member_id: str) -> tuple[int, int]:
        """Erase every row naming the member (visits, alerts, error reports), sent or not, and purge the WAL.

        Returns (sent, unsent) rows removed: an erased person's identity is not kept to be sent
        later; the caller reports the unsent ones, they are never dropped silently.
        """
        with self._lock:
            conn = self._open()
            with self._writing(conn, f"erase {member_id}'s events", last_error=False):
                # Error reports quote what they rejected (an upsert's member id) anywhere in
                # their text, as a whole word; other events name the member in `member_id` only.
                quoting = _quotes(member_id)
                reports = [seq for seq, payload in conn.execute(
                    "SELECT seq, payload FROM outbox WHERE topic LIKE '%/errors' AND (sent_at IS NULL OR dead = 1)")
                    if _quoted_in(payload, quoting)]
                removed = conn.execute(
                    f"""DELETE FROM outbox WHERE json_extract(payload, '$.member_id') = ?
                              OR seq IN ({",".join("?" * len(reports))})
                        RETURNING sent_at IS NULL""", (member_id, *reports)).fetchall()
            unsent = sum(1 for (u,) in removed if u)
            self._rows -= len(removed)
            if unsent:
                log.warning("outbox: %d unsent event(s) naming an erased member dropped", unsent)
            purge(conn)
            return len(removed) - unsent, unsent

    def stats(self) -> OutboxStats:
        """Counts and ages for monitoring."""
        with self._lock:
            conn = self._open()
            pending, oldest = conn.execute(
                "SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL").fetchone()
            age = None if oldest is None else max(0.0, _wall(self.now()) - oldest)
            return OutboxStats(pending=pending, sent=self._rows - pending, expired_alerts=self._expired_alerts,
                               dropped_sent=self._dropped_sent, oldest_pending_age_s=age,
                               last_error=self._last_error, over_limit=self._over_limit,
                               dead_letters=self.dead_letters)

    def _release(self) -> None:
        """At close: checkpoint the WAL, so deleted alerts leave it too."""
        try:
            purge(self._conn)
        except sqlite3.DatabaseError as exc:
            log.warning("outbox %s: WAL checkpoint at close failed: %s", self.path, exc)

    # -- internals -------------------------------------------------------------------

    def _purge_after_erasure(self, conn: sqlite3.Connection) -> None:
        try:
            done = purge(conn)
        except (OSError, sqlite3.DatabaseError) as exc:
            log.warning("outbox %s: WAL checkpoint after sending an erasure confirmation failed: %s", self.path, exc)
            return
        if not done:
            log.warning("outbox %s: a reader kept the WAL checkpoint after sending an erasure confirmation from "
                        "completing; the next checkpoint takes it", self.path)

    @contextmanager
    def _writing(self, conn: sqlite3.Connection, doing: str, *, last_error: bool = True) -> Iterator[None]:
        """The block as one transaction; a disk or SQLite error leaves no transaction open and raises
        StorageError "<path>: cannot <doing>: <cause>", kept as the last error unless `last_error` is False."""
        try:
            with transaction(conn):
                yield
        except (OSError, sqlite3.DatabaseError) as exc:
            _abandon(conn)
            error = f"{self.path}: cannot {doing}: {_cause(exc)}"
            if last_error:
                self._last_error = error
            raise StorageError(error) from None

    def _load(self, conn: sqlite3.Connection) -> None:
        self._rows = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self.dead_letters = conn.execute("SELECT count(*) FROM outbox WHERE dead = 1").fetchone()[0]

    def _open(self) -> sqlite3.Connection:
        self._check_open()
        return self._conn

    def _expire_alerts(self, conn: sqlite3.Connection, after: int) -> None:
        cutoff = _wall(self.now()) - self.alert_ttl.total_seconds()
        try:
            with self._writing(conn, "drop expired alerts"):
                expired = conn.execute(
                    """DELETE FROM outbox WHERE sent_at IS NULL AND alert = 1 AND seq > ? AND created_at <= ?
                       RETURNING topic, event_id""", (after, cutoff)).fetchall()
        except StorageError as exc:
            # Not fatal: the publisher checks each alert's remaining time again before sending.
            log.warning("outbox: %s", exc)
            return
        if expired:
            self._rows -= len(expired)
            self._expired_alerts += len(expired)
            log.warning("outbox: dropped %d alert(s) unsent after %s (a late alert is worse than none): %s",
                        len(expired), self.alert_ttl, ", ".join(f"{t} {e}" for t, e in expired[:5]))

    def _make_room(self, conn: sqlite3.Connection) -> None:
        excess = self._rows - self.max_rows
        try:
            with self._writing(conn, "prune sent rows"):
                dropped = conn.execute(
                    """DELETE FROM outbox WHERE seq IN (
                           SELECT seq FROM outbox WHERE sent_at IS NOT NULL ORDER BY seq LIMIT ?)""",
                    (excess,)).rowcount
        except StorageError as exc:
            log.warning("outbox: %s", exc)
            return
        self._rows -= dropped
        self._dropped_sent += dropped
        self.dead_letters = conn.execute("SELECT count(*) FROM outbox WHERE dead = 1").fetchone()[0]
        over = self._rows > self.max_rows
        if over and not self._over_limit:
            log.warning("outbox %s: %d rows, over the limit of %d, and all unsent; keeping them "
                        "(losing events is worse than using disk) — is the broker reachable?",
                        self.path, self._rows, self.max_rows)
        self._over_limit = over
