"""The gallery of enrolled people (members and staff): who is this face, if anyone we know?

One gallery holds both roles; each person has several embeddings, and a face
is that person's when its best similarity to them reaches the threshold and
beats every other person by the margin. Embeddings belong to the recognizer
that made them: the gallery records its model's SHA-256 and refuses others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from footfall.dedup.vectors import OwnedVectors
from footfall.storage.sqlite import StorageError, StoreFile, open_store, purge, transaction

log = logging.getLogger(__name__)

NORM_TOLERANCE = 1e-3
ROLES = ("member", "staff")
Role = Literal["member", "staff"]

_SCHEMA = [
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE people (
        person_id  TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('member', 'staff')),
        tier       TEXT,
        consent    INTEGER NOT NULL,
        consent_at TEXT,              -- ISO 8601
        profile    TEXT NOT NULL      -- JSON object
    );
    CREATE TABLE person_vectors (
        id        INTEGER PRIMARY KEY,
        person_id TEXT NOT NULL REFERENCES people(person_id) ON DELETE CASCADE,
        vector    BLOB NOT NULL       -- float32, little-endian
    );
    CREATE INDEX person_vectors_by_person ON person_vectors(person_id);
    """,
    """
    -- Erase tombstones: a salted hash of the person id (never the id) and when the erase was
    -- confirmed; a downlink upsert not newer than it cannot bring the person back.
    CREATE TABLE tombstones (
        key        TEXT PRIMARY KEY,
        deleted_at REAL NOT NULL   -- Unix seconds
    );
    CREATE INDEX tombstones_by_age ON tombstones(deleted_at);
    """,
]
MAX_VECTORS = 20       # per person, by default (members.max_vectors)
MAX_TOMBSTONES = 100_000


class EnrolmentError(ValueError):
    """A person or their embeddings cannot be enrolled; the message says which and why."""


@dataclass(frozen=True)
class Person:
    """Someone enrolled: a member (with consent) or staff, and the CRM fields held for them."""

    person_id: str
    name: str
    role: Role
    tier: str | None = None
    consent: bool = False
    consent_at: datetime | None = None
    profile: dict = field(default_factory=dict)  # CRM fields (last purchase, open repairs, tags), JSON-serialisable


@dataclass(frozen=True)
class Match:
    """The recognised person, their score, and the best score of any other person (-1.0 if none)."""

    person: Person
    score: float
    second_score: float


# -- validation (pure) -------------------------------------------------------------

def check_person(person: Person) -> None:
    """Refuse a person record that cannot be enrolled (EnrolmentError)."""
    if not person.person_id:
        raise EnrolmentError("person_id must not be empty")
    if person.role not in ROLES:
        raise EnrolmentError(f"{person.person_id}: role must be 'member' or 'staff', got {person.role!r}")
    if person.role == "member" and person.consent is not True:
        raise EnrolmentError(f"member {person.person_id}: consent is required")
    try:
        json.dumps(person.profile)
    except (TypeError, ValueError) as exc:
        raise EnrolmentError(f"{person.role} {person.person_id}: profile is not JSON-serialisable: {exc}") from None


def check_embeddings(embeddings: np.ndarray, dim: int, who: str = "embeddings") -> np.ndarray:
    """(n, dim) float32 unit vectors, or EnrolmentError naming what is wrong (and which row)."""
    m = np.asarray(embeddings, dtype=np.float32)
    if m.size == 0:
        raise EnrolmentError(f"{who}: no embeddings given")
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] != dim:
        got = f"{m.shape[-1]}-d" if m.ndim <= 2 else f"shape {m.shape}"
        raise EnrolmentError(f"{who}: embeddings must be {dim}-d (the recognizer's dimension), got {got}")
    finite = np.isfinite(m).all(axis=1)
    if not finite.all():
        raise EnrolmentError(f"{who}: embedding row {int(np.argmin(finite))} has non-finite values")
    norms = np.linalg.norm(m, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise EnrolmentError(f"{who}: embedding row {row} is not L2-normalised (norm {norms[row]:.4f})")
    return np.ascontiguousarray(m)


def _query(embedding: np.ndarray, dim: int) -> np.ndarray:
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape != (dim,):
        raise ValueError(f"expected an embedding of dimension {dim}, got shape {np.shape(embedding)}")
    if not np.all(np.isfinite(vector)) or abs(float(np.linalg.norm(vector)) - 1.0) > NORM_TOLERANCE:
        raise ValueError("embedding must be finite and L2-normalised")
    return vector


# -- the gallery -------------------------------------------------------------------

class Gallery(StoreFile):
    """Members and staff with their embeddings, in memory or in a private SQLite file. Thread-safe."""

    def __init__(self, *, dim: int, threshold: float, margin: float, model_sha256: str,
                 db_path: Path | None, max_vectors: int = MAX_VECTORS,
                 max_tombstones: int = MAX_TOMBSTONES) -> None:
        if not model_sha256:
            raise ValueError("model_sha256 must name the recognizer that makes the embeddings")
        if max_vectors < 1 or max_tombstones < 1:
            raise ValueError("max_vectors and max_tombstones must be >= 1")
        self.max_vectors = max_vectors
        self.max_tombstones = max_tombstones
        self._tombstones: dict[str, float] = {}  # memory-only galleries
        self._salt = secrets.token_hex(16)
        self.dim = dim
        self.threshold = threshold
        self.margin = margin
        self.model_sha256 = model_sha256
        self._lock = threading.RLock()
        self._vectors = OwnedVectors(dim)
        self._people: dict[str, Person] = {}
        self._most_vectors = 0  # most vectors any one enrolled person has; sizes the search
        self._name = "the gallery"
        if db_path is not None:
            path = Path(db_path)

            def load(conn: sqlite3.Connection) -> None:
                self._check_model(conn, path)
                self._load(conn, path)

            self._conn = open_store(path, _SCHEMA, "the gallery", load)

    # -- public API --------------------------------------------------------------

    def enroll(self, person: Person, embeddings: np.ndarray, *, model_sha256: str | None = None) -> None:
        """Enrol or update a person; their previous embeddings are replaced.

        `model_sha256`, when given, is the recognizer that made the embeddings
        (a CRM upsert's `embedding_model`); another model's are refused.
        """
        check_person(person)
        who = f"{person.role} {person.person_id}"
        if model_sha256 is not None and model_sha256 != self.model_sha256:
            raise EnrolmentError(f"{who}: embeddings were made by recognizer {model_sha256}, "
                                 f"this gallery's recognizer is {self.model_sha256}")
        vectors = check_embeddings(embeddings, self.dim, who)
        if len(vectors) > self.max_vectors:
            raise EnrolmentError(f"{who}: {len(vectors)} embeddings, more than the limit of {self.max_vectors} "
                                 f"per person (members.max_vectors)")
        with self._lock:
            self._check_open()
            if self._conn is not None:
                self._save(person, self._vectors.next_ids(len(vectors)), vectors)
            _, old = self._vectors.replace(person.person_id, vectors)
            self._people[person.person_id] = person
            self._tombstones.pop(self._tombstone_key(person.person_id), None)
            self._most_vectors = self._vectors.widest()
            if old:
                self._purge()  # the replaced vectors leave the WAL too

    def match(self, embedding: np.ndarray) -> Match | None:
        """The enrolled person this face is, or None (below threshold, or too close to another person)."""
        vector = _query(embedding, self.dim)
        with self._lock:
            self._check_open()
            # One person holds at most _most_vectors hits, so the next person is within k.
            ranked = self._vectors.nearest_owners(vector, self._most_vectors + 1)
            if not ranked:
                return None
            (best, score), second = ranked[0], (ranked[1][1] if len(ranked) > 1 else -1.0)
            if score < self.threshold or score - second < self.margin:
                return None
            return Match(self._people[best], score, second)

    def erase(self, person_id: str) -> bool:
        """Remove a person and every one of their vectors from memory and disk; False if unknown."""
        with self._lock:
            self._check_open()
            if person_id not in self._people:
                return False
            if self._conn is not None:
                with transaction(self._conn):
                    self._conn.execute("DELETE FROM people WHERE person_id = ?", (person_id,))
            self._vectors.forget(person_id)
            del self._people[person_id]
            self._most_vectors = self._vectors.widest()  # the search narrows again once the widest person leaves
            self._purge()
            return True

    def record_erasure(self, person_id: str, at: datetime) -> None:
        """Keep a tombstone: `person_id` was erased at `at` (aware). Only a salted hash of the id is kept.

        The oldest tombstones beyond `max_tombstones` are pruned.
        """
        when = at.timestamp()
        key = self._tombstone_key(person_id)
        with self._lock:
            self._check_open()
            if self._conn is None:
                self._tombstones[key] = max(when, self._tombstones.get(key, when))
                while len(self._tombstones) > self.max_tombstones:
                    del self._tombstones[min(self._tombstones, key=self._tombstones.__getitem__)]
                return
            with transaction(self._conn):
                self._conn.execute("""INSERT INTO tombstones (key, deleted_at) VALUES (?, ?)
                                      ON CONFLICT (key) DO UPDATE SET deleted_at = max(deleted_at, excluded.deleted_at)""",
                                   (key, when))
                self._conn.execute("""DELETE FROM tombstones WHERE key IN (SELECT key FROM tombstones
                                      ORDER BY deleted_at DESC LIMIT -1 OFFSET ?)""", (self.max_tombstones,))

    def erased_at(self, person_id: str) -> datetime | None:
        """When `person_id` was last erased (a tombstone not cleared by a later enrolment), or None."""
        key = self._tombstone_key(person_id)
        with self._lock:
            self._check_open()
            if self._conn is None:
                when = self._tombstones.get(key)
            else:
                row = self._conn.execute("SELECT deleted_at FROM tombstones WHERE key = ?", (key,)).fetchone()
                when = row[0] if row else None
        return None if when is None else datetime.fromtimestamp(when, UTC)

    def get(self, person_id: str) -> Person | None:
        """The enrolled person with this id, or None."""
        with self._lock:
            return self._people.get(person_id)

    def people(self, role: str | None = None) -> list[Person]:
        """Everyone enrolled (optionally of one role), ordered by id."""
        with self._lock:
            return [p for _, p in sorted(self._people.items()) if role is None or p.role == role]

    def __len__(self) -> int:
        with self._lock:
            return len(self._people)

    def _release(self) -> None:
        """At close: drop the in-memory vectors and people."""
        self._vectors.clear()
        self._people.clear()

    # -- internals ---------------------------------------------------------------

    def _tombstone_key(self, person_id: str) -> str:
        return hashlib.sha256(f"{self._salt}\x00{person_id}".encode()).hexdigest()

    def _purge(self) -> None:
        if self._conn is not None and not purge(self._conn):
            log.warning("gallery: WAL checkpoint was blocked; deleted vectors stay in the WAL until the next one")

    def _save(self, person: Person, ids: list[int], vectors: np.ndarray) -> None:
        consent_at = person.consent_at.isoformat() if person.consent_at else None
        conn = self._conn
        assert conn is not None
        with transaction(conn):
            conn.execute(
                """INSERT INTO people (person_id, name, role, tier, consent, consent_at, profile)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (person_id) DO UPDATE SET name = excluded.name, role = excluded.role,
                       tier = excluded.tier, consent = excluded.consent, consent_at = excluded.consent_at,
                       profile = excluded.profile""",
                (person.person_id, person.name, person.role, person.tier, int(person.consent), consent_at,
                 json.dumps(person.profile, ensure_ascii=False)))
            conn.execute("DELETE FROM person_vectors WHERE person_id = ?", (person.person_id,))
            conn.execute("DELETE FROM tombstones WHERE key = ?", (self._tombstone_key(person.person_id),))
            conn.executemany("INSERT INTO person_vectors (id, person_id, vector) VALUES (?, ?, ?)",
                                   [(i, person.person_id, v.astype("<f4").tobytes()) for i, v in zip(ids, vectors)])

    def _check_model(self, conn: sqlite3.Connection, path: Path) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        stored = meta.get("model_sha256")
        has_vectors = conn.execute("SELECT EXISTS (SELECT 1 FROM person_vectors)").fetchone()[0]
        if stored is not None and stored != self.model_sha256 and has_vectors:
            raise StorageError(
                f"{path}: the gallery's embeddings were made by recognizer {stored}, the configured recognizer "
                f"is {self.model_sha256}; embeddings of different models cannot be compared — enrol the "
                f"people again with the configured recognizer, or go back to the other one")
        if "tombstone_salt" in meta:
            self._salt = meta["tombstone_salt"]
        else:
            with transaction(conn):
                conn.execute("INSERT INTO meta (key, value) VALUES ('tombstone_salt', ?)", (self._salt,))
        if stored != self.model_sha256 or meta.get("dim") != str(self.dim):
            with transaction(conn):
                conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                       [("model_sha256", self.model_sha256), ("dim", str(self.dim))])

    def _load(self, conn: sqlite3.Connection, path: Path) -> None:
        for pid, name, role, tier, consent, consent_at, profile in conn.execute(
                "SELECT person_id, name, role, tier, consent, consent_at, profile FROM people"):
            self._people[pid] = Person(pid, name, role, tier, bool(consent),
                                       datetime.fromisoformat(consent_at) if consent_at else None,
                                       json.loads(profile))
        rows = []
        for vector_id, pid, blob in conn.execute(
                "SELECT id, person_id, vector FROM person_vectors ORDER BY id"):
            if len(blob) != 4 * self.dim:
                raise StorageError(f"{path}: gallery vectors are {len(blob) // 4}-d, the recognizer makes {self.dim}-d ones")
            rows.append((vector_id, pid, np.frombuffer(blob, dtype="<f4")))
        self._vectors.restore(rows)
        self._most_vectors = self._vectors.widest()
