"""Alignment: a similarity transform that puts the five landmarks on the recognizer's template."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from footfall.recognition.align import align_face, similarity_transform, template_points


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def rotation_scale(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.radians(angle_deg)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * scale
    return np.hstack([m, np.array(shift)[:, None]])


def test_recovers_a_known_rotation_scale_and_shift_exactly():
    template = template_points("arcface", (112, 112))
    known = rotation_scale(25, 2.5, (300, 140))
    observed = transform(template, known)
    recovered = similarity_transform(observed, template)
    assert np.allclose(transform(observed, recovered), template, atol=1e-9)


def test_template_onto_itself_is_the_identity():
    t = template_points("omz", (128, 128))
    assert np.allclose(similarity_transform(t, t), np.hstack([np.eye(2), np.zeros((2, 1))]), atol=1e-12)


def test_templates_scale_with_the_crop_size():
    assert np.allclose(template_points("arcface", (224, 224)), 2 * template_points("arcface", (112, 112)))
    omz = template_points("omz", (128, 128))
    assert omz[0] == pytest.approx([40.39, 59.08], abs=0.01)
    with pytest.raises(ValueError, match="unknown alignment template"):
        template_points("vggface", (112, 112))


def test_agrees_with_opencvs_estimator_on_noisy_landmarks():
    rng = np.random.default_rng(7)
    template = template_points("arcface", (112, 112))
    observed = transform(template, rotation_scale(-12, 1.7, (90, 60))) + rng.normal(0, 1.5, (5, 2))
    ours = similarity_transform(observed, template)
    theirs = cv2.estimateAffinePartial2D(observed.astype(np.float32), template.astype(np.float32), method=cv2.LMEDS)[0]
    assert np.abs(transform(observed, ours) - transform(observed, theirs)).max() < 2.0


def test_aligned_crop_has_the_recognizer_input_size_and_landmarks_on_the_template():
    image = np.zeros((400, 600, 3), dtype=np.uint8)
    template = template_points("omz", (128, 128))
    landmarks = transform(template, rotation_scale(10, 1.8, (200, 120)))
    for x, y in landmarks.astype(int):
        cv2.circle(image, (x, y), 3, (255, 255, 255), -1)
    crop = align_face(image, landmarks, "omz", (128, 128))
    assert crop.shape == (128, 128, 3)
    for x, y in template.astype(int):
        assert crop[y, x].max() > 200, "each landmark should land on its template point"


def test_arcface_alignment_is_the_transform_insightface_computes():
    from insightface.utils import face_align

    rng = np.random.default_rng(3)
    for _ in range(20):
        landmarks = (template_points("arcface", (112, 112)) * rng.uniform(1.2, 2.5) + rng.uniform(50, 150, 2)
                     + rng.normal(0, 2, (5, 2))).astype(np.float32)
        ours = similarity_transform(landmarks, template_points("arcface", (112, 112)))
        assert np.abs(ours - face_align.estimate_norm(landmarks, 112)).max() < 1e-3
