"""Tracking: one track per person walking through, the best shots kept, crossings resolved by appearance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from footfall.edge.tracking import Tracker, greedy_pairs
from footfall.recognition.analyzer import Face
from footfall.recognition.detect import Detection
from footfall.recognition.quality import Quality

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def face(x: float, y: float, size: float, quality: float = 0.8, passed: bool = True, tag: int = 0) -> Face:
    box = np.array([x, y, x + size, y + size], dtype=np.float32)
    crop = np.full((128, 128, 3), tag, dtype=np.uint8)
    q = Quality(size, 0.9, 100.0, 0.1, 0.0, () if passed else ("blurred (sharpness 5 < 25)",), quality)
    return Face(Detection(box, np.zeros((5, 2), np.float32), 0.9), q, crop)


def walk(tracker: Tracker, steps: int, start: tuple[float, float], step: tuple[float, float], fps: float = 5.0,
         t0: datetime = T0, **kw):
    ended = []
    for i in range(steps):
        x, y = start[0] + i * step[0], start[1] + i * step[1]
        ended += tracker.update(t0 + timedelta(seconds=i / fps), [face(x, y, 60 + 3 * i, **kw)])
    return ended


def tracker(**kw) -> Tracker:
    return Tracker("door-1", **{"max_gap": 1.0, "min_iou": 0.15, "shots": 3, **kw})


def test_a_person_walking_through_is_one_track_that_ends_after_the_gap():
    t = tracker()
    assert walk(t, 15, (400, 50), (0, 25)) == []
    assert t.update(T0 + timedelta(seconds=3.5), []) == []  # 0.7 s unseen: still open
    ended = t.update(T0 + timedelta(seconds=4.1), [])
    assert len(ended) == 1
    track = ended[0]
    assert track.hits == 15 and track.camera_id == "door-1"
    assert track.first_seen == T0 and track.last_seen == T0 + timedelta(seconds=14 / 5)


def test_only_the_best_shots_are_kept_and_failed_faces_never():
    t = tracker(shots=3)
    qualities = [0.2, 0.9, 0.1, 0.7, 0.95, 0.3]
    for i, q in enumerate(qualities):
        t.update(T0 + timedelta(seconds=i / 5), [face(400, 50 + 20 * i, 80, quality=q)])
    t.update(T0 + timedelta(seconds=1.4), [face(400, 170, 80, quality=0.99, passed=False)])
    (track,) = t.finish()
    assert [s.quality for s in track.shots] == [0.95, 0.9, 0.7]


def test_a_track_whose_faces_all_failed_the_gate_has_no_shots():
    t = tracker()
    walk(t, 5, (400, 50), (0, 25), passed=False)
    (track,) = t.finish()
    assert track.shots == ()


def test_two_people_walking_apart_are_two_tracks():
    t = tracker()
    for i in range(10):
        ts = T0 + timedelta(seconds=i / 5)
        t.update(ts, [face(200, 50 + 25 * i, 70), face(700, 60 + 25 * i, 70)])
    ended = t.finish()
    assert len(ended) == 2 and all(e.hits == 10 for e in ended)


def test_fast_motion_is_followed_through_the_velocity_prediction():
    t = tracker(min_iou=0.3)
    walk(t, 10, (100, 50), (45, 30))  # 45 px a frame sideways with a 60-90 px box
    assert len(t.finish()) == 1


def test_crossing_people_keep_their_identity_when_appearance_decides():
    def embed(crops):
        # appearance = the crop's grey level: tag 10 and tag 200 are two different people
        return np.array([[1.0, 0.0] if c[0, 0, 0] < 100 else [0.0, 1.0] for c in crops], dtype=np.float32)

    t = tracker(embed=embed, min_iou=0.1)
    for i in range(8):  # A moves right, B moves left, overlapping in the middle frames
        ts = T0 + timedelta(seconds=i / 5)
        t.update(ts, [face(300 + 20 * i, 200, 80, tag=10), face(440 - 20 * i, 205, 80, tag=200)])
    ended = t.finish()
    assert len(ended) == 2
    for track in ended:
        tags = {int(s.crop[0, 0, 0]) for s in track.shots}
        assert len(tags) == 1, "a track must not swap people at the crossing"
    assert t.appearance_checks > 0


def test_greedy_pairs_take_the_best_overlaps_once_each():
    scores = np.array([[0.9, 0.5], [0.8, 0.1]])
    assert greedy_pairs(scores, 0.2) == [(0, 0)]
    assert greedy_pairs(np.array([[0.9, 0.5], [0.8, 0.3]]), 0.2) == [(0, 0), (1, 1)]
