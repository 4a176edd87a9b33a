"""Five-point similarity alignment of a face to a recognizer's template."""

from __future__ import annotations

import cv2
import numpy as np

# Reference landmark positions (left eye, right eye, nose, mouth corners).
# ArcFace: insightface's 112 x 112 template. OMZ: Intel Open Model Zoo's
# face-reidentification reference points, as fractions of the crop side.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
OMZ_UNIT = np.array(
    [[0.31556875, 0.46157411], [0.68262292, 0.46157411], [0.5002625, 0.64050536],
     [0.34947188, 0.82469196], [0.65343646, 0.82469196]],
    dtype=np.float64,
)


def template_points(template: str, size: tuple[int, int]) -> np.ndarray:
    """Template landmarks scaled to a crop of `size` = (width, height)."""
    w, h = size
    if template == "arcface":
        return ARCFACE_112 * np.array([w / 112.0, h / 112.0])
    if template == "omz":
        return OMZ_UNIT * np.array([w, h], dtype=np.float64)
    raise ValueError(f"unknown alignment template {template!r}")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking `src` onto `dst` (Umeyama 1991).

    Returns the 2 x 3 matrix for cv2.warpAffine.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    var_s = (s**2).sum() / len(src)
    scale = (sigma * np.diag(sign)).sum() / var_s if var_s > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, template: str, size: tuple[int, int]) -> np.ndarray:
    """The face warped so its landmarks sit on the template, as a (h, w, 3) crop."""
    matrix = similarity_transform(landmarks, template_points(template, size))
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
