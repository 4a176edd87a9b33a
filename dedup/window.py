"""The visit window: is this entry a new visit or a re-entry? (CONTRACT, "Counting rule")

An entry is a re-entry when the same person's previous entry in this store was
less than `window` (3 h) earlier on the same store day; otherwise it starts a
visit. A window therefore closes `window` after the person's last entry or at
the store day's local midnight, whichever comes first, and an anonymous
visitor's vectors are kept only while their window is open.

Anonymous visitors are recognised by their face vectors (FAISS over the open
windows); members arrive already identified by the gallery and are keyed by
member id. A member's passage vector is kept in their window too, so that the
same person is one visit whichever camera or moment recognised them: a member
recognised late (their earlier entry went unrecognised) re-enters the anonymous
visit their face matches, which becomes theirs; an unrecognised passage of a
member already inside (another camera, a turned head) re-enters the member's.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from footfall.dedup.vectors import OwnedVectors
from footfall.storage.sqlite import StorageError, StoreFile, db_file, open_store, purge, transaction

log = logging.getLogger(__name__)

MAX_VECTORS = 3  # per visitor: the first entry's and the most recent ones
NORM_TOLERANCE = 1e-3

_SCHEMA = [
    """
    CREATE TABLE windows (
        visitor_id    TEXT PRIMARY KEY,
        member_id     TEXT,
        visit_started TEXT NOT NULL,  -- ISO 8601, UTC
        last_entry    TEXT NOT NULL
    );
    CREATE TABLE window_vectors (
        id         INTEGER PRIMARY KEY,
        visitor_id TEXT NOT NULL REFERENCES windows(visitor_id) ON DELETE CASCADE,
        vector     BLOB NOT NULL      -- float32, little-endian
    );
    CREATE INDEX window_vectors_by_visitor ON window_vectors(visitor_id);
    """,
]

Kind = Literal["visit", "reentry", "same_entry"]


@dataclass(frozen=True)
class Entry:
    """What one entry was.

    `same_entry`: the same person seen again within `same_entry` (a second
    camera, a second look) — no event, and their last entry is unchanged.
    """

    kind: Kind
    visitor_id: str          # opaque random id (uuid4 hex) for anonymous visitors; the member id for members
    member_id: str | None
    visit_started: datetime  # first entry of this visit
    ts: datetime             # this entry
    score: float | None      # similarity to the matched window (anonymous matches), else None
    recognised_late: bool = False  # a member's entry that made an anonymous visit theirs


# -- pure rules --------------------------------------------------------------------

def store_day_end(ts: datetime, tz: ZoneInfo) -> datetime:
    """The local midnight that ends the store day `ts` falls on."""
    day = ts.astimezone(tz).date()
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def window_closes(visit_started: datetime, last_entry: datetime, window: timedelta, tz: ZoneInfo) -> datetime:
    """When a window closes: `window` after the last entry, or at the end of the visit's store day."""
    # UTC arithmetic: adding to a zone-aware datetime would add wall-clock time across DST changes.
    return min(last_entry.astimezone(UTC) + window, store_day_end(visit_started, tz))


def pick_visitor(ranked: Sequence[tuple[str, float]], threshold: float, margin: float) -> tuple[str, float] | None:
    """The matched visitor among (visitor, best score) pairs sorted best first, or None.

    The best must reach `threshold` and lead the second-best different visitor
    by at least `margin` when that one scores above 0: two open windows that
    both resemble the face make it a new visitor rather than a guess.
    """
    if not ranked or ranked[0][1] < threshold:
        return None
    if len(ranked) > 1 and ranked[1][1] > 0 and ranked[0][1] - ranked[1][1] < margin:
        return None
    return ranked[0]


def _utc(ts: datetime, what: str = "ts") -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {ts.isoformat()}")
    return ts.astimezone(UTC)


# -- the window --------------------------------------------------------------------

@dataclass
class _Open:
    visitor_id: str
    member_id: str | None
    visit_started: datetime  # UTC
    last_entry: datetime     # UTC
    closes: datetime         # UTC


class VisitWindow(StoreFile):
    """Open visit windows of one store, in memory or in a private SQLite file.

    With `db_path` every change is written at once and the windows are reloaded
    on start; with None (`privacy.anonymous_store = "memory"`) nothing touches
    disk. A closed or forgotten window's rows are securely deleted and the WAL
    truncated, so its vectors leave the files too. `now`, if given, expires at
    start what closed while the process was down; otherwise the first call does.
    Thread-safe.
    """

    def __init__(self, *, dim: int, window: timedelta, timezone: str, threshold: float, margin: float,
                 same_entry: timedelta, db_path: Path | None, now: datetime | None = None,
                 mutual_nearest: bool = True, late: timedelta = timedelta(0)) -> None:
        """`late` is the longest a passage may be decided after its own time (a track ends
        `tracking.max_gap` after its last frame, a door holds it `tracking.door_join`): a window
        is kept that much past its end so such a passage is still judged as of its own time."""
        if window <= timedelta(0):
            raise ValueError(f"window must be > 0, got {window}")
        if same_entry < timedelta(0):
            raise ValueError(f"same_entry must be >= 0, got {same_entry}")
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {timezone!r}") from None
        self.dim = dim
        self.window = window
        self.threshold = threshold
        self.margin = margin
        self.same_entry = same_entry
        self.late = max(late, timedelta(0))
        self.mutual_nearest = mutual_nearest
        self._lock = threading.RLock()
        self._vectors = OwnedVectors(dim)  # owned by visitor id
        self._open: dict[str, _Open] = {}
        self._now: datetime | None = None
        self._name = "the visit window"
        # Windows whose rows on disk lag behind memory because the disk refused a write (full, I/O
        # error): decisions go on from memory, and these are written again, whole, at the next write
        # or `retry_storage()`. `storage_error` says why while any lags.
        self._unsaved: set[str] = set()
        self.storage_error: str | None = None
        if db_path is not None:
            path = Path(db_path)
            self._conn = open_store(path, _SCHEMA, "the open visit windows", lambda conn: self._load(conn, path))
        if now is not None:
            self.expire(now)

    # -- public API --------------------------------------------------------------

    def enter_anonymous(self, embedding: np.ndarray, ts: datetime) -> Entry:
        """A face not recognised by any gallery enters: match it against the open windows."""
        vector = self._unit_vector(embedding)
        with self._lock:
            self._check_open()
            at = self._passage_time(ts)
            hit = self._match(vector, at)
            if hit is None:
                return self._start(uuid.uuid4().hex, None, at, vector)
            visitor_id, score = hit
            return self._reenter(self._open[visitor_id], at, score, vector)

    def enter_member(self, member_id: str, ts: datetime, embedding: np.ndarray | None = None) -> Entry:
        """A recognised member enters.

        Their own open window, if any, takes the entry. Otherwise, with the passage's `embedding`,
        the open anonymous windows are searched first (same rule as anonymous entries): a match
        means the member entered earlier unrecognised, so this is a re-entry of that visit and the
        window is the member's from now on. Else a new visit starts, keyed by member id.
        """
        if not member_id:
            raise ValueError("member_id must not be empty")
        vector = None if embedding is None else self._unit_vector(embedding)
        with self._lock:
            self._check_open()
            at = self._passage_time(ts)
            current = self._member_window(member_id)
            if current is not None and current.closes > at:
                return self._reenter(current, at, None, vector)
            if current is not None:  # closed at the passage's time, kept only for late passages
                self._close([current])
            hit = None if vector is None else self._match(vector, at, anonymous_only=True)
            if hit is not None:
                visitor_id, score = hit
                earlier = self._open[visitor_id]
                earlier.member_id = member_id
                self._save_member(earlier)
                return replace(self._reenter(earlier, at, score, vector), recognised_late=True)
            return self._start(member_id, member_id, at, vector)

    def expire(self, now: datetime) -> int:
        """Close every window whose end is at or before `now`; returns how many closed."""
        with self._lock:
            self._check_open()
            return self._expire(self._advance(now))

    def open_windows(self) -> int:
        """How many windows are open."""
        with self._lock:
            return len(self._open)

    def forget(self, visitor_id: str) -> bool:
        """Erase a window (anonymous id or member id) and its vectors everywhere; False if none."""
        with self._lock:
            self._check_open()
            current = self._open.get(visitor_id) or self._member_window(visitor_id)
            if current is None:
                return False
            self._close([current])
            return True

    def forget_all(self) -> int:
        """Erase every open window and its vectors, in memory and on disk; returns how many."""
        with self._lock:
            self._check_open()
            visitors = list(self._open.values())
            if visitors:
                self._close(visitors)
            return len(visitors)

    def _release(self) -> None:
        """At close: drop the in-memory vectors (open windows stay on disk)."""
        self._vectors.clear()
        self._open.clear()

    # -- decisions ---------------------------------------------------------------

    def _passage_time(self, ts: datetime) -> datetime:
        """Move the clock to `ts` and close what ended; the time a passage is judged at: its own,
        or no earlier than `late` before the newest time seen."""
        now = self._advance(ts)
        self._expire(now)
        return max(_utc(ts), now - self.late)

    def _advance(self, ts: datetime) -> datetime:
        # Time only moves forward: a late timestamp (another camera's clock) counts as the last seen.
        ts = _utc(ts)
        if self._now is None or ts > self._now:
            self._now = ts
        return self._now

    def _unit_vector(self, embedding: np.ndarray) -> np.ndarray:
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise ValueError(f"expected an embedding of dimension {self.dim}, got shape {np.shape(embedding)}")
        if not np.all(np.isfinite(vector)):
            raise ValueError("embedding has non-finite values")
        norm = float(np.linalg.norm(vector))
        if abs(norm - 1.0) > NORM_TOLERANCE:
            raise ValueError(f"embedding must be L2-normalised, its norm is {norm:.4f}")
        return vector

    def _member_window(self, member_id: str) -> _Open | None:
        current = self._open.get(member_id)
        if current is not None and current.member_id == member_id:
            return current
        return next((v for v in self._open.values() if v.member_id == member_id), None)

    def _match(self, vector: np.ndarray, at: datetime, anonymous_only: bool = False) -> tuple[str, float] | None:
        """The open window (at `at`) this face re-enters, with its score, or None."""
        if len(self._vectors) == 0:
            return None
        # The best visitor holds at most MAX_VECTORS of the hits, so the second visitor is among them too.
        # Searching anonymous windows only, members' vectors may fill the hits: search them all then.
        k = len(self._vectors) if anonymous_only else 2 * MAX_VECTORS + 2
        ranked = self._vectors.nearest_owners(vector, k)
        ranked = [(v, score) for v, score in ranked if self._open[v].closes > at]
        if anonymous_only:
            ranked = [(v, score) for v, score in ranked if self._open[v].member_id is None]
        picked = pick_visitor(ranked, self.threshold, self.margin)
        if picked is None or not self.mutual_nearest:
            return picked
        visitor_id, score = picked
        # Mutual nearest: the face must be closer to this visitor than any other open window is.
        # Two look-alike strangers inside the window make a match with either a guess.
        own = len(self._vectors.ids_of(visitor_id))
        rival = self._vectors.nearest_rival(visitor_id, own + MAX_VECTORS + 1)
        return picked if score > rival else None

    def _entry(self, kind: Kind, visitor: _Open, ts: datetime, score: float | None) -> Entry:
        return Entry(kind, visitor.visitor_id, visitor.member_id,
                     visitor.visit_started.astimezone(self._tz), ts.astimezone(self._tz), score)

    def _start(self, visitor_id: str, member_id: str | None, ts: datetime, vector: np.ndarray | None) -> Entry:
        visitor = _Open(visitor_id, member_id, ts, ts, window_closes(ts, ts, self.window, self._tz))
        added = self._new_vector(visitor, vector)
        self._open[visitor_id] = visitor
        self._save(visitor, added, [], new=True)
        return self._entry("visit", visitor, ts, None)

    def _reenter(self, visitor: _Open, ts: datetime, score: float | None, vector: np.ndarray | None) -> Entry:
        if ts - visitor.last_entry <= self.same_entry:
            return self._entry("same_entry", visitor, ts, score)
        visitor.last_entry = max(visitor.last_entry, ts)
        visitor.closes = window_closes(visitor.visit_started, visitor.last_entry, self.window, self._tz)
        added = self._new_vector(visitor, vector)
        dropped = self._vectors.cap(visitor.visitor_id, MAX_VECTORS)
        self._save(visitor, added, dropped, new=False)
        return self._entry("reentry", visitor, ts, score)

    def _new_vector(self, visitor: _Open, vector: np.ndarray | None) -> list[tuple[int, np.ndarray]]:
        if vector is None:
            return []
        (vector_id,) = self._vectors.add(visitor.visitor_id, vector)
        return [(vector_id, vector)]

    def _expire(self, now: datetime) -> int:
        closed = [v for v in self._open.values() if v.closes + self.late <= now]
        if closed:
            self._close(closed)
        return len(closed)

    def _close(self, visitors: list[_Open]) -> None:
        for visitor in visitors:
            self._vectors.forget(visitor.visitor_id)
            del self._open[visitor.visitor_id]
        if self._conn is None:
            return
        if not self._write(lambda conn: conn.executemany("DELETE FROM windows WHERE visitor_id = ?",
                                                         [(v.visitor_id,) for v in visitors]),
                           [v.visitor_id for v in visitors]):
            return
        if not purge(self._conn):
            log.warning("visit window: WAL checkpoint was blocked; closed windows' vectors stay in the WAL until the next one")

    # -- persistence -------------------------------------------------------------

    def _save(self, visitor: _Open, added: list[tuple[int, np.ndarray]], dropped: list[int], *, new: bool) -> None:
        if self._conn is None:
            return

        def write(conn: sqlite3.Connection) -> None:
            if new:
                conn.execute(
                    "INSERT INTO windows (visitor_id, member_id, visit_started, last_entry) VALUES (?, ?, ?, ?)",
                    (visitor.visitor_id, visitor.member_id, visitor.visit_started.isoformat(),
                     visitor.last_entry.isoformat()))
            else:
                conn.execute("UPDATE windows SET last_entry = ? WHERE visitor_id = ?",
                             (visitor.last_entry.isoformat(), visitor.visitor_id))
            conn.executemany("INSERT INTO window_vectors (id, visitor_id, vector) VALUES (?, ?, ?)",
                             [(i, visitor.visitor_id, v.astype("<f4").tobytes()) for i, v in added])
            conn.executemany("DELETE FROM window_vectors WHERE id = ?", [(i,) for i in dropped])

        self._write(write, [visitor.visitor_id])

    def _write(self, change: Callable[[sqlite3.Connection], object], visitor_ids: list[str]) -> bool:
        """Apply `change` in one transaction, after the windows left unsaved by earlier refusals.

        A refused write (disk full, I/O error) never loses a decision: memory stays as decided and
        `visitor_ids` are written again, whole, later. Returns whether everything is on disk now.
        """
        conn = self._conn
        assert conn is not None
        if self._unsaved and not self._resync():
            self._unsaved.update(visitor_ids)
            return False
        try:
            with transaction(conn):
                change(conn)
        except (sqlite3.Error, OSError) as exc:
            self._refused(exc)
            self._unsaved.update(visitor_ids)
            return False
        return True

    def _refused(self, exc: BaseException) -> None:
        reason = f"{db_file(self._conn) if self._conn is not None else 'windows'}: cannot write the open visit windows: {exc}"
        if reason != self.storage_error:
            log.error("visit window: %s; decisions go on from memory, the file is written again later", reason)
        self.storage_error = reason

    def retry_storage(self) -> bool:
        """Write the windows a refused write left behind; True when the file is up to date."""
        with self._lock:
            if self._conn is None or self._closed or not self._unsaved:
                return True
            return self._resync()

    def _resync(self) -> bool:
        """Replace the rows of every unsaved window by what memory holds (none for a closed one)."""
        unsaved = sorted(self._unsaved)
        conn = self._conn
        assert conn is not None
        try:
            with transaction(conn):
                for visitor_id in unsaved:
                    conn.execute("DELETE FROM windows WHERE visitor_id = ?", (visitor_id,))  # and its vectors
                    visitor = self._open.get(visitor_id)
                    if visitor is None:
                        continue
                    conn.execute(
                        "INSERT INTO windows (visitor_id, member_id, visit_started, last_entry) VALUES (?, ?, ?, ?)",
                        (visitor_id, visitor.member_id, visitor.visit_started.isoformat(),
                         visitor.last_entry.isoformat()))
                    ids, vectors = self._vectors.ids_of(visitor_id), self._vectors.vectors_of(visitor_id)
                    conn.executemany(
                        "INSERT INTO window_vectors (id, visitor_id, vector) VALUES (?, ?, ?)",
                        [(i, visitor_id, v.astype("<f4").tobytes()) for i, v in zip(ids, vectors)])
        except (sqlite3.Error, OSError) as exc:
            self._refused(exc)
            return False
        self._unsaved.clear()
        log.info("visit window: the file takes writes again; every open window is on disk")
        self.storage_error = None
        purge(conn)
        return True

    def _save_member(self, visitor: _Open) -> None:
        if self._conn is None:
            return
        self._write(lambda conn: conn.execute("UPDATE windows SET member_id = ? WHERE visitor_id = ?",
                                              (visitor.member_id, visitor.visitor_id)), [visitor.visitor_id])

    def _load(self, conn: sqlite3.Connection, path: Path) -> None:
        for visitor_id, member_id, started, last in conn.execute(
                "SELECT visitor_id, member_id, visit_started, last_entry FROM windows"):
            started, last = _utc(datetime.fromisoformat(started)), _utc(datetime.fromisoformat(last))
            self._open[visitor_id] = _Open(visitor_id, member_id, started, last,
                                           window_closes(started, last, self.window, self._tz))
            if self._now is None or last > self._now:
                self._now = last
        rows = []
        for vector_id, visitor_id, blob in conn.execute(
                "SELECT id, visitor_id, vector FROM window_vectors ORDER BY id"):
            if len(blob) != 4 * self.dim:
                raise StorageError(f"{path}: window vectors are {len(blob) // 4}-d, the recognizer makes "
                                   f"{self.dim}-d ones (the model changed?); delete the file to start afresh")
            rows.append((vector_id, visitor_id, np.frombuffer(blob, dtype="<f4")))
        self._vectors.restore(rows)
