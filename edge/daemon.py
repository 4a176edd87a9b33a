"""The store daemon, as wiring: cameras -> pipeline -> store -> outbox -> publisher.

The store (`edge/store.py`) owns the state and decides; the daemon moves things between threads.
One thread runs the pipeline and feeds the store: passages, clock ticks, downlink messages and
operator commands (handed over from the MQTT thread and the admin channel through a bounded
inbox; a QoS 1 downlink message is acknowledged to the broker only once the store handled it).
Camera readers, the admin channel and the publisher, which only drains the outbox, have
threads of their own. File sources replay on the media clock (`run --once` processes them to the
end, flushes and exits); live sources run on the wall clock until SIGTERM.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from footfall import __version__
from footfall.config.schema import Config, ConfigError
from footfall.dedup.enrol import embeddings_from_photos
from footfall.edge.admin import MAX_CLIENTS, AdminRequest, AdminServer
from footfall.edge.decisions import Decision, Passage
from footfall.edge.metrics import CameraMeter, MetricsServer, render
from footfall.edge.notify import Notifier
from footfall.edge.pipeline import Pipeline
from footfall.edge.sources import (
    ENDED,
    FileSource,
    Frame,
    LiveSource,
    SourceError,
    merge_by_time,
    source_kind,
)
from footfall.edge.store import Store
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.persons import person_detector_from_config
from footfall.storage.lock import busy, current_holder
from footfall.sync import events
from footfall.sync.downlink import ReplyAddress
from footfall.sync.mqtt import Ack, Publisher

log = logging.getLogger(__name__)

IDLE_SLEEP_S = 0.01
STALL_S = 30.0                      # a stage without progress this long stops the watchdog pings
READY_WAIT_S = 10.0                 # how long start-up waits for the broker before READY anyway
INBOX_BUDGET_S = 0.05               # longest the decision loop spends on downlink messages per pass
PACKET_HEADROOM = 64 * 1024         # topic and properties on top of downlink.max_payload
STATS_EVERY_S = 30.0                # status is published again this often while cameras are live (camera_stats)


@dataclass
class Inbound:
    """A downlink message handed over from the MQTT thread, or an operator command (`admin`)."""

    topic: str
    payload: bytes
    reply: ReplyAddress | None   # where a request asks to be answered (its MQTT 5 properties)
    rejected: str | None = None  # refused on arrival (too large, retained); the payload was not kept
    admin: AdminRequest | None = None
    ack: Ack | None = None       # a QoS 1 message: acknowledged to the broker once handled


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
        holder = current_holder(config.storage.dir)
        if holder is not None:  # refused before the models load; the store's lock is what decides
            raise busy(config.storage.dir, holder)
        self.analyzer = analyzer or FaceAnalyzer.from_config(config)
        self.persons = person_detector_from_config(config)
        # The one owner of the state; a second daemon, or a CLI command writing behind it, is refused.
        self.store = Store(config, self.analyzer.pack.spec, partial(embeddings_from_photos, self.analyzer),
                           media_clock=self.replay)
        try:
            if self.store.count_only and self.store.knows_anyone:
                raise ConfigError(f"privacy.mode: count_only, but storage.dir holds {len(self.store.gallery)} enrolled "
                                  f"people; a count-only box keeps no face templates: erase them first "
                                  f"(footfall erase), or set privacy.mode = \"recognise\"")
            self._wire(config, replay)
        except BaseException:
            self.store.close()
            raise

    def _wire(self, config: Config, replay: list[FileSource] | None) -> None:
        self.pipeline = Pipeline(config, self.analyzer, self.persons)
        self.file_sources: list[FileSource] = list(replay or [])
        self.live_sources: list[LiveSource] = []
        for camera, kind in zip([] if replay else config.cameras, self.kinds):
            if kind == "file":
                start = camera.start_time or datetime.now(UTC)
                self.file_sources.append(FileSource(camera.id, camera.source, start, camera.fps))
            else:
                self.live_sources.append(LiveSource(camera.id, camera.detect_source or camera.source, camera.fps,
                                                    now=lambda: datetime.now(UTC)))
        self.meter = CameraMeter(self.live_sources)
        self.metrics: MetricsServer | None = None
        if config.metrics.port and not self.replay:
            self.metrics = MetricsServer(config.metrics.host, config.metrics.port, self.metrics_text)
        # Bounded: the MQTT thread reads nothing while `inbox_limit` messages wait (the broker keeps
        # the rest). One read may bring a few more: a QoS 0 one is then dropped and counted, a QoS 1
        # one (acknowledged only once handled) has room of its own, as do the admin channel's clients.
        self.inbox_limit = config.downlink.inbox
        self.receive_maximum = min(65535, self.inbox_limit)
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=self.inbox_limit + self.receive_maximum + MAX_CLIENTS)
        self.inbox_dropped = 0      # QoS 0 messages dropped; written by the MQTT thread only
        self.inbox_deferred = 0     # QoS 1 messages left unacknowledged for the broker to redeliver; likewise
        self._inbox_reported = 0
        self._deferred_reported = 0
        self._dropped_topic = ""    # the topic of the last one dropped or deferred
        storage = Path(config.storage.dir)
        self.admin = AdminServer(storage, lambda request: self.inbox.put(  # waits while the inbox is full
            Inbound(request.topic, request.payload, None, admin=request)))
        self.publisher = Publisher(config.mqtt, self.store_id, self.store.outbox, version=__version__,
                                   cameras=self.camera_states, storage=self.store.storage_summary,
                                   on_message=self._receive,
                                   subscriptions=[events.topic(config.mqtt.topic_prefix, self.store_id, t)
                                                  for t in self.store.downlink.topics],
                                   max_incoming=config.downlink.max_payload + PACKET_HEADROOM,
                                   receive_maximum=self.receive_maximum,
                                   room=self._inbox_room, timezone=config.timezone)
        self.store.on_stored = self.publisher.notify
        self._with_camera_stats(self.publisher)
        self._next_stats = time.monotonic() + STATS_EVERY_S
        self._stopping = False
        self._last_loop = time.monotonic()
        self._last_states: dict[str, str] = {}
        self._next_watchdog = 0.0
        self.frame_errors = 0
        self._frame_started = time.monotonic()
        # Set to a dict by the alert-latency benchmark: arrival alert event_id -> (store-clock seconds
        # from the best shot to the deciding frame, monotonic time that frame's processing began).
        self.alert_timing: dict[str, tuple[float, float]] | None = None
        self.store.on_alert = self._time_alert

    @property
    def decisions(self) -> int:
        """Entries counted since start."""
        return self.store.decisions

    # -- lifecycle -------------------------------------------------------------------

    def _with_camera_stats(self, publisher: Publisher) -> None:
        """Every "online" status carries the live cameras' figures (`camera_stats`)."""
        plain = publisher._status

        def status(state: events.BoxState, cameras: dict[str, events.CameraState] | None = None) -> events.Status:
            base = plain(state, cameras)
            if state != "online" or not self.live_sources:
                return base
            return replace(base, camera_stats={f.camera_id: f.status_fields() for f in self.meter.read()})

        publisher._status = status  # type: ignore[method-assign]

    def metrics_text(self) -> str:
        """The /metrics page: the cameras, the pipeline's stages, decisions and the outbox."""
        stats = self.store.outbox.stats()
        return render(self.meter, dict(self.pipeline.stage_s),
                      {"footfall_decisions": self.decisions, "footfall_outbox_pending": stats.pending,
                       "footfall_frame_errors": self.frame_errors})

    def camera_states(self) -> dict[str, events.CameraState]:
        return {**{s.camera_id: s.state for s in self.file_sources}, **{s.camera_id: s.state for s in self.live_sources}}

    def stop(self, *_: Any) -> None:
        """Ask the main loop to finish (SIGTERM, SIGINT)."""
        self._stopping = True

    def run(self) -> int:
        """Run until the file sources end (`--once`) or until stopped; returns the exit code: 1 when
        a video file could not be read to the end, or when `--once` leaves events unsent."""
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
        if self.metrics is not None:
            self.metrics.start()
        broker = "connected" if self.publisher.connected else f"not reachable ({self.publisher.last_error})"
        log.info("started: store %s, %d camera(s), broker %s", self.store_id, len(self.config.cameras), broker)
        self.notifier.ready(f"{len(self.config.cameras)} camera(s); broker {broker}")
        read = True
        try:
            if self.replay:
                read = self._replay()
            else:
                self._live()
        finally:
            unsent = self._shutdown()
        if self.once and unsent:
            # What --once was for did not happen: a script must not take the day as delivered.
            log.error("run --once: %d event(s) not sent stay in the outbox %s (broker: %s); the next start "
                      "sends them", unsent, self.store.outbox.path, self.publisher.last_error or "no acknowledgement")
        return 0 if read and not (self.once and unsent) else 1

    def _replay(self) -> bool:
        """Replay the files in media-clock order; False if one could not be read (logged in one line)."""
        try:
            for frame in merge_by_time(self.file_sources):
                self._expire_tracks(frame.ts)
                self._advance(frame.ts)
                self._process(frame)
                self._housekeeping()
                if self._stopping:
                    return True
        except SourceError as exc:  # what was read until then is decided at shutdown, and sent
            log.error("%s", exc)
            return False
        self._enter(self.pipeline.finish())
        self._refresh_status()
        if not self.once:  # a replay without --once stays up for the downlink until stopped
            while not self._stopping:
                self._advance(max(self.store.clock(), datetime.now(UTC)))
                self._housekeeping()
                time.sleep(IDLE_SLEEP_S * 10)
        return True

    def _live(self) -> None:
        while not self._stopping:
            busy = False
            for source in self.live_sources:
                frame = source.poll()
                if frame is not None:
                    busy = True
                    started = time.perf_counter()
                    self._expire_tracks(frame.ts)
                    self._advance(frame.ts)
                    self._process(frame)
                    self.meter.add_inference(frame.camera_id, time.perf_counter() - started)
            if not busy:
                now = datetime.now(UTC)
                self._expire_tracks(now)  # a stalled camera's tracks end on time
                self._advance(now)
                time.sleep(IDLE_SLEEP_S)
            self._housekeeping()

    def _shutdown(self) -> int:
        """Stop everything, flushing the outbox for a while; returns the events left unsent."""
        self.notifier.stopping()
        for source in self.live_sources:
            source.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self._enter(self.pipeline.finish())
        self.store.finish()
        self._drain_inbox()  # while the publisher can still acknowledge; the rest is redelivered at the next start
        flushed = self.publisher.wait_sent(timeout=10.0)
        if not flushed:
            log.warning("shutdown: %d event(s) not yet acknowledged stay in the outbox for the next start",
                        self.store.outbox.stats().pending)
        self.publisher.stop(timeout=5.0)
        unsent = self.store.outbox.stats().pending
        self.close()
        for camera in sorted({c.id for c in self.config.cameras} | set(self.pipeline.people)):
            log.info("camera %s: %d people tracked, %d passage(s)", camera, self.pipeline.people[camera],
                     self.pipeline.passed[camera])
        log.info("stopped: %d decision(s)", self.decisions)
        return unsent

    def close(self) -> None:
        """Stop the admin channel, answer what waits in the inbox, close the store (and its lock)."""
        self.admin.stop()
        self._drain_inbox()  # an operator command that arrived meanwhile is answered, not lost
        self.store.close()

    # -- the store clock and periodic work -------------------------------------------

    def _advance(self, ts: datetime) -> None:
        self.store.advance(ts)
        self._last_loop = time.monotonic()

    def _housekeeping(self) -> None:
        self._drain_inbox()
        self.store.tick()
        self._refresh_status()
        self._watchdog()

    def _refresh_status(self) -> None:
        states = {**self.camera_states(), "": self.store.storage_summary()}
        due = bool(self.live_sources) and time.monotonic() >= self._next_stats
        if states != self._last_states or due:
            self._last_states = states
            self._next_stats = time.monotonic() + STATS_EVERY_S
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
        stats = self.store.outbox.stats()
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

    # -- frames to the store ---------------------------------------------------------

    def _expire_tracks(self, now: datetime) -> None:
        """Decide the passages whose tracks ended by `now`, before the store's clock moves to it:
        each is judged as of its own time, against the windows then open."""
        self._enter(self.pipeline.expire(now))

    def _process(self, frame: Frame) -> None:
        self._frame_started = time.monotonic()
        try:
            passages = self.pipeline.process(frame, early=self.store.knows_anyone)
        except Exception:  # one bad frame never stops the daemon
            self.frame_errors += 1
            log.exception("camera %s: frame at %s not processed", frame.camera_id, frame.ts.isoformat())
            return
        self._enter(passages)

    def _enter(self, passages: list[Passage]) -> None:
        self.pipeline.settle(self.store.enter(passages))

    def _time_alert(self, decision: Decision, alert: events.ArrivalAlert) -> None:
        if self.alert_timing is not None:
            waited = max(0.0, (self.store.clock() - decision.passage.best_shot_ts).total_seconds())
            self.alert_timing[alert.event_id] = (waited, self._frame_started)

    # -- downlink and operator commands ----------------------------------------------

    def _inbox_room(self) -> bool:
        """Whether the MQTT thread may read more. Always while stopping: the loop no longer drains
        the inbox, and the publisher must still read its PUBACKs (what then does not fit is left
        unacknowledged, for the broker to redeliver at the next start)."""
        return self._stopping or self.inbox.qsize() < self.inbox_limit

    def _receive(self, message: Any, ack: Ack | None = None) -> None:
        """Called on the MQTT thread: hand over, decide (and acknowledge) on the main thread.

        A payload over `downlink.max_payload` and a retained message (a stale command the broker
        keeps) are refused here, without keeping their payload. The MQTT thread stops reading while
        `downlink.inbox` messages wait; a QoS 0 message that arrives all the same is dropped and
        counted, a QoS 1 message is queued in the room kept for it. Should even that be full, it is
        left unacknowledged: the broker keeps it and redelivers it after the next reconnect.
        """
        size = len(message.payload)
        limit = self.store.limits.max_payload
        if message.retain:
            inbound = Inbound(message.topic, b"", None, "a retained message on a command topic is never "
                                                       "applied (publish downlink messages without retain)")
        elif size > limit:
            inbound = Inbound(message.topic, b"", None, f"payload is {size} bytes, over the limit of "
                                                       f"{limit} bytes (downlink.max_payload)")
        else:
            properties = getattr(message, "properties", None)
            inbound = Inbound(message.topic, bytes(message.payload),
                              ReplyAddress(getattr(properties, "ResponseTopic", None),
                                           getattr(properties, "CorrelationData", None)))
        inbound.ack = ack
        if ack is None and self.inbox.qsize() >= self.inbox_limit:
            self._dropped_topic = message.topic
            self.inbox_dropped += 1
            return
        try:
            self.inbox.put_nowait(inbound)
        except queue.Full:
            self._dropped_topic = message.topic
            if ack is None:
                self.inbox_dropped += 1
            else:
                self.inbox_deferred += 1

    def _drain_inbox(self) -> None:
        """Hand waiting messages to the store for at most INBOX_BUDGET_S (plus the one in hand):
        frames, alerts and the watchdog are never starved by a flood."""
        dropped = self.inbox_dropped - self._inbox_reported
        if dropped:
            self._inbox_reported += dropped
            self.store.reject(self._dropped_topic, f"{dropped} QoS 0 downlink message(s) dropped: the inbox was "
                                                   f"full (downlink.inbox = {self.inbox_limit})", count=dropped)
        deferred = self.inbox_deferred - self._deferred_reported
        if deferred:
            self._deferred_reported += deferred
            self.store.reject(self._dropped_topic, f"{deferred} QoS 1 downlink message(s) left unacknowledged: the "
                                                   f"inbox was full; the broker redelivers them after a reconnect",
                              count=deferred)
        self.store.report_suppressed()
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
                if message.rejected is not None:
                    self.store.reject(message.topic, message.rejected)
                    continue
                reply = self.store.receive(message.topic, message.payload, message.reply)
                if reply is not None:
                    self.publisher.publish_now(reply.topic, reply.payload, qos=1, correlation=reply.correlation)
            except Exception:  # one bad message never stops the daemon (nor comes back at every reconnect)
                log.exception("downlink %s: not handled", message.topic)
            finally:
                if message.ack is not None:
                    self.publisher.ack(message.ack)

    def _handle_admin(self, request: AdminRequest) -> None:
        """An operator command from the admin channel: applied by the store, answered to the caller."""
        try:
            outcome = self.store.command(request.topic, request.payload, operator=True)
            request.finish(outcome.ok, outcome.reason, outcome.reply)
        except Exception as exc:  # answered, never fatal
            log.exception("admin %s: not handled", request.topic)
            request.finish(False, f"{type(exc).__name__}: {exc}")
