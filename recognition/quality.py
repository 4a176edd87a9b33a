"""The quality gate: is a detected face good enough to embed, and how good is it.

Pure functions of the detection and its aligned crop; thresholds come from
config `recognition.quality`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from footfall.config.schema import QualityConfig


@dataclass(frozen=True)
class Quality:
    """Measurements of one face, the gate's verdict, and a 0..1 score for picking best shots."""

    face_px: float
    det_score: float
    sharpness: float
    yaw: float
    roll_deg: float
    reasons: tuple[str, ...]
    score: float

    @property
    def passed(self) -> bool:
        return not self.reasons


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: low means blurred."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def yaw_and_roll(landmarks: np.ndarray) -> tuple[float, float]:
    """Head turn and tilt from five landmarks.

    Yaw: the nose's offset from the eye midpoint along the eye line, in eye
    distances (0 frontal, ~0.5 and more in profile). Roll: angle of the eye
    line from horizontal, in degrees.
    """
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return 1.0, 90.0
    along = float(np.dot(nose - (left_eye + right_eye) / 2, eye_vec / eye_dist))
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    return abs(along) / eye_dist, abs(roll)


def assess(box: np.ndarray, landmarks: np.ndarray, det_score: float, crop: np.ndarray,
           limits: QualityConfig) -> Quality:
    """Measure a face and name every limit it fails."""
    face_px = float(min(box[2] - box[0], box[3] - box[1]))
    sharp = sharpness(crop)
    yaw, roll = yaw_and_roll(landmarks)
    reasons = []
    if face_px < limits.min_face_px:
        reasons.append(f"too small ({face_px:.0f} px < {limits.min_face_px})")
    if det_score < limits.min_score:
        reasons.append(f"low detector score ({det_score:.2f} < {limits.min_score:g})")
    if sharp < limits.min_sharpness:
        reasons.append(f"blurred (sharpness {sharp:.0f} < {limits.min_sharpness:g})")
    if yaw > limits.max_yaw:
        reasons.append(f"turned away (yaw {yaw:.2f} > {limits.max_yaw:g})")
    if roll > limits.max_roll_deg:
        reasons.append(f"tilted (roll {roll:.0f} deg > {limits.max_roll_deg:g})")
    score = (
        det_score
        * min(1.0, face_px / (2 * limits.min_face_px))
        * min(1.0, sharp / (4 * max(limits.min_sharpness, 1e-6)))
        * max(0.0, 1.0 - yaw)
    )
    return Quality(face_px, det_score, sharp, yaw, roll, tuple(reasons), float(score))
