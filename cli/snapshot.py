"""`footfall camera snapshot`: one frame of a camera with its entry line drawn, for the installer.

The frame is written with every person the detector finds pixelated, so no face leaves the box
even on an installer's laptop. The line is drawn in yellow with an arrow towards the store's side
(`inside`), and each person's feet (where the line is judged) are marked.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from footfall.config.schema import CameraConfig, Config, ConfigError
from footfall.edge.sources import open_capture, source_kind
from footfall.edge.tracking import foot
from footfall.recognition.persons import PersonDetector, person_detector_from_config

PIXEL_BLOCK = 12  # pixelation cell, pixels: no face is recognisable through it
LINE_COLOUR, ARROW_COLOUR, FEET_COLOUR = (0, 220, 255), (0, 200, 0), (255, 80, 0)


class SnapshotError(Exception):
    """The camera gave no frame, or the output cannot be written."""


def grab(camera: CameraConfig) -> np.ndarray:
    """One frame of the camera (a file's first readable frame)."""
    source: str | int = int(camera.source) if camera.source.isdigit() else camera.source
    if source_kind(camera.source) == "file" and not Path(camera.source).is_file():
        raise SnapshotError(f"camera {camera.id}: no such file {camera.source}")
    cap = open_capture(source)
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise SnapshotError(f"camera {camera.id}: no frame could be read from its source")
    return frame


def pixelate(image: np.ndarray, box: np.ndarray) -> None:
    """Replace the box (pixels) with coarse blocks, in place."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    part = image[y1:y2, x1:x2]
    small = cv2.resize(part, (max(1, (x2 - x1) // PIXEL_BLOCK), max(1, (y2 - y1) // PIXEL_BLOCK)),
                       interpolation=cv2.INTER_AREA)
    image[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)


def draw(image: np.ndarray, camera: CameraConfig, persons: PersonDetector) -> np.ndarray:
    """The frame with people pixelated, their feet marked, and the entry line with its inward arrow."""
    out = image.copy()
    h, w = out.shape[:2]
    for person in persons.detect(image):
        pixelate(out, person.box)
        fx, fy = foot(person.box)
        cv2.circle(out, (int(fx), int(fy)), max(3, w // 200), FEET_COLOUR, -1)
    thick = max(2, w // 400)
    if camera.entry_line is not None and camera.inside is not None:
        x1, y1, x2, y2 = camera.entry_line
        a, b = (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h))
        cv2.line(out, a, b, LINE_COLOUR, thick)
        mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
        inside = (int(camera.inside[0] * w), int(camera.inside[1] * h))
        cv2.arrowedLine(out, mid, inside, ARROW_COLOUR, thick, tipLength=0.15)
        cv2.putText(out, "in", inside, cv2.FONT_HERSHEY_SIMPLEX, max(0.5, w / 1600), ARROW_COLOUR, thick)
    label = f"{camera.id}" + (f" (door {camera.door})" if camera.door else "") + \
        ("" if camera.entry_line else ": no entry line, every person track is a passage")
    cv2.putText(out, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, max(0.5, w / 1600), LINE_COLOUR, thick)
    return out


def snapshot(config: Config, camera_id: str, out: Path) -> str:
    """Write the camera's annotated frame to `out` (PNG or JPEG); the line to print."""
    camera = next((c for c in config.cameras if c.id == camera_id), None)
    if camera is None:
        known = ", ".join(c.id for c in config.cameras) or "none"
        raise ConfigError(f"cameras: no camera {camera_id!r} (configured: {known})")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise SnapshotError(f"{out}: write a .png or .jpg file")
    image = draw(grab(camera), camera, person_detector_from_config(config))
    if not cv2.imwrite(str(out), image):
        raise SnapshotError(f"{out}: could not be written")
    h, w = image.shape[:2]
    return f"wrote {out} ({w}x{h}, people pixelated)"
