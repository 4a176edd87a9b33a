"""Frames to decisions: detect -> track -> (track ends) embed best shots -> who is it.

One `Pipeline` per store: a tracker per camera, one gallery (members and staff) and one
visit window shared by all cameras.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from footfall.config.schema import Config
from footfall.dedup.gallery import Gallery, Match, Person
from footfall.dedup.window import VisitWindow
from footfall.edge import rules
from footfall.edge.motion import MotionGate, detection_region
from footfall.edge.sources import FileSource, Frame, merge_by_time
from footfall.edge.tracking import EndedTrack, Tracker
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.detect import Detection
from footfall.recognition.embed import l2_normalise

EXPIRY_EVERY = timedelta(seconds=30)
# A track is matched against the gallery as soon as it holds this many gated shots (and again at
# the next count): a member's arrival pop-up need not wait for them to walk out of view.
EARLY_SHOTS = (2, 3)


@dataclass(frozen=True)
class Passage:
    """One person walking through the entrance once, as one camera saw them."""

    camera_id: str
    first_seen: datetime
    last_seen: datetime
    best_shot_ts: datetime
    embedding: np.ndarray | None  # None: the track never gave a usable shot (turned away, blurred)
    shots: int


@dataclass(frozen=True)
class Decision:
    """What a passage means for the store's counts."""

    kind: Literal["visit", "reentry", "same_entry", "staff"]
    passage: Passage
    visitor_id: str | None
    member_id: str | None
    person: Person | None
    visit_started: datetime | None
    score: float | None
    recognised_late: bool = False  # the member's first recognition in a visit they began unrecognised

    @property
    def identified(self) -> bool:
        """False for an entrant counted without a usable face: never matched to anyone."""
        return self.passage.embedding is not None

    @property
    def role(self) -> str:
        """"staff", else the role the visit is published with (`rules.role`)."""
        return "staff" if self.kind == "staff" else rules.role(self.member_id)


def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of unit embeddings, renormalised: one vector for a track's shots."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(vectors), 1.0 / len(vectors))
    return l2_normalise((w[:, None] * vectors).sum(axis=0, keepdims=True))[0]


def shot_weights(track: EndedTrack) -> np.ndarray:
    """Quality times face area: sharper, larger, more frontal shots count more."""
    return np.array([s.quality * s.area for s in track.shots])


class Pipeline:
    """The store's recognition pipeline from frames to decisions."""

    def __init__(self, config: Config, analyzer: FaceAnalyzer, gallery: Gallery, window: VisitWindow) -> None:
        self.analyzer = analyzer
        self.gallery = gallery
        self.window = window
        t = config.tracking
        self._tracker_args: dict[str, Any] = dict(max_gap=t.max_gap.total_seconds(), min_iou=t.min_iou,
                                                  shots=t.shots, embed=analyzer.embedder.embed)
        self.min_hits = t.min_hits
        self.trackers: dict[str, Tracker] = {}
        self.gates: dict[str, MotionGate] = {}
        self.motion_share = config.recognition.motion_share
        self._next_expiry: datetime | None = None
        self.frames = 0
        self.embedded_faces = 0

    def process(self, frame: Frame) -> list[Decision]:
        """One frame in; decisions for the passages that ended by its time out."""
        self.frames += 1
        tracker = self.trackers.get(frame.camera_id)
        if tracker is None:
            tracker = self.trackers[frame.camera_id] = Tracker(frame.camera_id, **self._tracker_args)
            self.gates[frame.camera_id] = MotionGate(self.motion_share)
        faces = self.analyzer.assess(frame.image, self._detect(frame, tracker))
        decisions = self.decide(tracker.update(frame.ts, faces))
        decisions += self.recognise_early(tracker)
        # Expire only after deciding: the passages that just ended entered before this frame.
        self._expire(frame.ts)
        return decisions

    def _detect(self, frame: Frame, tracker: Tracker) -> list[Detection]:
        """Faces where something moved or where people were in the last frame (someone standing
        still makes no motion but must still be seen)."""
        image = frame.image
        if not self.motion_share:
            return self.analyzer.detector.detect(image)
        h, w = image.shape[:2]
        motion = self.gates[frame.camera_id].motion(image)
        tracked = [(int(t.box[0]), int(t.box[1]), int(t.box[2]), int(t.box[3]))
                   for t in tracker.tracks if t.last_seen == tracker.last_update]
        region = detection_region(motion, tracked, w, h)
        if region is None:
            return []
        x1, y1, x2, y2 = region
        if (x1, y1, x2, y2) == (0, 0, w, h):
            return self.analyzer.detector.detect(image)
        # The region at no more than native resolution: its faces are as large as in the frame.
        found = self.analyzer.detector.detect(image[y1:y2, x1:x2], long_side=-(-max(x2 - x1, y2 - y1) // 32) * 32)
        offset = np.array([x1, y1], dtype=np.float32)
        return [Detection(d.box + np.tile(offset, 2), d.landmarks + offset, d.score) for d in found]

    def finish(self) -> list[Decision]:
        """End every open track (end of replay or shutdown) and decide on them."""
        ended = [t for tracker in self.trackers.values() for t in tracker.finish()]
        return self.decide(ended)

    def recognise_early(self, tracker: Tracker) -> list[Decision]:
        """Members and staff among the open tracks, decided before their tracks end.

        Anonymous visitors wait for the end of their track (the window needs the whole
        passage); a gallery match is final at once, and the track is not decided again.
        """
        if not len(self.gallery):
            return []
        due = [t for t in tracker.tracks if not t.decided and len(t.shots) in EARLY_SHOTS
               and len(t.shots) > t.early_tried_at]
        if not due:
            return []
        for track in due:
            track.early_tried_at = len(track.shots)
        views = [EndedTrack(tracker.camera_id, t.track_id, t.first_seen, t.last_seen, t.hits, tuple(t.shots))
                 for t in due]
        decisions = []
        for track, passage in zip(due, self.passages(views)):
            if passage.embedding is None:  # early passages are made of embedded shots only
                continue
            match = self.gallery.match(passage.embedding)
            if match is not None:
                track.decided = True
                decisions.append(self._known(passage, match))
        return decisions

    def passages(self, ended: list[EndedTrack]) -> list[Passage]:
        """Embed the kept shots of every ended track in one batch.

        A track without a usable shot is still someone walking in: a passage without an embedding
        when the face was seen in at least `tracking.min_hits` frames (fewer is a flicker, and a
        poster's face is gated or matched like anyone's); otherwise nothing.
        """
        out = [Passage(t.camera_id, t.first_seen, t.last_seen, t.last_seen, None, 0)
               for t in ended if not t.shots and not t.decided and t.hits >= self.min_hits]
        kept = [t for t in ended if t.shots and not t.decided]
        fresh = [s for t in kept for s in t.shots if s.embedding is None]
        if fresh:
            for shot, vector in zip(fresh, self.analyzer.embedder.embed([s.crop for s in fresh])):
                shot.embedding = vector
            self.embedded_faces += len(fresh)
        for track in kept:
            best = max(track.shots, key=lambda s: s.quality)
            vectors = np.stack([s.embedding for s in track.shots if s.embedding is not None])
            out.append(Passage(track.camera_id, track.first_seen, track.last_seen, best.ts,
                               aggregate(vectors, shot_weights(track)), len(track.shots)))
        return out

    def decide(self, ended: list[EndedTrack]) -> list[Decision]:
        """Staff, member, re-entry or new visit, in order of entry time."""
        decisions = []
        for passage in sorted(self.passages(ended), key=lambda p: p.first_seen):
            if passage.embedding is None:
                # counted, never matched: nothing to compare with, so a new visit by a new id
                decisions.append(Decision("visit", passage, uuid.uuid4().hex, None, None, passage.first_seen, None))
                continue
            match = self.gallery.match(passage.embedding)
            if match:
                decisions.append(self._known(passage, match))
                continue
            entry = self.window.enter_anonymous(passage.embedding, passage.first_seen)
            # An unrecognised passage can re-enter a member's open visit (another camera, a turned head).
            person = self.gallery.get(entry.member_id) if entry.member_id else None
            decisions.append(Decision(entry.kind, passage, entry.visitor_id, entry.member_id, person,
                                      entry.visit_started, entry.score))
        return decisions

    def _known(self, passage: Passage, match: Match) -> Decision:
        """The decision for a gallery match: staff are not counted, members enter by their id."""
        if match.person.role == "staff":
            return Decision("staff", passage, None, None, match.person, None, match.score)
        entry = self.window.enter_member(match.person.person_id, passage.first_seen, passage.embedding)
        return Decision(entry.kind, passage, entry.visitor_id, entry.member_id, match.person,
                        entry.visit_started, match.score, entry.recognised_late)

    def close(self) -> None:
        """Close the gallery and the window stores."""
        self.gallery.close()
        self.window.close()

    def _expire(self, now: datetime) -> None:
        if self._next_expiry is None or now >= self._next_expiry:
            self.window.expire(now)
            self._next_expiry = now + EXPIRY_EVERY


def open_gallery(config: Config, analyzer: FaceAnalyzer) -> Gallery:
    """The store's member and staff gallery, in `storage.dir/gallery.db`."""
    pack = analyzer.pack
    return Gallery(dim=analyzer.embedder.dim, threshold=pack.threshold("members.threshold"),
                   margin=pack.threshold("members.margin"), model_sha256=pack.recognizer.sha256,
                   db_path=Path(config.storage.dir) / "gallery.db", max_vectors=config.members.max_vectors,
                   max_tombstones=config.downlink.tombstones)


def open_window(config: Config, analyzer: FaceAnalyzer, now: datetime | None = None) -> VisitWindow:
    """The store's visit window: `storage.dir/windows.db`, or memory only by config."""
    pack = analyzer.pack
    db = None if config.privacy.anonymous_store == "memory" else Path(config.storage.dir) / "windows.db"
    return VisitWindow(dim=analyzer.embedder.dim, window=config.dedup.window, timezone=config.timezone,
                       threshold=pack.threshold("dedup.threshold"), margin=pack.threshold("dedup.margin"),
                       same_entry=config.dedup.same_entry, db_path=db, now=now)


def build_pipeline(config: Config, analyzer: FaceAnalyzer | None = None) -> Pipeline:
    """Everything a store needs to turn frames into decisions, from its config."""
    analyzer = analyzer or FaceAnalyzer.from_config(config)
    return Pipeline(config, analyzer, open_gallery(config, analyzer), open_window(config, analyzer))


def replay(pipeline: Pipeline, sources: Iterable[FileSource]) -> list[Decision]:
    """Run file sources through the pipeline in media-clock order, to the end."""
    decisions: list[Decision] = []
    for frame in merge_by_time(sources):
        decisions += pipeline.process(frame)
    return decisions + pipeline.finish()
