"""Reading still photos (enrolment, benchmarks) with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageError(ValueError):
    """A file or buffer that is not a usable image."""


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """Decode JPEG/PNG/... bytes into a BGR uint8 array."""
    if not data:
        raise ImageError(f"{source}: empty, no image data")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f"{source}: not a decodable image (corrupt, truncated, or not an image format)")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file into a BGR uint8 array, or raise ImageError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return decode_image(data, str(path))


def pad_photo(image: np.ndarray, below_px: int = 400, fraction: float = 0.5) -> np.ndarray:
    """Surround a small still photo with a black border.

    Tight face crops (a face filling a 150 x 150 photo) are outside what
    anchor-based detectors were trained on: SCRFD finds none of them unpadded,
    all of them with a border of half the image size on each side.
    """
    h, w = image.shape[:2]
    if max(h, w) >= below_px:
        return image
    py, px = int(h * fraction), int(w * fraction)
    return cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
