"""Following people across the frames of one camera, with the faces found on them.

Association is done by a multi-object tracker of the field (the `trackers` package: ByteTrack
by default, OC-SORT or SORT by `tracking.engine`): person boxes matched to Kalman-predicted
tracks, on the frames' own timestamps. This module owns what a track means to the store: when it
was first and last seen, where its feet went (for the entry line), how far it travelled, and its
best face shots. A track ends when unseen for `max_gap` by the frames' clock (`expire`), whatever
the engine still keeps in its memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from footfall.recognition.analyzer import Face
from footfall.recognition.persons import PersonBox

Engine = Literal["bytetrack", "ocsort", "sort"]


@dataclass
class Shot:
    """One gated face of a track: when, how good, how large, its aligned crop (memory only), and
    its embedding once computed (so an early recognition's work is not repeated at the end)."""

    ts: datetime
    quality: float
    area: float
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)


def foot(box: np.ndarray) -> np.ndarray:
    """Bottom centre of a person box: where the person stands."""
    return np.array([(box[0] + box[2]) / 2, box[3]], dtype=np.float32)


@dataclass
class Track:
    """A person followed by one camera."""

    track_id: int
    box: np.ndarray
    first_seen: datetime
    last_seen: datetime
    first_foot: np.ndarray
    first_height: float = 1.0
    hits: int = 1
    face_hits: int = 0            # frames in which a face was found on this person
    travel: float = 0.0           # how far the person went: feet moved in box heights plus log change of size
    shots: list[Shot] = field(default_factory=list)
    decided: bool = False         # recognised (member or staff) before the track ended
    early_tried_at: int = 0       # number of shots at the last early recognition attempt

    def keep_shot(self, shot: Shot, limit: int) -> None:
        """Keep the `limit` best shots by quality."""
        self.shots.append(shot)
        self.shots.sort(key=lambda s: s.quality, reverse=True)
        del self.shots[limit:]


@dataclass(frozen=True)
class EndedTrack:
    """A track that ended (or an open track's view, for an early look at the gallery)."""

    camera_id: str
    track_id: int
    first_seen: datetime
    last_seen: datetime
    hits: int
    shots: tuple[Shot, ...]
    decided: bool = False
    first_foot: np.ndarray | None = field(default=None, repr=False)
    last_foot: np.ndarray | None = field(default=None, repr=False)
    travel: float = 0.0
    face_hits: int = 0


def create_engine(engine: Engine, *, max_gap: float, min_iou: float, score: float) -> Any:
    """A tracker of the `trackers` package that keeps lost tracks for `max_gap` seconds."""
    import trackers

    buffer = max(1, round(max_gap * 30))  # the package counts the buffer in 30 frames/s frames
    if engine == "bytetrack":
        return trackers.ByteTrackTracker(lost_track_buffer=buffer, track_activation_threshold=score,
                                         minimum_consecutive_frames=1, minimum_iou_threshold=min_iou,
                                         high_conf_det_threshold=max(score, 0.5))
    if engine == "ocsort":
        return trackers.OCSORTTracker(lost_track_buffer=buffer, minimum_consecutive_frames=1,
                                      minimum_iou_threshold=min_iou)
    return trackers.SORTTracker(lost_track_buffer=buffer, track_activation_threshold=score,
                                minimum_consecutive_frames=1, minimum_iou_threshold=min_iou)


class Tracker:
    """Person tracks of one camera: association by the engine, lifetime and shots by the clock."""

    def __init__(self, camera_id: str, *, max_gap: float, shots: int,
                 engine: Callable[[], Any]) -> None:
        self.camera_id = camera_id
        self.max_gap = max_gap
        self.shot_limit = shots
        self._make_engine = engine
        self._engine = engine()
        self._origin: datetime | None = None
        self.tracks: dict[int, Track] = {}
        self.last_update: datetime | None = None
        self.last_boxes: list[np.ndarray] = []  # the last frame's people, followed or not yet
        self.opened = 0

    def update(self, ts: datetime, persons: list[PersonBox], faces: dict[int, Face]) -> list[EndedTrack]:
        """One frame: its person boxes and the face found on some of them (by person index);
        the tracks that ended by `ts`."""
        ended = self.expire(ts)
        if self._origin is None:
            self._origin = ts
        self.last_update = ts
        self.last_boxes = [p.box for p in persons]
        for index, track_id in self._associate(ts, persons):
            self._extend(track_id, persons[index], faces.get(index), ts)
        return ended

    def expire(self, now: datetime) -> list[EndedTrack]:
        """End the tracks unseen for more than `max_gap` by `now`."""
        stale = [t for t in self.tracks.values() if (now - t.last_seen).total_seconds() > self.max_gap]
        for t in stale:
            del self.tracks[t.track_id]
        return [self.close(t) for t in stale]

    def finish(self) -> list[EndedTrack]:
        """End every open track (end of a file, shutdown); the engine starts afresh."""
        ended = [self.close(t) for t in self.tracks.values()]
        self.tracks = {}
        self._engine = self._make_engine()
        self._origin = None
        return ended

    def close(self, track: Track) -> EndedTrack:
        """What is left of a track: times, feet, travel and its shots."""
        return EndedTrack(self.camera_id, track.track_id, track.first_seen, track.last_seen, track.hits,
                          tuple(track.shots), track.decided, track.first_foot, foot(track.box), track.travel,
                          track.face_hits)

    def _associate(self, ts: datetime, persons: list[PersonBox]) -> list[tuple[int, int]]:
        """(person index, engine track id) for every person the engine follows."""
        import supervision as sv

        assert self._origin is not None
        boxes = np.array([p.box for p in persons], dtype=np.float32).reshape(-1, 4)
        detections = sv.Detections(xyxy=boxes, confidence=np.array([p.score for p in persons], np.float32),
                                   data={"index": np.arange(len(persons))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracked = self._engine.update(detections, timestamp=(ts - self._origin).total_seconds())
        if not len(tracked):
            return []
        return [(int(i), int(t)) for i, t in zip(tracked.data["index"], tracked.tracker_id) if t >= 0]

    def _extend(self, track_id: int, person: PersonBox, face: Face | None, ts: datetime) -> None:
        track = self.tracks.get(track_id)
        if track is None:
            track = self.tracks[track_id] = Track(track_id, person.box.copy(), ts, ts, foot(person.box),
                                                  max(person.height, 1.0))
            self.opened += 1
        else:
            track.hits += 1
            track.last_seen = ts
            track.box = person.box.copy()
        height = max(person.height, 1.0)
        moved = float(np.linalg.norm(foot(person.box) - track.first_foot)) / height
        track.travel = max(track.travel, moved + abs(float(np.log(height / track.first_height))))
        if face is not None:
            track.face_hits += 1
            if face.quality.passed:
                area = face.detection.width * face.detection.height
                track.keep_shot(Shot(ts, face.quality.score, area, face.crop), self.shot_limit)
