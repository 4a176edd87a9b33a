"""The store daemon: cameras -> pipeline -> events -> outbox -> MQTT, and downlink -> gallery, appointments.

One thread runs the pipeline and everything that decides (decisions, alerts, counts, downlink
messages, no-shows); camera readers and the MQTT publisher have threads of their own. Every
event is committed to the outbox before it is published. File sources replay on the media clock
(`run --once` processes them to the end, flushes and exits); live sources run on the wall clock
until SIGTERM.
"""

from __future__ import annotations

import logging
import queue
import signal
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from footfall import __version__
from footfall.config.schema import Config, ConfigError
from footfall.dedup.enrol import embeddings_from_photos
from footfall.edge import rules
from footfall.edge.admin import AdminRequest, AdminServer
from footfall.edge.notify import Notifier
from footfall.edge.pipeline import Decision, Pipeline, build_pipeline
from footfall.edge.sources import ENDED, FileSource, Frame, LiveSource, merge_by_time, source_kind
from footfall.edge.storage import StorageError
from footfall.edge.storage_lock import StorageLock
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.sync import events
from footfall.sync.appointments import AppointmentStore
from footfall.sync.counts import Counted, CountStore
from footfall.sync.downlink import (
    Downlink,
    Limits,
    Rejected,
    check_reply_topic,
    counts_reply,
    parse_counts_request,
    replies_prefix,
)
from footfall.sync.limits import TokenBucket
from footfall.sync.mqtt import Publisher
from footfall.sync.outbox import Outbox

log = logging.getLogger(__name__)

TICK = timedelta(seconds=60)        # no-shows and counts are looked at once a minute (store clock)
EXPIRE_EVERY = timedelta(seconds=1)  # how often open visit windows are closed by the clock, frames or not
IDLE_SLEEP_S = 0.01
STALL_S = 30.0                      # a stage without progress this long stops the watchdog pings
READY_WAIT_S = 10.0                 # how long start-up waits for the broker before READY anyway
RETRY_MAX = 1000                    # events held in memory while the outbox cannot store them
RETRY_EVERY_S = 1.0                 # how often a refused outbox write is tried again
STORAGE_ERRORS = (StorageError, sqlite3.Error, OSError)  # what a full or failing disk raises
INBOX_BUDGET_S = 0.05               # longest the decision loop spends on downlink messages per pass
PACKET_HEADROOM = 64 * 1024         # topic and properties on top of downlink.max_payload


@dataclass
class Inbound:
    """A downlink message handed over from the MQTT thread, or an operator command (`admin`)."""

    topic: str
    payload: bytes
    properties: Any
    rejected: str | None = None  # refused on arrival (too large, retained); the payload was not kept
    admin: AdminRequest | None = None


class Daemon:
    """A store's daemon, built from its config. `run()` until the sources end or `stop()`."""

    def __init__(self, config: Config, *, once: bool = False, notifier: Notifier | None = None,
                 analyzer: FaceAnalyzer | None = None, replay: list[FileSource] | None = None) -> None:
        """`replay`, if given, are the file sources to run instead of the configured cameras (the demo)."""
        self.config = config
        self.once = once
        self.notifier = notifier or Notifier()
        self.store_id = config.store_id
        self.kinds = ["file"] * len(replay) if replay else [source_kind(c.source) for c in config.cameras]
        self.replay = bool(self.kinds) and all(k == "file" for k in self.kinds)
        if once and not self.replay:
            bad = next((i for i, k in enumerate(self.kinds) if k != "file"), 0)
            raise ConfigError(f"cameras[{bad}].source: `run --once` needs every source to be a video file")
        storage = Path(config.storage.dir)
        storage.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One owner of the state: a second daemon, or a CLI command writing behind our back, is refused.
        self.lock = StorageLock(storage, "footfall run").acquire()
        try:
            self._open_state(config, storage, analyzer, replay)
        except BaseException:
            self.lock.release()
            raise

    def _open_state(self, config: Config, storage: Path, analyzer: FaceAnalyzer | None,
                    replay: list[FileSource] | None) -> None:
        self.analyzer = analyzer or FaceAnalyzer.from_config(config)
        self.pipeline: Pipeline = build_pipeline(config, self.analyzer)
        if not self.replay:
            # Windows that closed while the box was off go now, by the wall clock, before any frame.
            self.pipeline.window.expire(datetime.now(UTC))
        self.counts = CountStore(storage / "counts.db", config.timezone)
        self.appointments = AppointmentStore(storage / "appointments.db", config.timezone)
        self.outbox = Outbox.from_config(storage, config.alerts.ttl, now=lambda: datetime.now(UTC))
        self.limits = Limits.from_config(config)
        self.downlink = Downlink(gallery=self.pipeline.gallery, appointments=self.appointments,
                                 embed_photos=lambda photos: embeddings_from_photos(self.analyzer, photos),
                                 forget_visitor=self._forget_member,
                                 recognizer_sha256=self.analyzer.pack.recognizer.sha256,
                                 dim=self.analyzer.embedder.dim, clock=lambda: datetime.now(UTC),
                                 limits=self.limits)
        self.prefix = config.mqtt.topic_prefix
        self.file_sources: list[FileSource] = list(replay or [])
        self.live_sources: list[LiveSource] = []
        for camera, kind in zip([] if replay else config.cameras, self.kinds):
            if kind == "file":
                start = camera.start_time or datetime.now(UTC)
                self.file_sources.append(FileSource(camera.id, camera.source, start, camera.fps))
            else:
                self.live_sources.append(LiveSource(camera.id, camera.source, camera.fps,
                                                    now=lambda: datetime.now(UTC)))
        # Bounded: a flood is dropped (and counted) at the door instead of growing memory.
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=config.downlink.inbox)
        self.inbox_dropped = 0      # written by the MQTT thread only
        self._inbox_reported = 0
        self._dropped_topic = ""    # the topic of the last one dropped
        self._rejected_topic = ""   # the topic of the last one rejected
        self._error_reports = TokenBucket(config.downlink.error_reports_per_minute)
        self._counts_requests = TokenBucket(config.downlink.counts_requests_per_minute)
        self.rejected = 0           # downlink messages refused (reported or not)
        self.admin = AdminServer(storage, lambda request: self.inbox.put(  # waits while the inbox is full
            Inbound(request.topic, request.payload, None, admin=request)))
        downlink_topics = [*self.downlink.topics, events.COUNTS_GET]
        self.publisher = Publisher(config.mqtt, self.store_id, self.outbox, version=__version__,
                                   cameras=self.camera_states, storage=self.storage_summary,
                                   on_message=self._receive,
                                   subscriptions=[self.topic(t) for t in downlink_topics],
                                   max_incoming=config.downlink.max_payload + PACKET_HEADROOM)
        self.now: datetime | None = None
        self._next_tick: datetime | None = None
        self._next_expiry: datetime | None = None
        self._counts_dirty = True
        self._stopping = False
        self._last_loop = time.monotonic()
        self._last_states: dict[str, str] = {}
        self._next_watchdog = 0.0
        self.decisions = 0
        self.frame_errors = 0
        # Events the outbox refused (disk full, I/O error), oldest first, stored on a later try.
        self.storage_state = "ok"
        # The other state files (counts.db, appointments.db, windows.db): file -> why it refused writes.
        self.state_errors: dict[str, str] = {}
        self.uncounted: deque[Counted] = deque()  # entries counts.db refused, retried in order
        self._flag_unsaved: set[str] = set()  # no-shows raised whose flag appointments.db refused
        self.unstored: deque[events.Event] = deque()
        self.unstored_dropped = 0
        self._next_storage_retry = 0.0
        self._next_state_retry = 0.0
        self._frame_started = time.monotonic()
        # Set to a dict by the alert-latency benchmark: arrival alert event_id -> (store-clock seconds
        # from the best shot to the deciding frame, monotonic time that frame's processing began).
        self.alert_timing: dict[str, tuple[float, float]] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def topic(self, name: str) -> str:
        return events.topic(self.prefix, self.store_id, name)

    def camera_states(self) -> dict[str, events.CameraState]:
        return {**{s.camera_id: s.state for s in self.file_sources}, **{s.camera_id: s.state for s in self.live_sources}}

    def stop(self, *_: Any) -> None:
        """Ask the main loop to finish (SIGTERM, SIGINT)."""
        self._stopping = True

    def run(self) -> int:
        """Run until the file sources end (`--once`) or until stopped; returns the exit code."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        self.publisher.start()
        self.admin.start()
        deadline = time.monotonic() + READY_WAIT_S
        while not self.publisher.connected and time.monotonic() < deadline and not self._stopping:
            time.sleep(0.05)
        for source in self.live_sources:
            source.start()
        broker = "connected" if self.publisher.connected else f"not reachable ({self.publisher.last_error})"
        log.info("started: store %s, %d camera(s), broker %s", self.store_id, len(self.config.cameras), broker)
        self.notifier.ready(f"{len(self.config.cameras)} camera(s); broker {broker}")
        try:
            if self.replay:
                self._replay()
            else:
                self._live()
        finally:
            self._shutdown()
        return 0

    def _replay(self) -> None:
        for frame in merge_by_time(self.file_sources):
            self._advance(frame.ts)
            self._process(frame)
            self._housekeeping()
            if self._stopping:
                return
        self._decide(self.pipeline.finish())
        self._refresh_status()
        if not self.once:  # a replay without --once stays up for the downlink until stopped
            while not self._stopping:
                self._advance(max(self.now or datetime.now(UTC), datetime.now(UTC)))
                self._housekeeping()
                time.sleep(IDLE_SLEEP_S * 10)

    def _live(self) -> None:
        while not self._stopping:
            busy = False
            for source in self.live_sources:
                frame = source.poll()
                if frame is not None:
                    busy = True
                    self._advance(frame.ts)
                    self._process(frame)
            if not busy:
                self._advance(datetime.now(UTC))
                time.sleep(IDLE_SLEEP_S)
            self._housekeeping()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        for source in self.live_sources:
            source.stop()
        self._decide(self.pipeline.finish())
        self._publish_counts(force=True)
        self._retry_unstored(force=True)
        if self.unstored:
            log.error("shutdown: the outbox still refuses events; %d event(s) held in memory are lost: %s",
                      len(self.unstored), self.storage_state)
        flushed = self.publisher.wait_sent(timeout=10.0)
        if not flushed:
            log.warning("shutdown: %d event(s) not yet acknowledged stay in the outbox for the next start",
                        self.outbox.stats().pending)
        self.publisher.stop(timeout=5.0)
        self.close()
        log.info("stopped: %d decision(s)", self.decisions)

    def close(self) -> None:
        """Close every state file, stop the admin channel and release `storage.dir`."""
        self.admin.stop()
        self._drain_inbox()  # an operator command that arrived meanwhile is answered, not lost
        self.pipeline.close()
        self.counts.close()
        self.appointments.close()
        self.outbox.close()
        self.lock.release()

    # -- the store clock and periodic work -------------------------------------------

    def _advance(self, ts: datetime) -> None:
        if self.now is None or ts > self.now:
            self.now = ts
        self._last_loop = time.monotonic()

    def _housekeeping(self) -> None:
        self._retry_unstored()
        self._retry_state_files()
        self._drain_inbox()
        self._refresh_status()
        self._watchdog()
        if self.now is None:
            return
        if self._next_expiry is None or self.now >= self._next_expiry:
            # Retention by the clock, not by traffic: with no frame (camera down, store closed)
            # the windows still close on time, and their vectors leave the disk.
            self._next_expiry = self.now + EXPIRE_EVERY
            try:
                self.pipeline.window.expire(self.now)
            except StorageError as exc:  # tried again a second later
                log.error("visit windows: not expired: %s", exc)
        if self._next_tick is None or self.now >= self._next_tick:
            self._next_tick = self.now + TICK
            try:
                self._no_shows(self.now)
            except STORAGE_ERRORS as exc:  # tried again at the next tick
                log.error("no-shows: not checked: %s", exc)
            self._publish_counts()

    def _no_shows(self, now: datetime) -> None:
        grace = self.config.appointments.no_show_grace
        self.appointments.prune(rules.settled_kept_from(self.appointments.day_of(now)))
        due = self.appointments.due_no_shows(now, grace)
        alerts = {a.appointment_id: a for a in rules.no_show_alerts(self.store_id, now, due, grace,
                                                                    raised=self._flag_unsaved)}
        for appointment in due:
            alert = alerts.get(appointment.appointment_id)
            if alert is not None:
                self._submit(alert)
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

    def _publish_counts(self, force: bool = False) -> None:
        if self.now is None or not (self._counts_dirty or force):
            return
        self._submit(rules.counts_event(self.store_id, self.now, self.counts.today(self.now)))
        self._counts_dirty = False

    def _refresh_status(self) -> None:
        states = {**self.camera_states(), "": self.storage_summary()}
        if states != self._last_states:
            self._last_states = states
            self.publisher.refresh_status()

    def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None or time.monotonic() < self._next_watchdog:
            return
        self._next_watchdog = time.monotonic() + interval
        stalled = [name for name, ok in self.stage_health().items() if not ok]
        if stalled:
            log.error("watchdog: no progress in %s; not pinging systemd", ", ".join(stalled))
            return
        stats = self.outbox.stats()
        self.notifier.watchdog()
        self.notifier.status(f"{self.decisions} decisions; {stats.pending} event(s) pending; "
                             f"broker {'connected' if self.publisher.connected else 'down'}")

    def stage_health(self) -> dict[str, bool]:
        """Whether each stage made progress recently: every camera reader, inference, the publisher."""
        now = time.monotonic()
        health = {"inference": now - self._last_loop < STALL_S,
                  "publisher": now - self.publisher.last_progress < STALL_S}
        for source in self.live_sources:
            health[f"camera {source.camera_id}"] = source.alive or source.state == ENDED
        return health

    # -- the outbox, and what it refused ---------------------------------------------

    def _submit(self, event: events.Event) -> None:
        """Hand an event to the outbox; if the disk refuses it, keep it in memory and try again later.

        Events leave in the order they were raised: while any is held back, later ones queue behind it.
        """
        if self.unstored:
            self._retry_unstored(force=True)
        if not self.unstored:
            try:
                self.publisher.submit(event)
                return
            except StorageError as exc:
                self._storage_failed(exc)
        if len(self.unstored) >= RETRY_MAX:
            lost = self.unstored.popleft()
            self.unstored_dropped += 1
            log.error("outbox: %d events held in memory already; dropped %s %s", RETRY_MAX, lost.TOPIC,
                      lost.event_id)
        self.unstored.append(event)

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
            log.error("storage: %s; the daemon goes on and writes it again later", reason)
        self.state_errors[name] = reason

    def _state_ok(self, name: str) -> None:
        if self.state_errors.pop(name, None) is not None:
            log.info("storage: %s takes writes again", name)

    def _retry_state_files(self) -> None:
        """Once a second: the counts and open windows the disk refused, written again."""
        window = self.pipeline.window
        if window.storage_error is None and not self.uncounted:
            for name in ("windows.db", "counts.db"):
                self._state_ok(name)
            return
        if time.monotonic() < self._next_state_retry:
            return
        self._next_state_retry = time.monotonic() + RETRY_EVERY_S
        if window.retry_storage():
            self._state_ok("windows.db")
        elif window.storage_error:
            self._state_failed("windows.db", RuntimeError(window.storage_error))
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

    def _retry_unstored(self, force: bool = False) -> None:
        """Store the held-back events, oldest first, at most once a second unless `force`."""
        if not self.unstored or (not force and time.monotonic() < self._next_storage_retry):
            return
        self._next_storage_retry = time.monotonic() + RETRY_EVERY_S
        while self.unstored:
            try:
                self.publisher.submit(self.unstored[0])
            except StorageError as exc:
                self._storage_failed(exc)
                return
            self.unstored.popleft()
        log.info("outbox: storing events again; every held-back event is now in the outbox")
        self.storage_state = "ok"

    def _storage_failed(self, exc: StorageError) -> None:
        state = f"error: {exc}"
        if state != self.storage_state:
            log.error("outbox: %s; events are held in memory (up to %d) and stored when the disk "
                      "accepts them again", exc, RETRY_MAX)
        self.storage_state = state
        self._next_storage_retry = time.monotonic() + RETRY_EVERY_S

    # -- decisions to events ---------------------------------------------------------

    def _process(self, frame: Frame) -> None:
        self._frame_started = time.monotonic()
        try:
            decisions = self.pipeline.process(frame)
        except Exception:  # one bad frame never stops the daemon
            self.frame_errors += 1
            log.exception("camera %s: frame at %s not processed", frame.camera_id, frame.ts.isoformat())
            return
        self._decide(decisions)

    def _decide(self, decisions: list[Decision]) -> None:
        """Apply the rules (`edge/rules.py`) to each decision; the daemon only reads and writes state."""
        for d in decisions:
            visit = rules.visit_event(d, self.store_id)
            entry = rules.entry_count(d)
            if visit is None or entry is None:
                continue  # staff, or another view of an entry already counted
            self.decisions += 1
            self._submit(visit)
            self._count(entry)
            member_id = rules.member_entry(d)
            if member_id is not None:
                try:
                    self._member_arrived(d, member_id, visit)
                except STORAGE_ERRORS as exc:  # the visit itself is kept; a full disk never stops the daemon
                    self._state_failed("appointments.db", exc)
                    log.error("%s of a member: alerts not raised: %s", d.kind, exc)

    def _member_arrived(self, d: Decision, member_id: str, visit: events.VisitEvent) -> None:
        try:
            arrivals = self.appointments.record_arrival(member_id, d.passage.first_seen)
        except STORAGE_ERRORS as exc:  # the arrival alert still goes out; only the appointment marks wait
            self._state_failed("appointments.db", exc)
            arrivals = []
        for event in rules.appointment_alerts(self.store_id, visit.ts, arrivals):
            self._submit(event)
        if not rules.arrival_alert_due(d):
            return
        today = self.appointments.for_member_on_day(member_id, self.appointments.day_of(d.passage.first_seen))
        alert = rules.arrival_alert(d, self.store_id, visit, today)
        if alert is None:
            return
        self._submit(alert)
        if self.alert_timing is not None:
            waited = max(0.0, ((self.now or visit.ts) - d.passage.best_shot_ts).total_seconds())
            self.alert_timing[alert.event_id] = (waited, self._frame_started)

    # -- downlink --------------------------------------------------------------------

    def _forget_member(self, member_id: str) -> bool:
        """members/delete: the open window and every outbox row naming the member."""
        in_window = self.pipeline.window.forget(member_id)
        sent, unsent = self.outbox.forget_member(member_id)
        if unsent:  # the id itself never goes to the journal: it would outlive the erasure there
            log.warning("members/delete: %d unsent event(s) naming the member were erased with them", unsent)
        return in_window or bool(sent or unsent)

    def _receive(self, message: Any) -> None:
        """Called on the MQTT thread: hand over, decide on the main thread.

        A payload over `downlink.max_payload` and a retained message (a stale command the broker
        keeps) are refused here, without keeping their payload; when the inbox is full the message
        is dropped and counted.
        """
        size = len(message.payload)
        if message.retain:
            inbound = Inbound(message.topic, b"", None, "a retained message on a command topic is never "
                                                       "applied (publish downlink messages without retain)")
        elif size > self.limits.max_payload:
            inbound = Inbound(message.topic, b"", None, f"payload is {size} bytes, over the limit of "
                                                       f"{self.limits.max_payload} bytes (downlink.max_payload)")
        else:
            inbound = Inbound(message.topic, bytes(message.payload), getattr(message, "properties", None))
        try:
            self.inbox.put_nowait(inbound)
        except queue.Full:
            self._dropped_topic = message.topic
            self.inbox_dropped += 1

    def _drain_inbox(self) -> None:
        """Handle waiting downlink messages for at most INBOX_BUDGET_S (plus the one in hand):
        frames, alerts and the watchdog are never starved by a flood."""
        dropped = self.inbox_dropped - self._inbox_reported
        if dropped:
            self._inbox_reported += dropped
            self._reject(self._dropped_topic, f"{dropped} downlink message(s) dropped: the inbox was full "
                                          f"(downlink.inbox = {self.inbox.maxsize})", count=dropped)
        if self._error_reports.refused and self._error_reports.available():
            # The rejections not reported during a burst are reported, in one event, once the rate allows.
            self._reject(self._rejected_topic, "downlink messages rejected and not reported one by one "
                                               "(downlink.error_reports_per_minute); see suppressed", count=0)
        deadline = time.monotonic() + INBOX_BUDGET_S
        while time.monotonic() < deadline:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            if message.admin is not None:
                self._handle_admin(message.admin)
                continue
            try:
                self._handle(message)
            except Exception:  # one bad message never stops the daemon
                log.exception("downlink %s: not handled", message.topic)

    def _handle_admin(self, request: AdminRequest) -> None:
        """An operator command from the admin channel: the downlink's rules, answered to the caller."""
        try:
            outcome = self.downlink.handle(request.topic, request.payload)
            if outcome.ok and outcome.reply is not None and request.topic == events.MEMBERS_DELETE:
                self._submit(events.MemberDeleted(store_id=self.store_id, ts=self.now or datetime.now(UTC),
                                                  member_id=outcome.reply["member_id"]))
            request.finish(outcome.ok, outcome.reason, outcome.reply)
        except Exception as exc:  # answered, never fatal
            log.exception("admin %s: not handled", request.topic)
            request.finish(False, f"{type(exc).__name__}: {exc}")

    def _reject(self, topic: str, reason: str, *, count: int = 1) -> None:
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
        self._submit(events.ErrorEvent(store_id=self.store_id, ts=self.now or datetime.now(UTC), topic=topic,
                                       reason=reason, suppressed=suppressed))

    def _handle(self, message: Inbound) -> None:
        if message.rejected is not None:
            self._reject(message.topic, message.rejected)
            return
        # Another store's topic stays whole: the downlink refuses it as unknown.
        name = events.store_topic_name(self.prefix, self.store_id, message.topic) or message.topic
        now = self.now or datetime.now(UTC)
        if name == events.COUNTS_GET:
            self._answer_counts(message, now)
            return
        outcome = self.downlink.handle(name, message.payload)
        if not outcome.ok:
            self._reject(message.topic, outcome.reason or "rejected")
        elif outcome.reply is not None and name == events.MEMBERS_DELETE:
            self._submit(events.MemberDeleted(store_id=self.store_id, ts=now,
                                                       member_id=outcome.reply["member_id"]))

    def _answer_counts(self, message: Inbound, now: datetime) -> None:
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        try:
            request = parse_counts_request(message.payload, now, self.config.timezone,
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
            self._reject(message.topic, str(exc) or type(exc).__name__)
            return
        properties = None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        self.publisher.publish_now(target, reply, qos=1, properties=properties)
