"""Faces are looked for on people: in the top of each person box, each face given to its own body."""

from __future__ import annotations

import numpy as np

from footfall.edge.pipeline import faces_to_persons, head_region
from footfall.recognition.detect import Detection
from footfall.recognition.persons import PersonBox


def person(x1: float, y1: float, x2: float, y2: float) -> PersonBox:
    return PersonBox(np.array([x1, y1, x2, y2], np.float32), 0.9)


def face(x: float, y: float, size: float = 40.0) -> Detection:
    return Detection(np.array([x, y, x + size, y + size], np.float32), np.zeros((5, 2), np.float32), 0.9)


def test_the_head_region_is_the_top_of_a_standing_body_and_most_of_a_close_up():
    standing = head_region(np.array([100, 100, 160, 400]), 1000, 1000)  # 60 x 300
    assert standing[1] < 100 and standing[3] == 200  # the top third
    close_up = head_region(np.array([100, 100, 300, 350]), 1000, 1000)  # 200 x 250: at least its width
    assert close_up[3] == 300


def test_two_people_side_by_side_each_get_their_own_face_even_where_their_boxes_overlap():
    left, right = person(228, 110, 520, 539), person(436, 60, 636, 533)  # the right one's box starts higher
    # the right person's face lies inside the left box too, and nearer its top than its own box's
    faces = [face(516, 100), face(345, 120)]
    regions = [head_region(p.box, 960, 540) for p in (left, right)]
    assert faces_to_persons(faces, regions, [left, right]) == {0: 1, 1: 0}


def test_a_face_outside_every_head_region_belongs_to_nobody():
    body = person(100, 100, 160, 400)
    assert faces_to_persons([face(110, 350)], [head_region(body.box, 1000, 1000)], [body]) == {}
