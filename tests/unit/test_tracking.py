"""Person tracking: one track per person walking through, ended by the clock, with the best face shots kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from footfall.edge.tracking import Tracker, create_engine
from footfall.recognition.analyzer import Face
from footfall.recognition.detect import Detection
from footfall.recognition.persons import PersonBox
from footfall.recognition.quality import Quality

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def person(x: float, y: float, height: float = 200.0, score: float = 0.8) -> PersonBox:
    return PersonBox(np.array([x, y, x + height * 0.4, y + height], dtype=np.float32), score)


def face(quality: float = 0.8, passed: bool = True) -> Face:
    box = np.array([0, 0, 60, 60], dtype=np.float32)
    q = Quality(60, 0.9, 100.0, 0.1, 0.0, () if passed else ("blurred (sharpness 5 < 25)",), quality)
    return Face(Detection(box, np.zeros((5, 2), np.float32), 0.9), q, np.zeros((112, 112, 3), np.uint8))


def tracker(engine: str = "bytetrack", max_gap: float = 1.0) -> Tracker:
    return Tracker("door-1", max_gap=max_gap, shots=3,
                   engine=lambda: create_engine(engine, max_gap=max_gap, min_iou=0.15, score=0.3))  # type: ignore[arg-type]


def walk(t: Tracker, steps: int, starts: list[tuple[float, float]], step: tuple[float, float], fps: float = 5.0,
         faces=None) -> list:
    ended = []
    for i in range(steps):
        people = [person(x + i * step[0], y + i * step[1]) for x, y in starts]
        ended += t.update(T0 + timedelta(seconds=i / fps), people, faces(i) if faces else {})
    return ended


@pytest.mark.parametrize("engine", ["bytetrack", "ocsort", "sort"])
def test_a_person_walking_through_is_one_track_that_ends_by_the_clock(engine):
    t = tracker(engine)
    assert walk(t, 15, [(400, 50)], (0, 20)) == []
    assert t.expire(T0 + timedelta(seconds=3.6)) == []  # 0.8 s unseen: still open
    (track,) = t.expire(T0 + timedelta(seconds=4.0))     # no frame needed: the clock ends it
    assert track.camera_id == "door-1" and track.hits >= 14
    assert track.last_seen == T0 + timedelta(seconds=14 / 5)
    assert track.travel > 1.0  # walked 280 px with a 200 px body


@pytest.mark.parametrize("engine", ["bytetrack", "ocsort", "sort"])
def test_two_people_side_by_side_are_two_tracks(engine):
    t = tracker(engine)
    walk(t, 12, [(300, 50), (420, 50)], (0, 20))
    assert len(t.finish()) == 2


def test_someone_standing_still_travels_nowhere():
    t = tracker()
    walk(t, 20, [(400, 100)], (0, 0))
    (track,) = t.finish()
    assert track.travel < 0.05


def test_only_the_best_shots_are_kept_and_failed_faces_never():
    t = tracker()
    qualities = [0.2, 0.9, 0.1, 0.7, 0.95, 0.3, 0.99]
    walk(t, 7, [(400, 50)], (0, 10), faces=lambda i: {0: face(qualities[i], passed=i != 6)})
    (track,) = t.finish()
    assert sorted((s.quality for s in track.shots), reverse=True) == [0.95, 0.9, 0.7]
    assert track.face_hits >= 6


def test_a_person_seen_only_from_behind_is_a_track_without_shots():
    t = tracker()
    walk(t, 10, [(400, 50)], (0, 20))
    (track,) = t.finish()
    assert track.shots == () and track.face_hits == 0 and track.hits >= 9


def test_a_person_back_after_a_long_absence_is_a_new_track():
    t = tracker()
    walk(t, 5, [(400, 50)], (0, 20))
    later = T0 + timedelta(seconds=10)
    assert len(t.update(later, [person(400, 50)], {})) == 1  # the first one ended on the way
    t.update(later + timedelta(seconds=0.2), [person(400, 70)], {})
    assert len(t.finish()) == 1
