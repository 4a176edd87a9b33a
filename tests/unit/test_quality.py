"""The quality gate: small, blurred, turned or tilted faces are refused, and the reason is recorded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from footfall.config.schema import QualityConfig
from footfall.recognition.images import read_image
from footfall.recognition.quality import assess, yaw_and_roll

FRONTAL = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=np.float32)


@pytest.fixture(scope="module")
def scene(scenes_dir):
    return read_image(scenes_dir / "bbt4.jpg")


def test_clear_frontal_faces_of_a_real_photo_pass(default_analyzer, scene):
    faces = default_analyzer.analyze(scene)
    assert len(faces) == 6
    assert all(f.quality.passed for f in faces), [f.quality.reasons for f in faces]
    assert all(f.embedding is not None for f in faces)


def test_blurred_faces_are_refused_as_blurred_and_not_embedded(default_analyzer, scene):
    blurred = cv2.GaussianBlur(scene, (0, 0), 3)
    faces = default_analyzer.analyze(blurred)
    assert faces, "the detector still finds the blurred faces"
    for face in faces:
        assert not face.quality.passed
        assert any(r.startswith("blurred") for r in face.quality.reasons)
        assert face.embedding is None


def test_sharper_shot_of_the_same_face_scores_higher(default_analyzer, scene):
    sharp = default_analyzer.analyze(scene, gated=False)
    soft = default_analyzer.analyze(cv2.GaussianBlur(scene, (0, 0), 1.2), gated=False)
    best = max(sharp, key=lambda f: f.quality.score)
    twin = min(soft, key=lambda f: np.abs(f.detection.box - best.detection.box).sum())
    assert best.quality.score > twin.quality.score


def test_faces_below_the_minimum_size_are_refused(default_analyzer, scene):
    tiny = cv2.resize(scene, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    faces = default_analyzer.analyze(tiny, gated=False)
    assert faces
    assert all(any(r.startswith("too small") for r in f.quality.reasons) for f in faces)


def test_turned_and_tilted_heads_are_measured_from_landmarks():
    assert yaw_and_roll(FRONTAL) == pytest.approx((0.0, 0.0))
    turned = FRONTAL.copy()
    turned[2, 0] += 30  # nose far towards one eye: a head in near profile
    yaw, _ = yaw_and_roll(turned)
    assert yaw == pytest.approx(0.75)
    angle = np.radians(40)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    _, roll = yaw_and_roll(FRONTAL @ rot.T)
    assert roll == pytest.approx(40, abs=1e-4)


def test_every_failed_limit_is_named():
    limits = QualityConfig()
    crop = np.full((128, 128, 3), 128, dtype=np.uint8)  # featureless: no sharpness at all
    turned = FRONTAL.copy()
    turned[2, 0] += 30
    q = assess(np.array([0, 0, 20, 20], np.float32), turned, 0.5, crop, limits)
    assert not q.passed
    kinds = {r.split(" (")[0] for r in q.reasons}
    assert kinds == {"too small", "low detector score", "blurred", "turned away"}


def test_limits_come_from_config():
    crop = np.full((128, 128, 3), 128, dtype=np.uint8)
    box = np.array([0, 0, 100, 100], np.float32)
    strict = assess(box, FRONTAL, 0.9, crop, QualityConfig(min_sharpness=10))
    lenient = assess(box, FRONTAL, 0.9, crop, QualityConfig(min_sharpness=0))
    assert not strict.passed and lenient.passed
