"""Frames to passages: detect -> track -> (track ends) embed best shots -> one passage a person.

One `Pipeline` per store, with a tracker per camera. Who each passage is (member, staff, a new
visit or a re-entry) is decided by the store, which owns the gallery and the visit window
(`edge/decisions.py`, `edge/store.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from footfall.config.schema import Config
from footfall.edge.decisions import Decision, Passage
from footfall.edge.motion import MotionGate, detection_region
from footfall.edge.sources import FileSource, Frame, merge_by_time
from footfall.edge.tracking import EndedTrack, Tracker
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.detect import Detection
from footfall.recognition.embed import l2_normalise

if TYPE_CHECKING:
    from footfall.edge.store import Store

# A track is matched against the gallery as soon as it holds this many gated shots (and again at
# the next count): a member's arrival pop-up need not wait for them to walk out of view.
EARLY_SHOTS = (2, 3)


def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of unit embeddings, renormalised: one vector for a track's shots."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(vectors), 1.0 / len(vectors))
    return l2_normalise((w[:, None] * vectors).sum(axis=0, keepdims=True))[0]


def shot_weights(track: EndedTrack) -> np.ndarray:
    """Quality times face area: sharper, larger, more frontal shots count more."""
    return np.array([s.quality * s.area for s in track.shots])


class Pipeline:
    """The store's recognition pipeline from frames to passages: a tracker and a motion gate per camera."""

    def __init__(self, config: Config, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer
        # count_only: no face is ever embedded (nor told apart by appearance while tracking).
        self.embedding = config.privacy.mode == "recognise"
        t = config.tracking
        self._tracker_args: dict[str, Any] = dict(max_gap=t.max_gap.total_seconds(), min_iou=t.min_iou, shots=t.shots,
                                                  embed=analyzer.embedder.embed if self.embedding else None)
        self.min_hits = t.min_hits
        self.trackers: dict[str, Tracker] = {}
        self.gates: dict[str, MotionGate] = {}
        self.motion_share = config.recognition.motion_share
        self.frames = 0
        self.embedded_faces = 0

    def process(self, frame: Frame, *, early: bool = True) -> list[Passage]:
        """One frame in; the passages that ended by its time out, then, with `early`, views of the
        open tracks due for an early look at the gallery (`early_views`; never in count_only)."""
        self.frames += 1
        tracker = self.trackers.get(frame.camera_id)
        if tracker is None:
            tracker = self.trackers[frame.camera_id] = Tracker(frame.camera_id, **self._tracker_args)
            self.gates[frame.camera_id] = MotionGate(self.motion_share)
        faces = self.analyzer.assess(frame.image, self._detect(frame, tracker))
        passages = self.passages(tracker.update(frame.ts, faces))
        return passages + self.early_views(tracker) if early and self.embedding else passages
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

    def finish(self) -> list[Passage]:
        """End every open track (end of replay or shutdown): their passages."""
        return self.passages([t for tracker in self.trackers.values() for t in tracker.finish()])

    def early_views(self, tracker: Tracker) -> list[Passage]:
        """Views of the open tracks that just reached a shot count of `EARLY_SHOTS`: a member's
        arrival pop-up need not wait for them to walk out of view. Anonymous visitors wait for the
        end of their track (the window needs the whole passage)."""
        due = [t for t in tracker.tracks if not t.decided and len(t.shots) in EARLY_SHOTS
               and len(t.shots) > t.early_tried_at]
        for track in due:
            track.early_tried_at = len(track.shots)
        views = [EndedTrack(tracker.camera_id, t.track_id, t.first_seen, t.last_seen, t.hits, tuple(t.shots))
                 for t in due]
        return [replace(p, early_track=t.track_id) for t, p in zip(due, self.passages(views))
                if p.embedding is not None]

    def settle(self, decisions: Iterable[Decision]) -> None:
        """Tracks recognised from an early view are final: their end decides nothing again."""
        for d in decisions:
            if d.passage.early_track is not None:
                for track in self.trackers[d.passage.camera_id].tracks:
                    if track.track_id == d.passage.early_track:
                        track.decided = True

    def passages(self, ended: list[EndedTrack]) -> list[Passage]:
        """Embed the kept shots of every ended track in one batch (count_only: embed nothing; the
        passage keeps only how many usable shots it had).

        A track without a usable shot is still someone walking in: a passage without an embedding
        when the face was seen in at least `tracking.min_hits` frames (fewer is a flicker, and a
        poster's face is gated or matched like anyone's); otherwise nothing.
        """
        out = [Passage(t.camera_id, t.first_seen, t.last_seen, t.last_seen, None, 0)
               for t in ended if not t.shots and not t.decided and t.hits >= self.min_hits]
        kept = [t for t in ended if t.shots and not t.decided]
        if not self.embedding:
            return out + [Passage(t.camera_id, t.first_seen, t.last_seen, max(t.shots, key=lambda s: s.quality).ts,
                                  None, len(t.shots)) for t in kept]
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


def replay(pipeline: Pipeline, store: Store, sources: Iterable[FileSource]) -> list[Decision]:
    """Run file sources through the pipeline in media-clock order, to the end, and the store's
    decision on every passage (no event is raised: the daemon does that)."""
    decisions: list[Decision] = []
    for frame in merge_by_time(sources):
        decided = store.decide(pipeline.process(frame, early=store.knows_anyone))
        pipeline.settle(decided)
        decisions += decided
    return decisions + store.decide(pipeline.finish())
