"""Face detectors behind one interface: an image in, boxes with five landmarks out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from footfall.models.manifest import ModelEntry, ModelError
from footfall.recognition.boxes import STRIDES, decode_scrfd, decode_yunet, fit_input, letterbox, nms
from footfall.recognition.onnx_session import ModelSession


@dataclass(frozen=True)
class Detection:
    """One face in image pixels: box (x1, y1, x2, y2), landmarks (5, 2), score.

    Landmark order: left eye, right eye, nose, left and right mouth corner,
    "left" meaning image left.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


class Detector(Protocol):
    """Finds faces in a BGR uint8 image at an input of `width` x `height` pixels."""

    width: int
    height: int

    def detect(self, image: np.ndarray, *, long_side: int | None = None) -> list[Detection]: ...


class _OnnxDetector(ModelSession):
    """Shared letterbox -> network -> decode -> NMS flow; subclasses supply the codec."""

    def __init__(self, entry: ModelEntry, path: Path, *, det_size: int = 640,
                 score_threshold: float | None = None, threads: int = 0, load: bool = True) -> None:
        super().__init__(path, threads, relax_input=entry.relax_input)
        self.entry = entry
        if load:
            self._load()
        self.free_size = entry.dynamic_input or entry.relax_input
        # Fixed-size models take their own size; the others fit each frame's aspect (see detect).
        self.width, self.height = (det_size, det_size) if self.free_size else entry.input_size
        self.score_threshold = entry.score_threshold if score_threshold is None else score_threshold
        self.nms_threshold = entry.nms_threshold

    def detect(self, image: np.ndarray, *, long_side: int | None = None) -> list[Detection]:
        """Faces in `image`, best score first.

        `long_side` caps the network input's long side below the configured size (a small
        region need not be enlarged); fixed-size models ignore it.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 image of shape (h, w, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        side = min(self.width, long_side) if long_side else self.width
        size = fit_input(w, h, side) if self.free_size else (self.width, self.height)
        canvas, lb = letterbox(image, *size)
        session = self.session
        outputs = session.run(None, {self.input_name: self._blob(canvas)})
        scores, boxes, points = self._decode(outputs, *size)
        mask = scores >= self.score_threshold
        scores, boxes, points = scores[mask], boxes[mask], points[mask]
        keep = nms(boxes, scores, self.nms_threshold)
        found = []
        for i in keep:
            box = boxes[i] / lb.scale
            box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
            found.append(Detection(box.astype(np.float32), (points[i] / lb.scale).astype(np.float32), float(scores[i])))
        return found

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, outputs: list[np.ndarray], width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, b, p = zip(*parts)
        return np.concatenate(s), np.concatenate(b), np.concatenate(p)


class YuNetDetector(_OnnxDetector):
    """OpenCV Zoo YuNet (MIT) on onnxruntime: BGR, raw 0..255 input."""

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        return cv2.dnn.blobFromImage(canvas)

    def _decode(self, outputs, width, height):
        cls, obj, bbox, kps = outputs[0:3], outputs[3:6], outputs[6:9], outputs[9:12]
        return self._concat([
            decode_yunet(cls[i][0], obj[i][0], bbox[i][0], kps[i][0], s, width, height)
            for i, s in enumerate(STRIDES)
        ])


class ScrfdDetector(_OnnxDetector):
    """insightface SCRFD (bnkps exports): RGB, (x - 127.5) / 128 input."""

    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        return cv2.dnn.blobFromImage(canvas, 1 / 128.0, mean=(127.5, 127.5, 127.5), swapRB=True)

    def _decode(self, outputs, width, height):
        outputs = [o[0] if o.ndim == 3 else o for o in outputs]
        scores, dists, kps = outputs[0:3], outputs[3:6], outputs[6:9]
        return self._concat([
            decode_scrfd(scores[i], dists[i], kps[i], s, width, height)
            for i, s in enumerate(STRIDES)
        ])


_FAMILIES: dict[str, type[_OnnxDetector]] = {"yunet": YuNetDetector, "scrfd": ScrfdDetector}


def create_detector(entry: ModelEntry, path: Path, *, det_size: int = 640,
                    score_threshold: float | None = None, threads: int = 0, load: bool = True) -> Detector:
    """The detector adapter for a manifest entry."""
    if entry.role != "detector" or entry.family not in _FAMILIES:
        raise ModelError(f"{entry.file}: not a detector this build can run (family {entry.family!r})")
    return _FAMILIES[entry.family](entry, path, det_size=det_size, score_threshold=score_threshold, threads=threads,
                                   load=load)
