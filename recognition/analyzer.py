"""The recognition stage: detect -> align -> quality gate -> embed, wired from config."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from footfall.config.schema import Config, QualityConfig
from footfall.models.manifest import ModelEntry, ModelError, entry_for, locate
from footfall.recognition.align import align_face
from footfall.recognition.detect import Detection, Detector, create_detector
from footfall.recognition.embed import OnnxEmbedder
from footfall.recognition.quality import Quality, assess
from footfall.recognition.spec import RecognizerSpec


@dataclass
class Face:
    """A detected face, its quality verdict, its aligned crop (memory only) and embedding."""

    detection: Detection
    quality: Quality
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ModelPack:
    """The detector and recognizer files in use, their manifest entries, and the thresholds that belong to them."""

    detector: ModelEntry
    detector_path: Path
    recognizer: ModelEntry
    recognizer_path: Path
    match_threshold: float
    config: Config = field(repr=False)

    @property
    def spec(self) -> RecognizerSpec:
        """The recognizer's facts the store needs (dimension, checksum, thresholds), file or not."""
        return RecognizerSpec(self.recognizer, self.config)

    def threshold(self, key: str) -> float:
        """A recognizer-specific threshold (`RecognizerSpec.threshold`), e.g. "dedup.threshold"."""
        return self.spec.threshold(key)


def resolve_pack(config: Config) -> ModelPack:
    """Find the configured models on disk and the match threshold that belongs to them."""
    det = entry_for(config.models.detector, "detector")
    rec = entry_for(config.models.recognizer, "recognizer")
    threshold = config.recognition.match_threshold
    if threshold is None:
        threshold = rec.match_threshold
    if threshold is None:
        raise ModelError(
            f"{rec.file} has no measured match threshold in the manifest; "
            "set recognition.match_threshold after calibrating it on your own faces"
        )
    return ModelPack(det, locate(det.file, config.models.dir), rec, locate(rec.file, config.models.dir),
                     threshold, config)


class FaceAnalyzer:
    """Faces in a BGR image -> quality-checked faces, embedded in batches."""

    def __init__(self, detector: Detector, embedder: OnnxEmbedder, limits: QualityConfig,
                 pack: ModelPack) -> None:
        self.detector = detector
        self.embedder = embedder
        self.limits = limits
        self.pack = pack

    @classmethod
    def from_config(cls, config: Config) -> FaceAnalyzer:
        """Load the configured models with the configured options. In count_only the face models
        are found and described but never opened: nothing biometric is ever computed."""
        pack = resolve_pack(config)
        rc = config.recognition
        load = config.privacy.mode == "recognise"
        detector = create_detector(pack.detector, pack.detector_path, det_size=rc.det_size,
                                   score_threshold=rc.det_score, threads=rc.threads, load=load)
        embedder = OnnxEmbedder(pack.recognizer, pack.recognizer_path, batch_size=rc.batch_size,
                                threads=rc.threads, load=load)
        return cls(detector, embedder, rc.quality, pack)

    @property
    def loaded(self) -> bool:
        """Whether either face model has been opened."""
        return bool(getattr(self.detector, "loaded", True) or self.embedder.loaded)

    def assess(self, image: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Align every detection to the recognizer's template and judge it."""
        entry = self.embedder.entry
        faces = []
        for det in detections:
            crop = align_face(image, det.landmarks, entry.template, entry.input_size)
            faces.append(Face(det, assess(det.box, det.landmarks, det.score, crop, self.limits), crop))
        return faces

    def embed(self, faces: list[Face]) -> list[Face]:
        """The same faces with embeddings, one batched run for all of them."""
        vectors = self.embedder.embed([f.crop for f in faces])
        return [replace(f, embedding=v) for f, v in zip(faces, vectors)]

    def analyze(self, image: np.ndarray, *, gated: bool = True) -> list[Face]:
        """Detect, judge and embed; with `gated`, faces failing the quality gate are not embedded."""
        faces = self.assess(image, self.detector.detect(image))
        chosen = [f for f in faces if f.quality.passed or not gated]
        embedded = iter(self.embed(chosen))
        return [next(embedded) if (f.quality.passed or not gated) else f for f in faces]
