"""The store's state and its one owner: gallery, visit window, counts, appointments and outbox.

A `Store` holds the exclusive lock on `storage.dir` while it is open (`storage/lock.py`), so
nothing else writes these files behind it: the daemon opens one for its lifetime, and `footfall
erase`, `enroll` and the imports open one when no daemon runs (with a daemon running they reach
its store over the admin channel). Everything that changes the state goes in here:

- passages from the pipeline (`enter`: decided against the gallery and the window, then the
  rules of `edge/rules.py` say what is counted, published and alerted);
- clock ticks (`advance`, `tick`): windows closed by the clock, no-shows, today's counts;
- downlink messages and operator commands (`receive`, `command`): checked into typed commands by
  the downlink (`sync/downlink.py`) and applied here, in `apply`; an erasure whole, in `erase`.

Events come out as rows of the outbox, which the publisher only drains. The store clock (`now`)
is the time of the frames: the media clock of a replay, the wall clock of live cameras; consent
and erasure, legal records, are stamped by the wall clock. A disk that refuses writes never stops
the store: events, counts, no-show flags and open windows wait in memory, in order, and are
written when it accepts them again (`edge/write_behind.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from footfall.config.schema import Config
from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import EnrolmentError, Gallery, Person
from footfall.dedup.window import VisitWindow
from footfall.edge import rules
from footfall.edge.decisions import Decision, Passage, decide
from footfall.edge.write_behind import STORAGE_ERRORS, WriteBehind
from footfall.models.manifest import ModelError
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.spec import RecognizerSpec, recognizer_spec
from footfall.storage.lock import StorageLock
from footfall.storage.sqlite import StorageError, StoreFile
from footfall.sync import events
from footfall.sync.appointments import AppointmentStore
from footfall.sync.counts import Counted, CountStore
from footfall.sync.downlink import (
    AppointmentDelete,
    AppointmentUpsert,
    Command,
    CountsGet,
    Downlink,
    EmbedPhotos,
    Limits,
    MemberDelete,
    MemberUpsert,
    Outcome,
    Rejected,
    Reply,
    ReplyAddress,
    counts_reply,
    replies_prefix,
)
from footfall.sync.limits import TokenBucket
from footfall.sync.outbox import Outbox, names_member

log = logging.getLogger(__name__)
_Closable = TypeVar("_Closable", Gallery, VisitWindow, CountStore, AppointmentStore, Outbox)

TICK = timedelta(seconds=60)         # no-shows and counts are looked at once a minute (store clock)
EXPIRE_EVERY = timedelta(seconds=1)  # how often open visit windows are closed by the clock, frames or not
RETRY_MAX = 1000                     # events (and entries) held in memory while the disk refuses them
COUNT_ONLY = "privacy.mode is count_only: this box computes and stores no face templates, so nobody is enrolled"


def wall_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def recognizer(config: Config, source: FaceAnalyzer | RecognizerSpec | None = None) -> RecognizerSpec:
    """The recognizer's facts: as given, the loaded analyzer's, or from config and manifest alone."""
    if isinstance(source, RecognizerSpec):
        return source
    return source.pack.spec if source is not None else recognizer_spec(config)


def open_gallery(config: Config, analyzer: FaceAnalyzer | RecognizerSpec | None = None) -> Gallery:
    """The store's member and staff gallery, in `storage.dir/gallery.db`; no model file is needed."""
    spec = recognizer(config, analyzer)
    return Gallery(dim=spec.dim, threshold=spec.threshold("members.threshold"),
                   margin=spec.threshold("members.margin"), model_sha256=spec.sha256,
                   db_path=Path(config.storage.dir) / "gallery.db", max_vectors=config.members.max_vectors,
                   max_tombstones=config.downlink.tombstones)


def open_window(config: Config, analyzer: FaceAnalyzer | RecognizerSpec | None = None,
                now: datetime | None = None) -> VisitWindow:
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


def save_windows(window: VisitWindow) -> None:
    """Write again, whole, the open windows `windows.db` refused (the window keeps them in memory)."""
    if not window.retry_storage():
        raise StorageError(window.storage_error or "windows.db: the open visit windows are not written")


def checkpoint_each(owed: list[StoreFile]) -> None:
    """Checkpoint each state file in `owed`, taking out of it those done; StorageError naming each
    other one (by its class) and what kept it from completing."""
    refused = []
    for part in list(owed):
        try:
            done = part.checkpoint()
            reason = "a reader kept the WAL checkpoint from completing"
        except STORAGE_ERRORS as exc:
            done, reason = False, f"WAL checkpoint failed: {exc}"
        if done:
            owed.remove(part)
        else:
            refused.append(f"{type(part).__name__}: {reason}")
    if refused:
        raise StorageError("; ".join(refused))


class ErasureCheckpoints(WriteBehind[list[StoreFile]]):
    """The checkpoints after an erasure that a reader (`footfall doctor`) or the disk held up, tried
    again every second: at most one item held, the state files still owing theirs."""

    def __init__(self) -> None:
        super().__init__("erasure", checkpoint_each)

    def after_erasure(self, files: list[StoreFile]) -> None:
        """Checkpoint every state file now (`secure_delete` is on), so neither a file nor its -wal
        keeps a page image naming the member, whether or not the erasure found rows there; those
        still owed from an earlier erasure are among them."""
        self.discard(lambda owed: True)
        self.add(list(files))

    def _log_refused(self, reason: str) -> None:
        log.warning("%s; the erased pages stay in its WAL until it succeeds (tried every second)", reason)

    def _log_taken(self) -> None:
        log.info("erasure: every state file checkpointed at last; no WAL holds the erased pages")


class Store:
    """The one owner of a store box's state. Open it, feed it, `close()` it (or use `with`)."""

    def __init__(self, config: Config, spec: RecognizerSpec | None = None, embed_photos: EmbedPhotos | None = None,
                 *, command: str = "footfall run", media_clock: bool = False,
                 wall: Callable[[], datetime] = wall_clock) -> None:
        """Take the storage lock (or raise `StorageBusy` naming the holder) and open every state file.

        `spec` is the recognizer's (by default from config and manifest: no model file is opened);
        `embed_photos` makes a template of a members/upsert's photos (by default the models load
        from config at the first photos). `command` is what the lock names as its holder. With
        `media_clock` the store clock follows replayed frames only; otherwise windows that closed
        while the box was off close now.
        """
        self.config = config
        if spec is None:
            spec = recognizer_spec(config)
        self.spec = spec
        self._embed = embed_photos
        self.store_id = config.store_id
        self.prefix = config.mqtt.topic_prefix
        self.wall = wall
        storage = Path(config.storage.dir)
        self.lock = StorageLock(storage, command).acquire()  # creates storage.dir (0700) if need be
        self._opened: list[Any] = []
        try:
            self.gallery = self._own(open_gallery(config, spec))
            self.window = self._own(open_window(config, spec, None if media_clock else wall()))
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
        self.downlink = Downlink(recognizer_sha256=spec.sha256, dim=spec.dim, limits=self.limits,
                                 timezone=config.timezone, replies=replies_prefix(self.prefix, self.store_id))
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
        # What the disk refused, kept in memory and written again in order; `status` reports the
        # first of them that refuses writes.
        self.unstored = WriteBehind[events.Event]("outbox.db", self._store_event, limit=RETRY_MAX,
                                                  describe=lambda e: f"{e.TOPIC} {e.event_id}")
        self.uncounted = WriteBehind[Counted]("counts.db", self._record, limit=RETRY_MAX)
        # No-shows raised whose flag was refused (never raised twice); arrivals appointments.db
        # refused to mark are reported here too.
        self.unflagged = WriteBehind[str]("appointments.db", self.appointments.mark_flagged)
        self.unsaved_windows = WriteBehind[VisitWindow]("windows.db", save_windows)
        self._held = (self.unstored, self.uncounted, self.unflagged, self.unsaved_windows)
        # Not a refused write: left out of `status`, as the erased rows are already gone from every query.
        self.unscrubbed = ErasureCheckpoints()

    def _embed_photos(self, photos: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """A members/upsert's photos as one template; a store given no embedder loads the models now."""
        if self._embed is None:
            try:
                self._embed = partial(embeddings_from_photos, FaceAnalyzer.from_config(self.config))
            except ModelError as exc:
                raise Rejected(f"the photos cannot be embedded on this box: {exc}") from None
        return self._embed(photos)

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
        self._write_held()
        self.unscrubbed.flush()
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
        if not self.unstored.flush(force=True):
            log.error("shutdown: the outbox still refuses events; %d event(s) held in memory are lost: %s",
                      len(self.unstored), self.unstored.error)

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
                self.uncounted.add(leaving)
                continue
            visit = rules.visit_event(d, self.store_id)
            entry = rules.entry_count(d)
            if visit is None or entry is None:
                continue  # staff, or another view of an entry already counted
            self.decisions += 1
            self._emit(visit)
            self.uncounted.add(entry)
            member_id = rules.member_entry(d)
            if member_id is not None:
                try:
                    self._member_arrived(d, member_id, visit)
                except STORAGE_ERRORS as exc:  # the visit itself is kept; a full disk never stops the store
                    self.unflagged.refused(exc)
                    log.error("%s of a member: alerts not raised: %s", d.kind, exc)
        return decisions

    def _member_arrived(self, d: Decision, member_id: str, visit: events.VisitEvent) -> None:
        try:
            arrivals = self.appointments.record_arrival(member_id, d.passage.first_seen)
        except STORAGE_ERRORS as exc:  # the arrival alert still goes out; only the appointment marks wait
            self.unflagged.refused(exc)
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
                                                                    raised=self.unflagged.held,
                                                                    person=self.gallery.get)}
        for appointment in due:
            alert = alerts.get(appointment.appointment_id)
            if alert is not None:
                self._emit(alert)
            if appointment.appointment_id not in self.unflagged.held:  # an owed flag is written by `tick`
                self.unflagged.add(appointment.appointment_id)

    def publish_counts(self, force: bool = False) -> None:
        """Today's counts as the retained `counts` event, when they changed (or `force`)."""
        if self.now is None or not (self._counts_dirty or force):
            return
        self._emit(rules.counts_event(self.store_id, self.now, self.counts.today(self.now)))
        self._counts_dirty = False

    # -- downlink messages and operator commands ---------------------------------------

    def receive(self, topic: str, payload: bytes, reply: ReplyAddress | None = None) -> Reply | None:
        """A message from the broker on one of the store's downlink topics, with where it asks to be
        answered. A refused one is reported on `errors`; a counts/get request returns the `Reply`
        to publish."""
        # Another store's topic stays whole: the downlink refuses it as unknown.
        name = events.store_topic_name(self.prefix, self.store_id, topic) or topic
        outcome = self._handle(name, payload, reply=reply)
        if not outcome.ok:
            self.reject(topic, outcome.reason or "rejected")
        return outcome.answer

    def command(self, name: str, payload: bytes, *, operator: bool = False) -> Outcome:
        """A downlink message by its topic name ("members/delete", ...), from the broker or, with
        `operator`, from the operator's command line: parsed and applied; never raises."""
        if operator and name == events.COUNTS_GET:
            return Outcome(False, "counts/get is answered only to requests from the broker")
        return self._handle(name, payload, operator=operator)

    def _handle(self, name: str, payload: bytes, *, operator: bool = False,
                reply: ReplyAddress | None = None) -> Outcome:
        """Parse and apply one message: whatever goes wrong becomes a rejection with its reason."""
        if self.count_only and name == events.MEMBERS_UPSERT:
            return Outcome(False, COUNT_ONLY)
        try:
            return self.apply(self.downlink.parse(name, payload, now=self.clock(), consent_at=self.wall(),
                                                  reply=reply), operator=operator)
        except (Rejected, EnrolmentError) as exc:
            return Outcome(False, str(exc) or type(exc).__name__)
        except Exception as exc:
            log.warning("downlink %s: failed: %s", name, exc, exc_info=True)
            return Outcome(False, f"could not apply the message: {type(exc).__name__}: {exc}")

    def apply(self, command: Command, *, operator: bool = False) -> Outcome:
        """Apply a checked downlink command: the one place the downlink changes the state. Raises
        `Rejected` (or a storage error) when it cannot be applied."""
        match command:
            case MemberUpsert():
                self._upsert_member(command)
            case MemberDelete():
                return self.erase(command.member_id, command.ts, operator=operator)
            case AppointmentUpsert():
                self.appointments.upsert(command.appointment)
                self._announce_booking(command.appointment.appointment_id)
            case AppointmentDelete():
                self.appointments.delete(command.appointment_id)
            case CountsGet():
                return Outcome(True, answer=self._answer_counts(command))
        return Outcome(True)

    def _upsert_member(self, upsert: MemberUpsert) -> None:
        member_id = upsert.person.person_id
        erased = self.gallery.erased_at(member_id)
        if erased is not None and (upsert.ts is None or upsert.ts <= erased):
            sent = "carries no ts" if upsert.ts is None else f"was sent at {events.iso(upsert.ts)}"
            raise Rejected(f"{member_id} was erased at {events.iso(erased)} and this upsert {sent}: only an upsert "
                           f"with a later ts (a new consent) enrols them again")
        if upsert.photos is not None:
            self.gallery.enroll(upsert.person, self._embed_photos(upsert.photos))
        elif upsert.embeddings is not None:
            self.gallery.enroll(upsert.person, upsert.embeddings, model_sha256=self.spec.sha256)

    def erase(self, member_id: str, at: datetime | None = None, *, operator: bool = False) -> Outcome:
        """Erase a person from every part of the state at once, and say where they were (`held_in`).

        Gone: their gallery entry (a tombstone dated `at`, by default now on the wall clock, keeps a
        stale CRM upsert from enrolling them again), their open visit window, every outbox row
        naming them (events and `errors` reports, sent or not) and their appointments; then every
        state file is checkpointed, so no WAL keeps a page naming them.

        `members/deleted` goes to the outbox whether or not a daemon runs: after a `footfall erase`
        on a stopped box it is published at the next start, so head office erases the member too.
        It holds the id alone, and loses it once the broker has it. An operator's erasure of an id
        the box does not hold is recorded (the tombstone) but not announced: head office erases an
        id across the chain, and a mistyped id may be another store's member.
        """
        held = ["gallery"] if self.gallery.erase(member_id) else []
        self.gallery.record_erasure(member_id, at or self.wall())
        if self.window.forget(member_id):
            held.append("open visit window")
        sent, unsent = self.outbox.forget_member(member_id)
        unsent += self.unstored.discard(lambda event: names_member(event, member_id))  # the disk had refused them
        if sent or unsent:
            held.append("outbox" + (f" ({unsent} event(s) not yet sent were dropped)" if unsent else ""))
        if unsent:  # the id itself never goes to the journal: it would outlive the erasure there
            log.warning("members/delete: %d unsent event(s) naming the member were erased with them", unsent)
        if self.appointments.delete_member(member_id):
            held.append("appointments")
        self.unscrubbed.after_erasure(self._opened)
        if held or not operator:
            self._emit(events.MemberDeleted(store_id=self.store_id, ts=self.clock(), member_id=member_id))
        # `held_in` (where the member was found) answers the operator; only the id is published.
        return Outcome(True, reply={"member_id": member_id, "removed": True, "held_in": held})

    def _announce_booking(self, appointment_id: str) -> None:
        """`appointments/booked` for a booking just stored (the CRM's, or imported on the box), so head
        office counts every booking: ids, channel and slot, through the outbox like any event."""
        try:
            booked = self.appointments.get(appointment_id)
        except STORAGE_ERRORS as exc:
            log.error("appointments: the booking was stored but could not be read back for head office: %s", exc)
            return
        if booked is not None:
            self._emit(events.AppointmentBooked(store_id=self.store_id, ts=self.clock(),
                                                appointment_id=booked.appointment_id, member_id=booked.member_id,
                                                scheduled_at=booked.scheduled_at, channel=booked.channel))

    def _answer_counts(self, get: CountsGet) -> Reply:
        if not self._counts_requests.take():
            raise Rejected(f"more than {self.config.downlink.counts_requests_per_minute} counts/get requests "
                           f"a minute (downlink.counts_requests_per_minute); this one is not answered")
        request = get.request
        buckets = self.counts.buckets(request.from_, request.to, request.by)
        return Reply(get.reply_topic, counts_reply(self.store_id, request, buckets), get.correlation)

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

    # -- the outbox, and what the disk refused -----------------------------------------

    def _emit(self, event: events.Event) -> None:
        """Store an event in the outbox; if the disk refuses it, it waits in memory (`unstored`), and
        later ones queue behind it: events leave in the order they were raised."""
        self.unstored.add(event)

    def _store_event(self, event: events.Event) -> None:
        self.outbox.add_event(self.prefix, self.store_id, event)
        self.on_stored()

    def _record(self, entry: Counted) -> None:
        self.counts.record(entry.ts, entry.kind, entry.member, entry.identified)
        self._counts_dirty = True

    def _write_held(self) -> None:
        """Once a second: the events, entries, no-show flags and open windows the disk refused,
        written again."""
        if self.window.storage_error is not None and not self.unsaved_windows.held:
            self.unsaved_windows.refused(self.window.storage_error)
            self.unsaved_windows.hold(self.window)
        for held in self._held:
            held.flush()

    def storage_summary(self) -> str:
        """The `storage` field of status: "ok", or why a state file refuses writes (the outbox first)."""
        errors = [held.error for held in self._held if held.error is not None]
        return f"error: {errors[0]}" if errors else "ok"
