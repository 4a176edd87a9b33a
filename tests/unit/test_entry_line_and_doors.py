"""Which way people went across a camera's entry line, and one passage per person at a door of two cameras."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from footfall.config.schema import ConfigError, parse_config
from footfall.edge.decisions import Passage
from footfall.edge.doors import DoorJoin
from footfall.edge.entry_line import EntryLine

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LINE = EntryLine((0.1, 0.6, 0.9, 0.6), (0.5, 0.9))  # across the floor; the store is below it


def p(*xy: float) -> np.ndarray:
    return np.array(xy, dtype=np.float32)


def test_walking_down_across_the_line_is_an_entry_and_up_an_exit():
    assert LINE.crossing(p(0.5, 0.3), p(0.5, 0.95)) == "in"
    assert LINE.crossing(p(0.5, 0.95), p(0.5, 0.3)) == "out"


def test_staying_on_one_side_or_passing_beside_the_line_crosses_nothing():
    assert LINE.crossing(p(0.5, 0.7), p(0.6, 0.99)) is None
    assert LINE.crossing(p(0.2, 0.1), p(0.8, 0.5)) is None
    assert LINE.crossing(p(0.97, 0.3), p(0.99, 0.9)) is None  # beyond the line's right end


def test_the_inside_point_decides_which_way_is_in():
    flipped = EntryLine((0.1, 0.6, 0.9, 0.6), (0.5, 0.1))
    assert flipped.crossing(p(0.5, 0.3), p(0.5, 0.95)) == "out"


def camera(**extra) -> dict:
    return {"id": "door-1", "source": "clip.avi", **extra}


def test_a_line_needs_its_inside_point_and_both_are_fractions_of_the_frame():
    with pytest.raises(ConfigError, match=r"cameras\[0\]"):
        parse_config({"cameras": [camera(entry_line=[0.1, 0.6, 0.9, 0.6])]})
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.entry_line"):
        parse_config({"cameras": [camera(entry_line=[0.1, 0.6, 1.9, 0.6], inside=[0.5, 0.9])]})
    with pytest.raises(ConfigError, match="off entry_line"):
        parse_config({"cameras": [camera(entry_line=[0.1, 0.6, 0.9, 0.6], inside=[0.5, 0.6])]})
    ok = parse_config({"cameras": [camera(entry_line=[0.1, 0.6, 0.9, 0.6], inside=[0.5, 0.9], door="main")]})
    assert ok.cameras[0].door == "main"


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def passage(cam: str, start: float, end: float, embedding: np.ndarray | None = None) -> Passage:
    return Passage(cam, T0 + timedelta(seconds=start), T0 + timedelta(seconds=end), T0 + timedelta(seconds=end),
                   embedding, 0 if embedding is None else 2, direction="in")


def door(**kw) -> DoorJoin:
    return DoorJoin({"door-1": "main", "door-1b": "main"}, timedelta(seconds=3), distinct=0.25)


def test_one_person_on_two_cameras_of_a_door_is_one_passage_even_without_a_face():
    d = door()
    assert d.add([passage("door-1", 0, 3), passage("door-1b", 0.4, 3.2)], T0 + timedelta(seconds=3.3)) == []
    (one,) = d.release(T0 + timedelta(seconds=6.5))
    assert one.first_seen == T0 and one.last_seen == T0 + timedelta(seconds=3.2)
    assert d.joins == 1


def test_two_people_side_by_side_on_two_cameras_stay_two_passages():
    a, b = unit(1), unit(2)
    d = door()
    joined = d.add([passage("door-1", 0, 3, a), passage("door-1", 0.2, 3.1, b),
                    passage("door-1b", 0.1, 3.0, b), passage("door-1b", 0.3, 3.3, a)], None)
    assert len(joined) == 2
    for j in joined:  # each pair joined with its own face, not the neighbour's
        assert max(float(j.embedding @ a), float(j.embedding @ b)) > 0.9


def test_faces_that_tell_two_people_apart_are_never_joined():
    d = door()
    assert len(d.add([passage("door-1", 0, 3, unit(1)), passage("door-1b", 0, 3, unit(2))], None)) == 2


def test_passages_far_apart_in_time_or_on_one_camera_are_not_joined():
    d = door()
    assert len(d.add([passage("door-1", 0, 2), passage("door-1b", 10, 12), passage("door-1", 2.5, 4)], None)) == 3


def test_a_camera_without_a_door_passes_its_passages_at_once():
    d = door()
    (ready,) = d.add([passage("hall", 0, 2)], T0)
    assert ready.camera_id == "hall"
