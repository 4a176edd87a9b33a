"""Frames to passages: people detected where something moved -> tracked -> faces looked for on
them -> (track ends) best shots embedded -> one passage a person.

One `Pipeline` per store, with a tracker and a motion gate per camera. A passage is a person
track: someone seen only from behind is still counted (without a face: `identified` false).
With an entry line, only people crossing it inwards are entries and those crossing outwards are
exits; cameras of one door see one person as one passage (`edge/doors.py`). Who each passage is
(member, staff, a new visit or a re-entry) is decided by the store, which owns the gallery and
the visit window (`edge/decisions.py`, `edge/store.py`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from footfall.config.schema import Config
from footfall.edge.decisions import Decision, Passage
from footfall.edge.doors import DoorJoin
from footfall.edge.entry_line import Direction, EntryLine, line_of
from footfall.edge.motion import MotionGate, detection_region
from footfall.edge.sources import FileSource, Frame, merge_by_time
from footfall.edge.tracking import EndedTrack, Tracker, create_engine
from footfall.recognition.analyzer import Face, FaceAnalyzer
from footfall.recognition.detect import Detection
from footfall.recognition.embed import l2_normalise
from footfall.recognition.persons import PersonBox, PersonDetector, person_detector_from_config

if TYPE_CHECKING:
    from footfall.edge.store import Store

# A track is matched against the gallery as soon as it holds this many gated shots (and again at
# the next count): a member's arrival pop-up need not wait for them to walk out of view.
EARLY_SHOTS = (2, 3)
STAGES = ("motion", "persons", "faces", "align", "tracking", "embed")
FACE_DETECT_PX = 24  # px: how tall the smallest usable face (quality min_face_px) is in the face detector's input

def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of unit embeddings, renormalised: one vector for a track's shots."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(vectors), 1.0 / len(vectors))
    return l2_normalise((w[:, None] * vectors).sum(axis=0, keepdims=True))[0]


def shot_weights(track: EndedTrack) -> np.ndarray:
    """Quality times face area: sharper, larger, more frontal shots count more."""
    return np.array([s.quality * s.area for s in track.shots])


def head_region(box: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    """Where a person's face can be: the top of their box (a third of it, at least as tall as the
    box is wide, so a close-up's head is inside), widened a little each side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    top = y1 - 0.05 * bh
    bottom = y1 + min(bh, max(bh / 3, bw))
    return (max(0, int(x1 - 0.1 * bw)), max(0, int(top)), min(w, int(np.ceil(x2 + 0.1 * bw))),
            min(h, int(np.ceil(bottom))))


def faces_to_persons(faces: list[Detection], regions: list[tuple[int, int, int, int]],
                     persons: list[PersonBox]) -> dict[int, int]:
    """Face index -> person index: a face goes to a person whose head region holds its centre,
    the nearest first (a head sits centred on top of its body: horizontal offset from the box's
    centre in box widths plus vertical offset from its top in box heights); one face a person."""
    pairs = []
    for fi, face in enumerate(faces):
        cx, cy = float(face.box[0] + face.box[2]) / 2, float(face.box[1] + face.box[3]) / 2
        for pi, (x1, y1, x2, y2) in enumerate(regions):
            if x1 <= cx <= x2 and y1 <= cy <= y2:
                bx1, by1, bx2, by2 = (float(v) for v in persons[pi].box)
                off = abs(cx - (bx1 + bx2) / 2) / max(bx2 - bx1, 1.0) + abs(float(face.box[1]) - by1) / max(by2 - by1, 1.0)
                pairs.append((off, fi, pi))
    owner: dict[int, int] = {}
    taken: set[int] = set()
    for _, fi, pi in sorted(pairs):
        if fi not in owner and pi not in taken:
            owner[fi] = pi
            taken.add(pi)
    return owner


class Pipeline:
    """The store's pipeline from frames to passages: a tracker and a motion gate per camera.

    `analyzer` None (or privacy.mode count_only) runs no face model at all: people are counted
    from their bodies only.
    """

    def __init__(self, config: Config, analyzer: FaceAnalyzer | None,
                 persons: PersonDetector | None = None) -> None:
        """`persons` defaults to the configured person detector (`person_detector_from_config`)."""
        self.faces = analyzer if config.privacy.mode == "recognise" else None
        self.persons = persons or person_detector_from_config(config)
        self.embedding = self.faces is not None
        t = config.tracking
        self.max_gap = t.max_gap.total_seconds()
        self.shots = t.shots
        self.engine = t.engine
        self.min_iou = t.min_iou
        self.min_hits = t.min_hits
        self.min_travel = t.min_travel
        self.lines: dict[str, EntryLine] = {}
        for camera in config.cameras:
            line = line_of(camera.entry_line, camera.inside)
            if line is not None:
                self.lines[camera.id] = line
        self.sizes: dict[str, tuple[int, int]] = {}
        distinct = analyzer.pack.threshold("dedup.threshold") / 2 if analyzer is not None and self.embedding else 1.0
        self.doors = DoorJoin({c.id: c.door for c in config.cameras if c.door}, t.door_join, distinct)
        self.trackers: dict[str, Tracker] = {}
        self.gates: dict[str, MotionGate] = {}
        self.motion_share = config.recognition.motion_share
        self.frames = 0
        self.embedded_faces = 0
        self.person_runs = 0
        self.stage_s: dict[str, float] = defaultdict(float)
        self.people: dict[str, int] = defaultdict(int)     # per camera: person tracks ended (min_hits frames)
        self.passed: dict[str, int] = defaultdict(int)     # ... of which passages

    def _tracker(self, camera_id: str) -> Tracker:
        tracker = self.trackers.get(camera_id)
        if tracker is None:
            score = self.persons.score_threshold
            make = lambda: create_engine(self.engine, max_gap=self.max_gap, min_iou=self.min_iou,  # noqa: E731
                                         score=score)
            tracker = self.trackers[camera_id] = Tracker(camera_id, max_gap=self.max_gap, shots=self.shots,
                                                         engine=make)
            self.gates[camera_id] = MotionGate(self.motion_share)
        return tracker

    def process(self, frame: Frame, *, early: bool = True) -> list[Passage]:
        """One frame in; the passages that ended by its time out (on every camera: a track ends by
        the clock, not by its camera's next frame), then, with `early`, views of the open tracks
        due for an early look at the gallery (`early_views`; never in count_only)."""
        self.frames += 1
        tracker = self._tracker(frame.camera_id)
        h, w = frame.image.shape[:2]
        self.sizes[frame.camera_id] = (w, h)
        persons = self._detect_persons(frame, tracker)
        faces = self._faces_on(frame.image, persons) if self.faces is not None else {}
        started = time.perf_counter()
        ended = tracker.update(frame.ts, persons, faces)
        for other in self.trackers.values():
            if other is not tracker:
                ended += other.expire(frame.ts)
        self.stage_s["tracking"] += time.perf_counter() - started
        passages = self.doors.add(self.passages(ended), frame.ts)
        return passages + self.early_views(tracker) if early and self.embedding else passages

    def _timed(self, stage: str, started: float) -> None:
        self.stage_s[stage] += time.perf_counter() - started

    def _detect_persons(self, frame: Frame, tracker: Tracker) -> list[PersonBox]:
        """People where something moved or where people were in the last frame (someone standing
        still makes no motion but must still be followed)."""
        image = frame.image
        h, w = image.shape[:2]
        started = time.perf_counter()
        if not self.motion_share:
            region: tuple[int, int, int, int] | None = (0, 0, w, h)
        else:
            motion = self.gates[frame.camera_id].motion(image)
            tracked = [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in tracker.last_boxes]
            region = detection_region(motion, tracked, w, h)
        self._timed("motion", started)
        if region is None:
            return []
        started = time.perf_counter()
        self.person_runs += 1
        x1, y1, x2, y2 = region
        if (x1, y1, x2, y2) == (0, 0, w, h):
            found = self.persons.detect(image)
        else:  # the region at the frame's scale: a small region costs little
            side = -(-round(max(x2 - x1, y2 - y1) * self.persons.long_side / max(w, h)) // 32) * 32
            found = self.persons.detect(image[y1:y2, x1:x2], long_side=max(side, 64))
        self._timed("persons", started)
        if (x1, y1) == (0, 0):
            return found
        offset = np.array([x1, y1, x1, y1], dtype=np.float32)
        return [PersonBox(p.box + offset, p.score) for p in found]

    def _faces_on(self, image: np.ndarray, persons: list[PersonBox]) -> dict[int, Face]:
        """Faces looked for in the upper part of each person box only; person index -> its face."""
        if not persons or self.faces is None:
            return {}
        h, w = image.shape[:2]
        regions = [head_region(p.box, w, h) for p in persons]
        x1, y1 = min(r[0] for r in regions), min(r[1] for r in regions)
        x2, y2 = max(r[2] for r in regions), max(r[3] for r in regions)
        if x2 - x1 < 8 or y2 - y1 < 8:
            return {}
        started = time.perf_counter()
        # Faces smaller than the quality gate's minimum are never used: the region is shrunk as
        # far as keeps that minimum FACE_DETECT_PX tall for the detector.
        scale = min(1.0, FACE_DETECT_PX / self.faces.limits.min_face_px)
        side = max(32, -(-round(max(x2 - x1, y2 - y1) * scale) // 32) * 32)
        found = self.faces.detector.detect(image[y1:y2, x1:x2], long_side=side)
        offset = np.array([x1, y1], dtype=np.float32)
        found = [Detection(d.box + np.tile(offset, 2), d.landmarks + offset, d.score) for d in found]
        self._timed("faces", started)
        owner = faces_to_persons(found, regions, persons)
        if not owner:
            return {}
        started = time.perf_counter()
        chosen = sorted(owner)
        assessed = self.faces.assess(image, [found[i] for i in chosen])
        self._timed("align", started)
        return {owner[fi]: face for fi, face in zip(chosen, assessed)}

    def finish(self) -> list[Passage]:
        """End every open track (end of replay or shutdown): their passages, and every one held for a door."""
        ended = [t for tracker in self.trackers.values() for t in tracker.finish()]
        return self.doors.add(self.passages(ended), None)

    def expire(self, now: datetime) -> list[Passage]:
        """Passages of the tracks unseen for `tracking.max_gap` by `now` on any camera, and those
        held for a door whose time has come: a stalled camera's tracks end on time."""
        ended = [t for tracker in self.trackers.values() for t in tracker.expire(now)]
        return self.doors.add(self.passages(ended), now)

    def early_views(self, tracker: Tracker) -> list[Passage]:
        """Views of the open tracks that just reached a shot count of `EARLY_SHOTS`: a member's
        arrival pop-up need not wait for them to walk out of view. Anonymous visitors wait for the
        end of their track (the window needs the whole passage)."""
        due = [t for t in tracker.tracks.values() if not t.decided and len(t.shots) in EARLY_SHOTS
               and len(t.shots) > t.early_tried_at]
        for track in due:
            track.early_tried_at = len(track.shots)
        views = [tracker.close(t) for t in due]
        return [replace(p, early_track=t.track_id, direction=None)
                for t, p in zip(due, self._embedded(views, early=True)) if p.embedding is not None]

    def settle(self, decisions: Iterable[Decision]) -> None:
        """Tracks recognised from an early view are final: their end decides nothing again."""
        for d in decisions:
            if d.passage.early_track is not None:
                track = self.trackers[d.passage.camera_id].tracks.get(d.passage.early_track)
                if track is not None:
                    track.decided = True

    def direction(self, track: EndedTrack) -> Direction | None:
        """"in" or "out" across the camera's entry line; None when it crossed nothing or there is no line."""
        line = self.lines.get(track.camera_id)
        if line is None or track.first_foot is None or track.last_foot is None:
            return None
        size = np.array(self.sizes.get(track.camera_id, (1, 1)), dtype=np.float32)
        return line.crossing(track.first_foot / size, track.last_foot / size)

    def is_passage(self, track: EndedTrack) -> bool:
        """A person track that is someone walking through: seen in `min_hits` frames, and either
        crossing the entry line or (without one) travelling `min_travel` box heights."""
        if track.decided or track.hits < self.min_hits:
            return False
        if track.camera_id in self.lines:
            return self.direction(track) is not None
        return track.travel >= self.min_travel

    def passages(self, ended: list[EndedTrack]) -> list[Passage]:
        """The passages among the ended tracks, their kept shots embedded in one batch (count_only:
        nothing embedded; the passage keeps only how many usable shots it had)."""
        for t in ended:
            if t.hits >= self.min_hits:
                self.people[t.camera_id] += 1
        chosen = [t for t in ended if self.is_passage(t)]
        for t in chosen:
            self.passed[t.camera_id] += 1
        return self._embedded(chosen)

    def _embedded(self, tracks: list[EndedTrack], early: bool = False) -> list[Passage]:
        out = []
        fresh = [s for t in tracks for s in t.shots if s.embedding is None] if self.embedding else []
        if fresh and self.faces is not None:
            started = time.perf_counter()
            for shot, vector in zip(fresh, self.faces.embedder.embed([s.crop for s in fresh])):
                shot.embedding = vector
            self.embedded_faces += len(fresh)
            self._timed("embed", started)
        for t in tracks:
            direction = None if early else self.direction(t)
            best_ts = max(t.shots, key=lambda s: s.quality).ts if t.shots else t.last_seen
            vectors = [s.embedding for s in t.shots if s.embedding is not None] if self.embedding else []
            embedding = aggregate(np.stack(vectors), shot_weights(t)) if vectors else None
            out.append(Passage(t.camera_id, t.first_seen, t.last_seen, best_ts, embedding, len(t.shots),
                               direction=direction))
        return out

def replay(pipeline: Pipeline, store: Store, sources: Iterable[FileSource]) -> list[Decision]:
    """Run file sources through the pipeline in media-clock order, to the end, and the store's
    decision on every passage (no event is raised: the daemon does that)."""
    decisions: list[Decision] = []
    for frame in merge_by_time(sources):
        decided = store.decide(pipeline.process(frame, early=store.knows_anyone))
        pipeline.settle(decided)
        decisions += decided
    return decisions + store.decide(pipeline.finish())
