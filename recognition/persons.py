"""Person detectors behind one interface: a BGR image in, person boxes out.

Two families, both Apache-2.0 (models/manifest.toml, role "person_detector"):
- "yolox": YOLOX-Nano (COCO). BGR 0..255, letterboxed top-left on grey 114; decoded on the
  stride 8/16/32 grids; person score = objectness x class 0. Fully convolutional: the input is
  freed at load, so a 16:9 frame runs at 416 x 256 instead of being padded to a square.
- "omz_ssd": Intel person-detection-retail-0013 (boxes decoded inside the graph). BGR 0..255,
  plain resize to 544 x 320; boxes normalised to the frame.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import cv2
import numpy as np

from footfall.config.schema import Config
from footfall.models.manifest import ModelEntry, ModelError, entry_for, locate
from footfall.recognition.boxes import fit_input, nms
from footfall.recognition.onnx_session import ModelSession

YOLOX_STRIDES = (8, 16, 32)
YOLOX_PAD = 114


@dataclass(frozen=True)
class PersonBox:
    """One person in image pixels: box (x1, y1, x2, y2) float32 and the detector's score."""

    box: np.ndarray
    score: float

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


class PersonDetector(Protocol):
    """Finds people in a BGR uint8 image."""

    entry: ModelEntry
    score_threshold: float
    long_side: int

    def detect(self, image: np.ndarray, *, long_side: int | None = None) -> list[PersonBox]: ...


def _kept(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
          width: int, height: int) -> list[PersonBox]:
    """Boxes above the threshold, clipped to the image, after NMS."""
    above = scores >= score_threshold
    boxes, scores = boxes[above], scores[above]
    if not len(boxes):
        return []
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    real = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
    boxes, scores = boxes[real], scores[real]
    return [PersonBox(boxes[i], float(scores[i])) for i in nms(boxes, scores, nms_threshold)]


class _PersonModel(ModelSession):
    """A person detector's model file, opened at once, with the entry's input size and thresholds."""

    FREES_INPUT: ClassVar[bool]  # whether the family runs at any input size (the manifest's relax_input)

    def __init__(self, entry: ModelEntry, path: Path, *, score_threshold: float | None = None,
                 threads: int = 0) -> None:
        super().__init__(path, threads, relax_input=self.FREES_INPUT and entry.relax_input)
        self.entry = entry
        self._load()
        self.long_side = max(entry.input_size)
        self.score_threshold = entry.score_threshold if score_threshold is None else score_threshold
        self.nms_threshold = entry.nms_threshold


class YoloxPersonDetector(_PersonModel):
    """YOLOX (COCO) keeping class 0, person."""

    FREES_INPUT = True

    def detect(self, image: np.ndarray, *, long_side: int | None = None) -> list[PersonBox]:
        """People in `image`, in its pixels; `long_side` sets a smaller input for a region cut
        from a frame (so the region is seen at the frame's scale, not enlarged)."""
        h, w = image.shape[:2]
        if self.entry.relax_input:
            in_w, in_h = fit_input(w, h, min(long_side or self.long_side, self.long_side))
        else:
            in_w, in_h = self.entry.input_size
        scale = min(in_w / w, in_h / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.full((in_h, in_w, 3), YOLOX_PAD, dtype=np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 0.5
                                      else cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run(None, {self.input_name: blob})[0][0]
        grids, strides = _anchors(in_w, in_h)
        if len(grids) != len(out):
            raise ModelError(f"{self.entry.file}: {len(out)} outputs for a {in_w}x{in_h} input, "
                             f"expected {len(grids)}")
        centre = (out[:, :2] + grids) * strides
        size = np.exp(np.minimum(out[:, 2:4], 10.0)) * strides
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / scale
        return _kept(boxes, out[:, 4] * out[:, 5], self.score_threshold, self.nms_threshold, w, h)


@functools.lru_cache(maxsize=64)
def _anchors(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The cell of every output row of a `width` x `height` input and its stride."""
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        ys, xs = np.mgrid[: height // stride, : width // stride]
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32))
        strides.append(np.full((len(grids[-1]), 1), stride, np.float32))
    return np.concatenate(grids), np.concatenate(strides)


class RetailPersonDetector(_PersonModel):
    """Intel person-detection-retail-0013: SSD with its boxes decoded in the graph."""

    FREES_INPUT = False

    def detect(self, image: np.ndarray, *, long_side: int | None = None) -> list[PersonBox]:
        """People in `image`, in its pixels (a fixed input: `long_side` is ignored)."""
        h, w = image.shape[:2]
        in_w, in_h = self.entry.input_size
        resized = cv2.resize(image, (in_w, in_h), interpolation=cv2.INTER_AREA if in_w < w / 2
                             else cv2.INTER_LINEAR)
        blob = resized.transpose(2, 0, 1)[None].astype(np.float32)
        boxes, scores = self.session.run(None, {self.input_name: blob})
        return _kept(boxes[0] * np.array([w, h, w, h], np.float32), scores[0], self.score_threshold,
                     self.nms_threshold, w, h)


_FAMILIES: dict[str, type[YoloxPersonDetector] | type[RetailPersonDetector]] = {
    "yolox": YoloxPersonDetector, "omz_ssd": RetailPersonDetector}


def create_person_detector(entry: ModelEntry, path: Path, *, score_threshold: float | None = None,
                           threads: int = 0, long_side: int | None = None) -> PersonDetector:
    """The person detector for a manifest entry of role "person_detector"; `long_side` sets the
    input's long side where the model takes any size."""
    if entry.family not in _FAMILIES:
        raise ModelError(f"{entry.file}: unknown person detector family {entry.family!r}")
    detector = _FAMILIES[entry.family](entry, path, score_threshold=score_threshold, threads=threads)
    if long_side and isinstance(detector, YoloxPersonDetector) and entry.relax_input:
        detector.long_side = long_side
    return detector


def person_detector_from_config(config: Config) -> PersonDetector:
    """The configured person detector (`models.person_detector`), at its calibrated threshold
    unless `tracking.person_score` sets another."""
    entry = entry_for(config.models.person_detector, "person_detector")
    return create_person_detector(entry, locate(entry.file, config.models.dir),
                                  score_threshold=config.tracking.person_score, threads=config.recognition.threads,
                                  long_side=config.tracking.person_input)
