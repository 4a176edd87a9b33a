"""Following faces across the frames of one camera, and keeping each track's best shots.

Association is SORT-like: each track's box is predicted with its velocity, detections are
matched greedily by overlap with the predictions, and where a detection overlaps several
predictions (people crossing) the appearance decides: the detection's embedding is compared
with each candidate track's. A track ends when unseen for `max_gap`; what it leaves is its
best few aligned faces, to be embedded once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from footfall.recognition.analyzer import Face
from footfall.recognition.boxes import iou

VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in the velocity estimate


@dataclass
class Shot:
    """One gated face of a track: when, how good, how large, its aligned crop (memory only), and
    its embedding once computed (so an early recognition's work is not repeated at the end)."""

    ts: datetime
    quality: float
    area: float
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    first_seen: datetime
    last_seen: datetime
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    hits: int = 1
    shots: list[Shot] = field(default_factory=list)
    appearance: np.ndarray | None = field(default=None, repr=False)  # embedding, only when needed
    decided: bool = False        # recognised (member or staff) before the track ended
    early_tried_at: int = 0      # number of shots at the last early recognition attempt

    def predict(self, ts: datetime) -> np.ndarray:
        """Where the box should be at `ts`, moving at the track's velocity."""
        return self.box + self.velocity * (ts - self.last_seen).total_seconds()

    def keep_shot(self, shot: Shot, limit: int) -> None:
        """Keep the `limit` best shots by quality."""
        self.shots.append(shot)
        self.shots.sort(key=lambda s: s.quality, reverse=True)
        del self.shots[limit:]


@dataclass(frozen=True)
class EndedTrack:
    """A track that ended; a passage when it has at least one gated shot."""

    camera_id: str
    track_id: int
    first_seen: datetime
    last_seen: datetime
    hits: int
    shots: tuple[Shot, ...]
    decided: bool = False


def affinity(predicted: np.ndarray, boxes: np.ndarray, min_iou: float) -> np.ndarray:
    """Track x detection scores: the overlap where it reaches `min_iou`, else a small proximity
    score for a box of similar size within one box width (a new track has no velocity yet, and a
    fast walker at 5 fps can move further than its box), else 0 (not allowed)."""
    overlap = np.stack([iou(p, boxes) for p in predicted])
    side = lambda b: np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))  # noqa: E731
    p_size, b_size = side(predicted)[:, None], side(boxes)[None, :]
    centre = lambda b: (b[:, :2] + b[:, 2:4]) / 2  # noqa: E731
    dist = np.linalg.norm(centre(predicted)[:, None, :] - centre(boxes)[None, :, :], axis=2)
    reach = np.maximum(p_size, b_size)
    similar = (np.minimum(p_size, b_size) / np.maximum(reach, 1e-6)) >= 0.7
    near = similar & (dist < reach)
    proximity = np.where(near, min_iou * (1 - dist / np.maximum(reach, 1e-6)), 0.0)
    return np.where(overlap >= min_iou, overlap, np.minimum(proximity, min_iou * 0.99))


def greedy_pairs(scores: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Row/column pairs taken greedily by descending score, each row and column once."""
    pairs = []
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in np.argsort(-scores, axis=None):
        r, c = np.unravel_index(flat, scores.shape)
        if scores[r, c] < minimum:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((int(r), int(c)))
        used_r.add(int(r))
        used_c.add(int(c))
    return pairs


class Tracker:
    """Tracks of one camera."""

    def __init__(self, camera_id: str, *, max_gap: float, min_iou: float, shots: int,
                 embed: Callable[[list[np.ndarray]], np.ndarray] | None = None) -> None:
        self.camera_id = camera_id
        self.max_gap = max_gap
        self.min_iou = min_iou
        self.shot_limit = shots
        self.embed = embed
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        self.appearance_checks = 0
        self.last_update: datetime | None = None

    def update(self, ts: datetime, faces: list[Face]) -> list[EndedTrack]:
        """Add one frame's faces; return the tracks that ended by `ts`."""
        ended = self._end_stale(ts)
        self.last_update = ts
        if self.tracks and faces:
            boxes = np.stack([f.detection.box for f in faces])
            predicted = np.stack([t.predict(ts) for t in self.tracks])
            overlap = affinity(predicted, boxes, self.min_iou)
            scores = self._disambiguate(overlap, faces)
            pairs = greedy_pairs(scores, 1e-6)
        else:
            pairs = []
        matched_faces = set()
        for ti, fi in pairs:
            self._extend(self.tracks[ti], faces[fi], ts)
            matched_faces.add(fi)
        for fi, face in enumerate(faces):
            if fi not in matched_faces:
                track = Track(next(self._ids), face.detection.box.copy(), ts, ts)
                self._add_shot(track, face, ts)
                self.tracks.append(track)
        return ended

    def finish(self) -> list[EndedTrack]:
        """End every open track (end of a file, shutdown)."""
        ended = [self._close(t) for t in self.tracks]
        self.tracks = []
        return ended

    def _end_stale(self, ts: datetime) -> list[EndedTrack]:
        stale = [t for t in self.tracks if (ts - t.last_seen).total_seconds() > self.max_gap]
        self.tracks = [t for t in self.tracks if t not in stale]
        return [self._close(t) for t in stale]

    def _close(self, track: Track) -> EndedTrack:
        return EndedTrack(self.camera_id, track.track_id, track.first_seen, track.last_seen, track.hits,
                          tuple(track.shots), track.decided)

    def _extend(self, track: Track, face: Face, ts: datetime) -> None:
        dt = (ts - track.last_seen).total_seconds()
        if dt > 0:
            step = (face.detection.box - track.box) / dt
            track.velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * track.velocity
        track.box = face.detection.box.copy()
        track.last_seen = ts
        track.hits += 1
        self._add_shot(track, face, ts)

    def _add_shot(self, track: Track, face: Face, ts: datetime) -> None:
        if face.quality.passed:
            area = face.detection.width * face.detection.height
            track.keep_shot(Shot(ts, face.quality.score, area, face.crop), self.shot_limit)

    def _disambiguate(self, overlap: np.ndarray, faces: list[Face]) -> np.ndarray:
        """Where a face overlaps several tracks (or a track several faces), add appearance similarity."""
        if self.embed is None:
            return overlap
        candidates = overlap > 0
        rows = np.flatnonzero(candidates.sum(axis=1) > 1)
        cols = np.flatnonzero(candidates.sum(axis=0) > 1)
        if not rows.size and not cols.size:
            return overlap
        involved_faces = sorted(set(cols) | {c for r in rows for c in np.flatnonzero(candidates[r])})
        involved_tracks = sorted(set(rows) | {r for c in cols for r in np.flatnonzero(candidates[:, c])})
        face_vecs = dict(zip(involved_faces, self.embed([faces[c].crop for c in involved_faces])))
        for r in involved_tracks:
            track = self.tracks[r]
            if track.appearance is None and track.shots:
                track.appearance = self.embed([track.shots[0].crop])[0]
        self.appearance_checks += 1
        scores = overlap.copy()
        for r in involved_tracks:
            appearance = self.tracks[r].appearance
            if appearance is None:
                continue
            for c in involved_faces:
                if candidates[r, c]:
                    scores[r, c] += float(appearance @ face_vecs[c])
        return scores
