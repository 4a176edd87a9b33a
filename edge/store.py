"""The store's state and its one owner: gallery, visit window, counts, appointments and outbox.

A `Store` holds the exclusive lock on `storage.dir` while it is open (`edge/storage_lock.py`), so
nothing else writes these files behind it: the daemon opens one for its lifetime, and `footfall
erase`, `enroll` and the imports open one when no daemon runs (with a daemon running they reach
its store over the admin channel). Everything that changes the state goes in here:

- passages from the pipeline (`enter`: decided against the gallery and the window, then the
  rules of `edge/rules.py` say what is counted, published and alerted);
- clock ticks (`advance`, `tick`): windows closed by the clock, no-shows, today's counts;
- downlink messages and operator commands (`receive`, `command`), by the downlink's rules.

Events come out as rows of the outbox, which the publisher only drains. The store clock (`now`)
is the time of the frames: the media clock of a replay, the wall clock of live cameras; consent
and erasure, legal records, are stamped by the wall clock. A disk that refuses writes never stops
the store: events and counts wait in memory, in order, and are written when it accepts them again.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from footfall.config.schema import Config
from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import EnrolmentError, Gallery, Person
from footfall.dedup.window import VisitWindow
from footfall.edge import rules
from footfall.edge.decisions import Decision, Passage, decide
from footfall.edge.storage import StorageError, StoreFile
from footfall.edge.storage_lock import StorageLock
from footfall.models.manifest import ModelError
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.spec import RecognizerSpec, recognizer_spec
from footfall.sync import events
from footfall.sync.appointments import AppointmentStore
from footfall.sync.counts import Counted, CountStore
from footfall.sync.downlink import (
    Downlink,
    Limits,
    Outcome,
    Rejected,
    check_reply_topic,
    counts_reply,
    decode_object,
    parse_counts_request,
    replies_prefix,
)
from footfall.sync.limits import TokenBucket
from footfall.sync.outbox import Outbox

log = logging.getLogger(__name__)
_Closable = TypeVar("_Closable", Gallery, VisitWindow, CountStore, AppointmentStore, Outbox)

TICK = timedelta(seconds=60)         # no-shows and counts are looked at once a minute (store clock)
EXPIRE_EVERY = timedelta(seconds=1)  # how often open visit windows are closed by the clock, frames or not
RETRY_MAX = 1000                     # events (and entries) held in memory while the disk refuses them
RETRY_EVERY_S = 1.0                  # how often a refused write is tried again
STORAGE_ERRORS = (StorageError, sqlite3.Error, OSError)  # what a full or failing disk raises
COUNT_ONLY = "privacy.mode is count_only: this box computes and stores no face templates, so nobody is enrolled"


def wall_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def recognizer(config: Config, analyzer: FaceAnalyzer | None = None) -> RecognizerSpec:
    """The recognizer's facts: the loaded analyzer's, or, without one, from config and manifest alone."""
    return analyzer.pack.spec if analyzer is not None else recognizer_spec(config)


def open_gallery(config: Config, analyzer: FaceAnalyzer | None = None) -> Gallery:
    """The store's member and staff gallery, in `storage.dir/gallery.db`; no model file is needed."""
    spec = recognizer(config, analyzer)
    return Gallery(dim=spec.dim, threshold=spec.threshold("members.threshold"),
                   margin=spec.threshold("members.margin"), model_sha256=spec.sha256,
                   db_path=Path(config.storage.dir) / "gallery.db", max_vectors=config.members.max_vectors,
                   max_tombstones=config.downlink.tombstones)


def open_window(config: Config, analyzer: FaceAnalyzer | None = None, now: datetime | None = None) -> VisitWindow:
    """The store's visit window: `storage.dir/windows.db`, or memory only by config."""
    spec = recognizer(config, analyzer)
    db = None if config.privacy.anonymous_store == "memory" else Path(config.storage.dir) / "windows.db"
    return VisitWindow(dim=spec.dim, window=config.dedup.window, timezone=config.timezone,
                       threshold=spec.threshold("dedup.threshold"), margin=spec.threshold("dedup.margin"),
                       same_entry=config.dedup.same_entry, db_path=db, now=now, late=decision_delay(config))


def decision_delay(config: Config) -> timedelta:
    """The longest a passage waits for its decision after its last frame: its track ends
    `tracking.max_gap` later, a door holds it `tracking.door_join` more, plus the slowest camera's
    frame interval (at least a second)."""
    slowest = min((c.fps for c in config.cameras), default=1.0)
    return config.tracking.max_gap + config.tracking.door_join + timedelta(seconds=max(1.0, 1 / slowest))


@dataclass(frozen=True)
class Reply:
    """An answer to publish at once, not an event (a counts/get reply): topic, payload, properties."""

    topic: str
    payload: dict[str, Any]
    properties: Properties | None


class Store:
    """The one owner of a store box's state. Open it, feed it, `close()` it (or use `with`)."""

    def __init__(self, config: Config, analyzer: FaceAnalyzer | None = None, *, command: str = "footfall run",
                 media_clock: bool = False, wall: Callable[[], datetime] = wall_clock) -> None:
        """Take the storage lock (or raise `StorageBusy` naming the holder) and open every state file.

        `command` is what the lock names as its holder. With `media_clock` the store clock follows
        replayed frames only; otherwise windows that closed while the box was off close now.
        Without `analyzer` (`footfall erase`, the imports) no face model is opened: the recognizer's
        facts come from config and manifest, and the models load only for photos to embed.
        """
        self.config = config
        self._analyzer = analyzer
        spec = recognizer(config, analyzer)
        self.store_id = config.store_id
        self.prefix = config.mqtt.topic_prefix
        self.wall = wall
        storage = Path(config.storage.dir)
        self.lock = StorageLock(storage, command).acquire()  # creates storage.dir (0700) if need be
        self._opened: list[Any] = []
        try:
            self.gallery = self._own(open_gallery(config, analyzer))
            self.window = self._own(open_window(config, analyzer, None if media_clock else wall()))
            self.counts = self._own(CountStore(storage / "counts.db", config.timezone))
            self.appointments = self._own(AppointmentStore(storage / "appointments.db", config.timezone))
            self.outbox = self._own(Outbox.from_config(storage, config.alerts.ttl, now=wall))
        except BaseException:
            self.close()
            raise
        self.count_only = config.privacy.mode == "count_only"
        if self.count_only:
            self._forget_anonymous_vectors()
        self.limits = Limits.from_config(config)
        self.downlink = Downlink(gallery=self.gallery, appointments=self.appointments,
                                 embed_photos=self._embed_photos, forget_visitor=self._forget_member,
                                 recognizer_sha256=spec.sha256, dim=spec.dim, clock=wall, limits=self.limits)
        self.now: datetime | None = None
        # Called after rows were added to the outbox (the publisher looks at once), and on each
        # arrival alert raised (the alert-latency benchmark).
        self.on_stored: Callable[[], None] = lambda: None
        self.on_alert: Callable[[Decision, events.ArrivalAlert], None] | None = None
        self.decisions = 0
        self.rejected = 0  # downlink messages refused (reported or not)
        self._error_reports = TokenBucket(config.downlink.error_reports_per_minute)
        self._counts_requests = TokenBucket(config.downlink.counts_requests_per_minute)
        self._rejected_topic = ""
        self._next_tick: datetime | None = None
        self._next_expiry: datetime | None = None
        self._counts_dirty = True
        # What the disk refused, kept in memory and written again in order.
        self.storage_state = "ok"                 # the outbox: "ok" or "error: ..."
        self.state_errors: dict[str, str] = {}    # another state file -> why it refused writes
        self.unstored: deque[events.Event] = deque()
        self.unstored_dropped = 0
        self.uncounted: deque[Counted] = deque()
        self._flag_unsaved: set[str] = set()      # no-shows raised whose flag appointments.db refused
        self._next_storage_retry = 0.0
        self._next_state_retry = 0.0
        self._unscrubbed: list[StoreFile] = []  # state files whose checkpoint after an erasure was held up
        self._next_scrub = 0.0

    def _embed_photos(self, photos: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """A members/upsert's photos as one template; a store opened without the models loads them now."""
        if self._analyzer is None:
            try:
                self._analyzer = FaceAnalyzer.from_config(self.config)
            except ModelError as exc:
                raise Rejected(f"the photos cannot be embedded on this box: {exc}") from None
        return embeddings_from_photos(self._analyzer, photos)

    def _forget_anonymous_vectors(self) -> None:
        """count_only keeps no template: windows left open by an earlier recognise run go at once,
        not when their 3 hours are up."""
        erased = self.window.forget_all()
        if erased:
            log.info("privacy.mode is count_only: %d open visit window(s) and their vectors erased", erased)

    def _own(self, part: _Closable) -> _Closable:
        self._opened.append(part)
        return part

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every state file and release `storage.dir`."""
        for part in reversed(self._opened):
            try:
                part.close()
            except Exception:
                log.exception("closing %s", type(part).__name__)
        self._opened = []
        self.lock.release()

    # -- the clock -------------------------------------------------------------------

    def advance(self, ts: datetime) -> None:
        """Move the store clock to `ts` (a frame's time, or the wall clock); it never goes back."""
        if self.now is None or ts > self.now:
            self.now = ts

    def clock(self) -> datetime:
        """The store clock, or the wall clock before the first frame."""
        return self.now or self.wall()

    def tick(self) -> None:
        """Periodic work, called between frames: writes the disk refused, then, by the store clock,
        windows closed every second (frames or not) and no-shows and counts every minute."""
        self._retry_unstored()
        self._retry_state_files()
        self._retry_scrub()
        if self.now is None:
            return
        if self._next_expiry is None or self.now >= self._next_expiry:
            # Retention by the clock, not by traffic: with no frame (camera down, store closed)
            # the windows still close on time, and their vectors leave the disk.
            self._next_expiry = self.now + EXPIRE_EVERY
            try:
                self.window.expire(self.now)
            except StorageError as exc:  # tried again a second later
                log.error("visit windows: not expired: %s", exc)
        if self._next_tick is None or self.now >= self._next_tick:
            self._next_tick = self.now + TICK
            try:
                self._no_shows(self.now)
            except STORAGE_ERRORS as exc:  # tried again at the next tick
                log.error("no-shows: not checked: %s", exc)
            self.publish_counts()

    def finish(self) -> None:
        """Before closing: today's counts once more, and every held-back event stored if the disk allows."""
        self.publish_counts(force=True)
        self._retry_unstored(force=True)
        if self.unstored:
            log.error("shutdown: the outbox still refuses events; %d event(s) held in memory are lost: %s",
                      len(self.unstored), self.storage_state)

    # -- passages ----------------------------------------------------------------------

    def enroll(self, person: Person, vectors: np.ndarray) -> None:
        """Enrol a person from their template (an operator's `footfall enroll`); refused in count_only."""
        if self.count_only:
            raise EnrolmentError(COUNT_ONLY)
        self.gallery.enroll(person, vectors)

    @property
    def knows_anyone(self) -> bool:
        """Whether anyone is enrolled (open tracks are looked up early only then)."""
        return len(self.gallery) > 0

    def decide(self, passages: Iterable[Passage]) -> list[Decision]:
        """Who each passage is (`edge/decisions.py`); the window records the visits, no event is raised."""
        return decide(passages, self.gallery, self.window)

    def enter(self, passages: Iterable[Passage]) -> list[Decision]:
        """Decide on the passages and apply the rules: visits published and counted, members'
        arrivals marked and alerted. Returns the decisions."""
        decisions = self.decide(passages)
        for d in decisions:
            leaving = rules.exit_count(d)
            if leaving is not None:
                self._count(leaving)
                continue
            visit = rules.visit_event(d, self.store_id)
            entry = rules.entry_count(d)
            if visit is None or entry is None:
                continue  # staff, or another view of an entry already counted
            self.decisions += 1
            self._emit(visit)
            self._count(entry)
            member_id = rules.member_entry(d)
            if member_id is not None:
                try:
                    self._member_arrived(d, member_id, visit)
                except STORAGE_ERRORS as exc:  # the visit itself is kept; a full disk never stops the store
                    self._state_failed("appointments.db", exc)
                    log.error("%s of a member: alerts not raised: %s", d.kind, exc)
        return decisions

    def _member_arrived(self, d: Decision, member_id: str, visit: events.VisitEvent) -> None:
        try:
            arrivals = self.appointments.record_arrival(member_id, d.passage.first_seen)
        except STORAGE_ERRORS as exc:  # the arrival alert still goes out; only the appointment marks wait
            self._state_failed("appointments.db", exc)
            arrivals = []
        for event in rules.appointment_alerts(self.store_id, visit.ts, arrivals):
            self._emit(event)
        if not rules.arrival_alert_due(d):
            return
        today = self.appointments.for_member_on_day(member_id, self.appointments.day_of(d.passage.first_seen))
        alert = rules.arrival_alert(d, self.store_id, visit, today)
        if alert is None:
            return
        self._emit(alert)
        if self.on_alert is not None:
            self.on_alert(d, alert)

    def _no_shows(self, now: datetime) -> None:
        grace = self.config.appointments.no_show_grace
        self.appointments.prune(rules.settled_kept_from(self.appointments.day_of(now)))
        due = self.appointments.due_no_shows(now, grace)
        alerts = {a.appointment_id: a for a in rules.no_show_alerts(self.store_id, now, due, grace,
                                                                    raised=self._flag_unsaved,
                                                                    person=self.gallery.get)}
        for appointment in due:
            alert = alerts.get(appointment.appointment_id)
            if alert is not None:
                self._emit(alert)
            self._flag(appointment.appointment_id)  # raised now, or raised before and only its flag is owed

    def _flag(self, appointment_id: str) -> None:
        try:
            self.appointments.mark_flagged(appointment_id)
        except STORAGE_ERRORS as exc:
            self._flag_unsaved.add(appointment_id)  # never raised twice, even while the file refuses it
            self._state_failed("appointments.db", exc)
            return
        self._flag_unsaved.discard(appointment_id)
        self._state_ok("appointments.db")

    def publish_counts(self, force: bool = False) -> None:
        """Today's counts as the retained `counts` event, when they changed (or `force`)."""
        if self.now is None or not (self._counts_dirty or force):
            return
        self._emit(rules.counts_event(self.store_id, self.now, self.counts.today(self.now)))
        self._counts_dirty = False

    # -- downlink messages and operator commands ---------------------------------------

    def command(self, name: str, payload: bytes, *, operator: bool = False) -> Outcome:
        """A downlink message by its topic name ("members/delete", ...), from the broker or, with
        `operator`, from the operator's command line: the downlink's rules, and `members/deleted`
        raised for an erasure.

        The notice goes to the outbox whether or not a daemon runs: after a `footfall erase` on a
        stopped box it is published at the next start, so head office erases the member too. It
        holds the id alone, and loses it once the broker has it. An operator's erasure of an id the
        box does not hold (`held_in` empty) is recorded (the tombstone) but not announced: head
        office erases an id across the chain, and a mistyped id may be another store's member.
        """
        if self.count_only and name == events.MEMBERS_UPSERT:
            return Outcome(False, COUNT_ONLY)
        outcome = self.downlink.handle(name, payload)
        if outcome.ok and outcome.reply is not None and name == events.MEMBERS_DELETE:
            self._scrub_files()
            if outcome.reply.get("held_in") or not operator:
                self._emit(events.MemberDeleted(store_id=self.store_id, ts=self.clock(),
                                                member_id=outcome.reply["member_id"]))
        if outcome.ok and name == events.APPOINTMENTS_UPSERT:
            self._announce_booking(payload)
        return outcome

    def _announce_booking(self, payload: bytes) -> None:
        """`appointments/booked` for a booking just stored (the CRM's, or imported on the box), so head
        office counts every booking: ids, channel and slot, through the outbox like any event."""
        try:
            booked = self.appointments.get(str(decode_object(payload, self.limits.max_payload)["appointment_id"]))
        except STORAGE_ERRORS as exc:
            log.error("appointments: the booking was stored but could not be read back for head office: %s", exc)
            return
        if booked is not None:
            self._emit(events.AppointmentBooked(store_id=self.store_id, ts=self.clock(),
                                                appointment_id=booked.appointment_id, member_id=booked.member_id,
                                                scheduled_at=booked.scheduled_at, channel=booked.channel))

    def receive(self, topic: str, payload: bytes, properties: Any = None) -> Reply | None:
        """A message from the broker on one of the store's downlink topics. A refused one is
        reported on `errors`; a counts/get request returns the `Reply` to publish."""
        # Another store's topic stays whole: the downlink refuses it as unknown.
        name = events.store_topic_name(self.prefix, self.store_id, topic) or topic
        if name == events.COUNTS_GET:
            return self._answer_counts(topic, payload, properties)
        outcome = self.command(name, payload)
        if not outcome.ok:
            self.reject(topic, outcome.reason or "rejected")
        return None

    def _answer_counts(self, topic: str, payload: bytes, props: Any) -> Reply | None:
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        try:
            request = parse_counts_request(payload, self.clock(), self.config.timezone,
                                           max_payload=self.limits.max_payload, max_buckets=self.limits.max_buckets)
            target = response_topic or request.reply_to
            if not target:
                raise ValueError("no MQTT 5 response topic and no reply_to: nowhere to answer")
            check_reply_topic(target, replies_prefix(self.prefix, self.store_id))
            if not self._counts_requests.take():
                raise Rejected(f"more than {self.config.downlink.counts_requests_per_minute} counts/get requests "
                               f"a minute (downlink.counts_requests_per_minute); this one is not answered")
            reply = counts_reply(self.store_id, request, self.counts.buckets(request.from_, request.to, request.by))
        except Exception as exc:  # a bad request is answered on `errors`, never fatal
            self.reject(topic, str(exc) or type(exc).__name__)
            return None
        properties = None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        return Reply(target, reply, properties)

    def reject(self, topic: str, reason: str, *, count: int = 1) -> None:
        """Report a refused downlink message on `errors`, at most `downlink.error_reports_per_minute`;
        the ones over the rate are counted into the next report's `suppressed`."""
        self.rejected += count
        self._rejected_topic = topic
        if not self._error_reports.take():
            self._error_reports.refused += count - 1
            return
        suppressed = self._error_reports.pop_refused()
        # The reason may quote a member id: it goes to the `errors` topic (erased with the member),
        # not to the journal, which erasure cannot reach.
        log.warning("downlink %s rejected; the reason is published on the errors topic%s", topic,
                    f" ({suppressed} more not reported)" if suppressed else "")
        self._emit(events.ErrorEvent(store_id=self.store_id, ts=self.clock(), topic=topic, reason=reason,
                                     suppressed=suppressed))

    def report_suppressed(self) -> None:
        """Once the rate allows, one report for the rejections not reported during a burst."""
        if self._error_reports.refused and self._error_reports.available():
            self.reject(self._rejected_topic, "downlink messages rejected and not reported one by one "
                                              "(downlink.error_reports_per_minute); see suppressed", count=0)

    def _forget_member(self, member_id: str) -> list[str]:
        """members/delete: the member's open window and every outbox row naming them; where they were."""
        held = ["open visit window"] if self.window.forget(member_id) else []
        sent, unsent = self.outbox.forget_member(member_id)
        if sent or unsent:
            held.append("outbox" + (f" ({unsent} event(s) not yet sent were dropped)" if unsent else ""))
        if unsent:  # the id itself never goes to the journal: it would outlive the erasure there
            log.warning("members/delete: %d unsent event(s) naming the member were erased with them", unsent)
        return held

    def _scrub_files(self, *, again: bool = False) -> None:
        """After an erasure: checkpoint every state file (`secure_delete` is on), so neither a file
        nor its -wal keeps a page image naming the member, whether or not the erasure found rows
        there. A file a reader kept from it (`footfall doctor`) is tried again from `tick`."""
        parts = self._unscrubbed if again else self._opened
        self._unscrubbed = [part for part in parts if not self._checkpointed(part, quiet=again)]
        self._next_scrub = time.monotonic() + RETRY_EVERY_S
        if again and not self._unscrubbed:
            log.info("erasure: every state file checkpointed at last; no WAL holds the erased pages")

    def _retry_scrub(self) -> None:
        """Once a second: the checkpoints after an erasure that a reader held up, tried again."""
        if self._unscrubbed and time.monotonic() >= self._next_scrub:
            self._scrub_files(again=True)

    @staticmethod
    def _checkpointed(part: StoreFile, *, quiet: bool = False) -> bool:
        try:
            if part.checkpoint():
                return True
            reason = "a reader kept the WAL checkpoint from completing"
        except STORAGE_ERRORS as exc:
            reason = f"WAL checkpoint failed: {exc}"
        if not quiet:
            log.warning("erasure: %s: %s; the erased pages stay in its WAL until it succeeds (tried every "
                        "second)", type(part).__name__, reason)
        return False

    # -- the outbox, and what the disk refused -----------------------------------------

    def _emit(self, event: events.Event) -> None:
        """Store an event in the outbox; if the disk refuses it, keep it in memory and try again later.

        Events leave in the order they were raised: while any is held back, later ones queue behind it.
        """
        if self.unstored:
            self._retry_unstored(force=True)
        if not self.unstored:
            try:
                self._add(event)
                self.on_stored()
                return
            except StorageError as exc:
                self._storage_failed(exc)
        if len(self.unstored) >= RETRY_MAX:
            lost = self.unstored.popleft()
            self.unstored_dropped += 1
            log.error("outbox: %d events held in memory already; dropped %s %s", RETRY_MAX, lost.TOPIC,
                      lost.event_id)
        self.unstored.append(event)

    def _add(self, event: events.Event) -> None:
        self.outbox.add_event(self.prefix, self.store_id, event)

    def _retry_unstored(self, force: bool = False) -> None:
        """Store the held-back events, oldest first, at most once a second unless `force`."""
        if not self.unstored or (not force and time.monotonic() < self._next_storage_retry):
            return
        self._next_storage_retry = time.monotonic() + RETRY_EVERY_S
        while self.unstored:
            try:
                self._add(self.unstored[0])
            except StorageError as exc:
                self._storage_failed(exc)
                return
            self.unstored.popleft()
        self.on_stored()
        log.info("outbox: storing events again; every held-back event is now in the outbox")
        self.storage_state = "ok"

    def _storage_failed(self, exc: StorageError) -> None:
        state = f"error: {exc}"
        if state != self.storage_state:
            log.error("outbox: %s; events are held in memory (up to %d) and stored when the disk "
                      "accepts them again", exc, RETRY_MAX)
        self.storage_state = state
        self._next_storage_retry = time.monotonic() + RETRY_EVERY_S

    def storage_summary(self) -> str:
        """The `storage` field of status: "ok", or the first refusal of the outbox or another state file."""
        if self.storage_state != "ok":
            return self.storage_state
        for reason in self.state_errors.values():
            return f"error: {reason}"
        return "ok"

    def _state_failed(self, name: str, exc: BaseException) -> None:
        reason = str(exc) if name in str(exc) else f"{name}: {exc}"
        if self.state_errors.get(name) != reason:
            log.error("storage: %s; the store goes on and writes it again later", reason)
        self.state_errors[name] = reason

    def _state_ok(self, name: str) -> None:
        if self.state_errors.pop(name, None) is not None:
            log.info("storage: %s takes writes again", name)

    def _retry_state_files(self) -> None:
        """Once a second: the counts and open windows the disk refused, written again."""
        if self.window.storage_error is None and not self.uncounted:
            for name in ("windows.db", "counts.db"):
                self._state_ok(name)
            return
        if time.monotonic() < self._next_state_retry:
            return
        self._next_state_retry = time.monotonic() + RETRY_EVERY_S
        if self.window.retry_storage():
            self._state_ok("windows.db")
        elif self.window.storage_error:
            self._state_failed("windows.db", RuntimeError(self.window.storage_error))
        while self.uncounted:
            entry = self.uncounted[0]
            try:
                self.counts.record(entry.ts, entry.kind, entry.member, entry.identified)
            except STORAGE_ERRORS as exc:
                self._state_failed("counts.db", exc)
                return
            self.uncounted.popleft()
            self._counts_dirty = True
        self._state_ok("counts.db")

    def _count(self, entry: Counted) -> None:
        """Record an entry in counts.db; while it refuses writes, entries wait in memory, in order."""
        if not self.uncounted:
            try:
                self.counts.record(entry.ts, entry.kind, entry.member, entry.identified)
                self._counts_dirty = True
                return
            except STORAGE_ERRORS as exc:
                self._state_failed("counts.db", exc)
                self._next_state_retry = time.monotonic() + RETRY_EVERY_S
        if len(self.uncounted) >= RETRY_MAX:
            self.uncounted.popleft()
            log.error("counts: %d entries held in memory already; the oldest is not counted", RETRY_MAX)
        self.uncounted.append(entry)
