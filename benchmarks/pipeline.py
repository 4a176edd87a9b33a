"""`footfall bench pipeline`: a generated store day through the whole pipeline and a naive loop.

The scenario is a store day at one entrance, rendered from labelled photos: strangers who come
once, come back within and after 3 hours, and after midnight; two members enrolled from other
photos than the camera sees; one member of staff. Both sides decode the same files at the same
sampled rate. Ours: people detected where something moved -> tracked -> faces looked for on
them -> best shots embedded once per passage -> window. The naive loop, what a user would write:
both detectors (people and faces) on every whole frame, as the models declare their inputs, in
default onnxruntime sessions; every face embedded, each matched against
the enrolled people and the visitors seen so far. Costs are reported per stage.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from tqdm import tqdm

from footfall.benchmarks import three_columns
from footfall.benchmarks.recognition import _insightface_eligible, _NaiveOnnx
from footfall.config.schema import CameraConfig, Config
from footfall.dedup.enrol import embeddings_from_photos
from footfall.dedup.gallery import Person
from footfall.edge import rules
from footfall.edge.decisions import Decision
from footfall.edge.pipeline import STAGES, Pipeline
from footfall.edge.sources import FileSource, Frame, merge_by_time
from footfall.edge.store import Store, open_gallery
from footfall.models.manifest import entry_for, locate
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.images import read_image
from footfall.recognition.onnx_session import ModelSession
from footfall.recognition.persons import PersonDetector, create_person_detector
from footfall.sync import events
from footfall.sync.mqtt_client import local_config, make_client
from footfall.tooling.scenario import (
    CAMERA,
    CLIP_FPS,
    SAMPLE_FPS,
    STORE_TZ,
    Appearance,
    Clip,
    Scenario,
    SpriteBank,
    build_scenario,
    enrolment,
    expected_counts,
    render_clip,
)


class Oracle:
    """Which labelled person an event was, from its time and its embedding."""

    def __init__(self, scenario: Scenario, analyzer: FaceAnalyzer, bank: SpriteBank) -> None:
        self.walks = scenario.walks
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        for w in self.walks:
            if (w.identity, w.photo) not in self.vectors:
                image = read_image(bank.faces_dir / w.identity / w.photo)
                self.vectors[(w.identity, w.photo)] = embeddings_from_photos(analyzer, [(w.photo, image)])[0]

    def identity(self, ts: datetime, embedding: np.ndarray | None) -> str:
        near = [w for w in self.walks if w.at - timedelta(seconds=2) <= ts <= w.leave + timedelta(seconds=2)]
        near = near or self.walks
        if embedding is None:  # an entrant counted without a usable face: the walker then in view
            return min(near, key=lambda w: abs((w.at - ts).total_seconds())).identity
        return max(near, key=lambda w: float(self.vectors[(w.identity, w.photo)] @ embedding)).identity


def score(events: Sequence[tuple[str, str | None, datetime, np.ndarray | None]], oracle: Oracle) -> dict[str, int]:
    """Counts of (kind, visitor key, ts, embedding) events, and merges of different people."""
    first_identity: dict[str | None, str] = {}
    out = {"visits": 0, "reentries": 0, "merges": 0}
    for kind, key, ts, vec in events:
        who = oracle.identity(ts, vec)
        if kind == "visit":
            out["visits"] += 1
            first_identity[key] = who
        else:
            out["reentries"] += 1
            out["merges"] += first_identity.get(key, who) != who
    return out


def run_ours(config: Config, scenario: Scenario, analyzer: FaceAnalyzer,
             progress: bool) -> tuple[list[Decision], int, float, Pipeline]:
    """(decisions, frames, seconds, the pipeline with its stage costs) over the scenario."""
    pipeline = Pipeline(config, analyzer)
    with Store(config, analyzer.pack.spec, media_clock=True) as store:
        for person, vectors in enrolment(scenario, analyzer):
            store.gallery.enroll(person, vectors)
        decisions, frames = [], 0
        start = time.perf_counter()
        for frame in tqdm(merge_by_time(scenario.sources()), desc="pipeline", disable=not progress, leave=False):
            decided = store.decide(pipeline.process(frame, early=store.knows_anyone))
            pipeline.settle(decided)
            decisions += decided
            frames += 1
        decisions += store.decide(pipeline.finish())
        return decisions, frames, time.perf_counter() - start, pipeline


class NaiveLoop:
    """Every face of every frame embedded and matched; a face unseen for a minute is a new entry."""

    def __init__(self, analyzer: FaceAnalyzer, config: Config) -> None:
        pack = analyzer.pack
        self.persons = naive_person_detector(config)
        self.threshold = pack.match_threshold
        self.window, self.tz = config.dedup.window, ZoneInfo(config.timezone)
        self.same_entry = config.dedup.same_entry
        if _insightface_eligible(pack):
            from insightface.app import FaceAnalysis

            self._tmp = tempfile.TemporaryDirectory()
            for p in (pack.detector_path, pack.recognizer_path):
                (Path(self._tmp.name) / p.name).symlink_to(p.resolve())
            self.app = FaceAnalysis(name=self._tmp.name, allowed_modules=["detection", "recognition"],
                                    providers=["CPUExecutionProvider"])
            self.app.prepare(ctx_id=-1, det_size=(640, 640))
            self.kind = "insightface FaceAnalysis.get() on every frame"
        else:
            self.app, self.naive = None, _NaiveOnnx(pack)
            self.kind = "same ONNX files, default sessions, every face of every frame"
        self.people: list[tuple[str, str, np.ndarray]] = []  # (id, role, embedding)
        self.visitors: list[dict] = []

    def faces(self, frame: Frame) -> list[np.ndarray]:
        self.persons.detect(frame.image)  # people counted by the naive loop's own tracking, not here
        if self.app is not None:
            return [f.normed_embedding for f in self.app.get(frame.image)]
        return [self.naive.embed(self.naive.align(frame.image, lm)) for _b, lm in self.naive.detect(frame.image)]

    def process(self, frame: Frame) -> list[tuple[str, str, datetime, np.ndarray]]:
        events = []
        for vec in self.faces(frame):
            person = max(self.people, key=lambda p: float(p[2] @ vec), default=None)
            if person and float(person[2] @ vec) >= self.threshold and person[1] == "staff":
                continue
            known = None
            if person and float(person[2] @ vec) >= self.threshold:
                known = next((v for v in self.visitors if v["key"] == person[0]), None)
                key = person[0]
            else:
                best = max(self.visitors, key=lambda v: float(v["vec"] @ vec), default=None)
                if best and float(best["vec"] @ vec) >= self.threshold:
                    known, key = best, best["key"]
                else:
                    key = f"v{len(self.visitors)}"
            if known is None:
                self.visitors.append({"key": key, "vec": vec, "last": frame.ts, "start": frame.ts})
                events.append(("visit", key, frame.ts, vec))
                continue
            gap = frame.ts - known["last"]
            known["last"] = frame.ts
            if gap <= self.same_entry:
                continue
            same_day = known["start"].astimezone(self.tz).date() == frame.ts.astimezone(self.tz).date()
            if gap < self.window and same_day:
                events.append(("reentry", key, frame.ts, vec))
            else:
                known["start"] = frame.ts
                events.append(("visit", key, frame.ts, vec))
        return events


def naive_person_detector(config: Config) -> PersonDetector:
    """The configured person detector as a user would run it: the same ONNX file in a default
    onnxruntime session, at the input size the model declares."""
    import dataclasses

    import onnxruntime as ort

    entry = entry_for(config.models.person_detector, "person_detector")
    path = locate(entry.file, config.models.dir)
    detector = create_person_detector(dataclasses.replace(entry, relax_input=False), path,
                                      score_threshold=config.tracking.person_score)
    assert isinstance(detector, ModelSession)
    detector.use_session(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    return detector


def member_days(bank: SpriteBank, out_dir: Path, members: int = 5,
                days: int = 4) -> tuple[list[FileSource], list[tuple[Person, list[str]]]]:
    """Clips of members arriving, one new visit each (a day apart, so one arrival alert per clip),
    and the members to enrol (from other photos than the clips show)."""
    people = [i for i in bank.identities() if i.startswith("deepface") and len(bank.photos(i)) >= 3][:members]
    sources = []
    for d in range(days):
        for k, who in enumerate(people):
            start = datetime(2026, 11, 23 + d, 10 + k, 0, tzinfo=ZoneInfo(STORE_TZ))
            clip = Clip(CAMERA, start, 5.0, (Appearance(who, bank.photos(who)[0], 0.4, walk=3.0),), fps=CLIP_FPS)
            path = render_clip(clip, out_dir / f"member{d}{k}.avi", bank, seed=100 + 10 * d + k)
            sources.append(FileSource(CAMERA, path, start, SAMPLE_FPS))
    enrol = [(Person(who, who, "member", tier="gold", consent=True), bank.photos(who)[1:3]) for who in people]
    return sources, enrol


def alert_latency(config: Config, bank: SpriteBank, analyzer: FaceAnalyzer, tmp: Path) -> list[float]:
    """Milliseconds from the frame of a member's best shot to the arrival alert at a subscriber.

    The daemon replays member clips through Mosquitto on loopback. A latency is the store-clock
    time from the best shot to the frame that decided (what a live camera would wait) plus the
    wall time from that frame's processing to the subscriber's receipt. Empty without Mosquitto.
    """
    from footfall.edge.daemon import Daemon
    from footfall.tooling.local_broker import LocalBroker, mosquitto_binary

    binary = mosquitto_binary()
    if binary is None:
        return []
    work = tmp / "latency"
    work.mkdir()
    sources, members = member_days(bank, work)
    broker = LocalBroker(work, binary)
    received: dict[str, float] = {}
    client = make_client(local_config(broker.port), "bench-latency", protocol="5")
    client.on_message = lambda c, u, m: received.update({json.loads(m.payload)["event_id"]: time.monotonic()})
    try:
        client.connect("127.0.0.1", broker.port)
        client.subscribe(events.topic(config.mqtt.topic_prefix, config.store_id, events.ALERT_ARRIVAL), qos=1)
        client.loop_start()
        run_config = config.model_copy(update={
            "timezone": STORE_TZ, "mqtt": config.mqtt.model_copy(update={"url": broker.url}),
            "storage": config.storage.model_copy(update={"dir": work / "state"})})
        gallery = open_gallery(run_config, analyzer)
        try:
            for person, photos in members:
                images = [(p, read_image(bank.faces_dir / person.person_id / p)) for p in photos]
                gallery.enroll(person, embeddings_from_photos(analyzer, images))
        finally:
            gallery.close()
        daemon = Daemon(run_config, once=True, analyzer=analyzer, replay=sources)
        daemon.alert_timing = {}
        daemon.run()
        deadline = time.monotonic() + 10
        while len(received) < len(daemon.alert_timing) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [1000 * (waited + received[eid] - started)
                for eid, (waited, started) in daemon.alert_timing.items() if eid in received]
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()


def bench_pipeline(config: Config, faces_dir: Path, *, size: str = "day", progress: bool = True,
                   with_latency: bool = True, door_cameras: int = 1) -> dict:
    """Run the scenario through both sides and return speed and counting accuracy; with
    `door_cameras=2` a second camera on the door films every walk again (joins are counted)."""
    analyzer = FaceAnalyzer.from_config(config)
    bank = SpriteBank(faces_dir, analyzer)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scenario = build_scenario(bank, tmp, config.dedup.window, size=size, door_cameras=door_cameras)
        truth = expected_counts(scenario.walks, scenario.window, scenario.tz)
        oracle = Oracle(scenario, analyzer, bank)
        run_config = config.model_copy(update={
            "timezone": STORE_TZ, "storage": config.storage.model_copy(update={"dir": tmp / "state"}),
            "cameras": [CameraConfig.model_validate(c) for c in scenario.cameras()]})
        decisions, frames, seconds, pipeline = run_ours(run_config, scenario, analyzer, progress)
        counted = [d for d in decisions if rules.counted(d)]
        ours = score([(d.kind, d.visitor_id, d.passage.best_shot_ts, d.passage.embedding) for d in counted], oracle)

        naive = NaiveLoop(analyzer, run_config)
        for person, vectors in enrolment(scenario, analyzer):
            naive.people += [(person.person_id, person.role, v) for v in vectors]
        events, naive_frames = [], 0
        start = time.perf_counter()
        for frame in tqdm(merge_by_time(scenario.sources()), desc="naive", disable=not progress, leave=False):
            events += naive.process(frame)
            naive_frames += 1
        naive_seconds = time.perf_counter() - start
        theirs = score(events, oracle)
        latencies = alert_latency(config, bank, analyzer, tmp) if with_latency else []
    member_visits = sum(1 for d in counted if d.kind == "visit" and d.member_id)
    stage_ms = {stage: round(1000 * pipeline.stage_s.get(stage, 0.0) / frames, 2) for stage in STAGES}
    stage_ms["decode_and_rest"] = round(1000 * seconds / frames - sum(stage_ms.values()), 2)
    return {
        "person_detector": pipeline.persons.entry.file,
        "tracker": run_config.tracking.engine,
        "stage_ms_per_frame": stage_ms,
        "person_detector_runs": pipeline.person_runs,
        "detector": analyzer.pack.detector.file,
        "recognizer": analyzer.pack.recognizer.file,
        "clips": len(scenario.clips), "frames": frames, "walks": len(scenario.walks),
        "fps": round(frames / seconds, 2),
        "naive_fps": round(naive_frames / naive_seconds, 2),
        "speedup": round((frames / seconds) / (naive_frames / naive_seconds), 2),
        "visits_true": truth.get("visits", 0), "visits_counted": ours["visits"],
        "reentries_true": truth.get("reentries", 0), "reentries_counted": ours["reentries"],
        "member_visits_true": truth.get("member_visits", 0), "member_visits_counted": member_visits,
        "merges_of_different_people": ours["merges"],
        "staff_passages": sum(d.kind == "staff" for d in decisions),
        "embedded_faces": pipeline.embedded_faces,
        "unidentified_true": truth.get("unidentified", 0),
        "unidentified_counted": sum(1 for d in counted if d.kind == "visit" and not d.identified),
        "exits_true": truth.get("exits", 0), "exits_counted": sum(d.kind == "exit" for d in decisions),
        "door_joins": pipeline.doors.joins,
        "naive": naive.kind,
        "naive_visits_counted": theirs["visits"], "naive_reentries_counted": theirs["reentries"],
        "naive_merges_of_different_people": theirs["merges"],
        "alerts_measured": len(latencies),
        "alert_latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
        "alert_latency_ms_p95": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
    }


def format_table(r: dict) -> str:
    """The figures as a short table for people."""
    rows = [
        ("models", f"{r['person_detector']} + {r['detector']} + {r['recognizer']}", f"tracker {r['tracker']}"),
        ("ms per frame by stage", ", ".join(f"{k} {v}" for k, v in r["stage_ms_per_frame"].items()), ""),
        ("scenario", f"{r['clips']} clips, {r['walks']} walk-ins, {r['frames']} frames", ""),
        ("", "footfall", "naive"),
        ("frames/s", f"{r['fps']}", f"{r['naive_fps']}"),
        ("visits (true {})".format(r["visits_true"]), f"{r['visits_counted']}", f"{r['naive_visits_counted']}"),
        ("re-entries (true {})".format(r["reentries_true"]), f"{r['reentries_counted']}", f"{r['naive_reentries_counted']}"),
        ("member visits (true {})".format(r["member_visits_true"]), f"{r['member_visits_counted']}", ""),
        ("unidentified visits (true {})".format(r["unidentified_true"]), f"{r['unidentified_counted']}", ""),
        ("exits (true {})".format(r["exits_true"]), f"{r['exits_counted']}", ""),
        ("merges of different people", f"{r['merges_of_different_people']}", f"{r['naive_merges_of_different_people']}"),
        ("speed-up vs naive", f"{r['speedup']}x", r["naive"]),
        ("arrival alert latency p50 / p95", f"{r['alert_latency_ms_p50']} / {r['alert_latency_ms_p95']} ms"
         f" ({r['alerts_measured']} alerts)", "best-shot frame -> subscriber, via Mosquitto on loopback"),
    ]
    return three_columns(rows)
