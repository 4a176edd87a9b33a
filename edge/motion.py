"""Motion gating: look for faces only where, and when, something moves.

An entrance camera sees an empty doorway most of the day. A small, blurred grey copy of each
frame is compared with a slowly updated background. Frames where too little changed are not
given to the detector at all; otherwise the detector runs on the region that moved (plus where
tracked people were), at no more than native resolution, instead of on the whole frame.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 160            # px of the grey thumbnail the comparison runs on
PIXEL_DELTA = 25       # grey levels a pixel must change by to count as moving
LEARNING_RATE = 0.05   # share of each new frame blended into the background
MARGIN = 0.25          # a region grows by this share of its size on each side (heads above moving bodies)
MIN_SIDE = 96          # px: smallest region given to the detector
WHOLE_FRAME_AREA = 0.6  # a region covering more of the frame than this becomes the whole frame

Box = tuple[int, int, int, int]


def thumbnail(image: np.ndarray) -> np.ndarray:
    """Small, blurred float grey copy of a BGR frame."""
    h, w = image.shape[:2]
    size = (WIDTH, max(1, round(h * WIDTH / w)))
    # Sampled down to twice the size first (cheap), then averaged: INTER_AREA over a whole 1080p
    # frame costs more than the rest of the gate.
    twice = cv2.resize(image, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(twice, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)


def moving_mask(background: np.ndarray, thumb: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background by more than PIXEL_DELTA."""
    return np.abs(thumb - background) > PIXEL_DELTA


def grow(box: Box, frame_w: int, frame_h: int, margin: float = MARGIN, min_side: int = MIN_SIDE) -> Box:
    """The box enlarged by `margin` on each side and to at least `min_side`, inside the frame."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    dx, dy = max(w * margin, (min_side - w) / 2, 0), max(h * margin, (min_side - h) / 2, 0)
    return (max(0, int(x1 - dx)), max(0, int(y1 - dy)), min(frame_w, int(np.ceil(x2 + dx))),
            min(frame_h, int(np.ceil(y2 + dy))))


def union(boxes: list[Box]) -> Box | None:
    """The smallest box holding all `boxes`, or None for none."""
    if not boxes:
        return None
    b = np.array(boxes)
    return int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max())


def detection_region(motion: Box | None, tracked: list[Box], frame_w: int, frame_h: int) -> Box | None:
    """Where to look for faces: what moved and where people were, grown; the whole frame if that
    is most of it; None when there is nothing to look at."""
    region = union([grow(b, frame_w, frame_h) for b in ([motion] if motion else []) + tracked])
    if region is None:
        return None
    x1, y1, x2, y2 = region
    if (x2 - x1) * (y2 - y1) > WHOLE_FRAME_AREA * frame_w * frame_h:
        return 0, 0, frame_w, frame_h
    return region


class MotionGate:
    """Per camera: where in this frame did something move?"""

    def __init__(self, min_share: float) -> None:
        self.min_share = min_share
        self.background: np.ndarray | None = None
        self.skipped = 0

    def motion(self, image: np.ndarray) -> Box | None:
        """The box (frame pixels) around what moved, or None when too little did; the frame is
        then learnt into the background."""
        h, w = image.shape[:2]
        thumb = thumbnail(image)
        if self.background is None or self.background.shape != thumb.shape:
            self.background = thumb
            return 0, 0, w, h
        mask = moving_mask(self.background, thumb)
        cv2.accumulateWeighted(thumb, self.background, LEARNING_RATE)
        if mask.mean() < self.min_share:
            self.skipped += 1
            return None
        x, y, bw, bh = cv2.boundingRect(mask.astype(np.uint8))
        sx, sy = w / thumb.shape[1], h / thumb.shape[0]
        return int(x * sx), int(y * sy), int(np.ceil((x + bw) * sx)), int(np.ceil((y + bh) * sy))
