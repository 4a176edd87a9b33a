"""Enrolment photos -> one template: every usable photo counts, each unusable one is named with its reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from footfall.dedup.gallery import EnrolmentError
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.embed import l2_normalise
from footfall.recognition.images import pad_photo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enrolment:
    """The person's template (one row: the mean of the usable photos), the photos used, and
    (photo, reason) for every photo that was not."""

    template: np.ndarray
    used: list[str]
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def report(self) -> str:
        """One line naming each rejected photo and why ('' when every photo was used)."""
        return "; ".join(f"{name}: {reason}" for name, reason in self.rejected)


def photo_embedding(analyzer: FaceAnalyzer, image: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(embedding, '') of the one clear face of a photo, or (None, why it cannot be used).

    Refused: no face; more than one face that passes the quality gate (whose would it be?);
    only faces the gate rejects. Faces too small or blurred to pass are bystanders.
    """
    faces = analyzer.analyze(pad_photo(image))
    if not faces:
        return None, "no face found"
    usable = [f for f in faces if f.quality.passed]
    if len(usable) > 1:
        return None, f"{len(usable)} faces found; enrolment needs a photo of one person"
    if not usable:
        reasons = "; ".join(", ".join(f.quality.reasons) for f in faces)
        return None, f"the face is not good enough to enrol: {reasons}"
    assert usable[0].embedding is not None
    return usable[0].embedding, ""


def enrol_photos(analyzer: FaceAnalyzer, images: list[tuple[str, np.ndarray]]) -> Enrolment:
    """The template of a person from every usable photo; EnrolmentError only when none is usable.

    One mean template rather than one vector per photo: on the calibration set it misses fewer
    members at the same false-alarm rate (docs/calibration.md, "Member identification").
    """
    if not images:
        raise EnrolmentError("no photos given")
    vectors, used, rejected = [], [], []
    for name, image in images:
        vector, reason = photo_embedding(analyzer, image)
        if vector is None:
            rejected.append((name, reason))
            log.warning("enrolment photo %s not used: %s", name, reason)
        else:
            vectors.append(vector)
            used.append(name)
    if not vectors:
        raise EnrolmentError("no usable photo: " + "; ".join(f"{n}: {r}" for n, r in rejected))
    template = l2_normalise(np.mean(np.stack(vectors), axis=0, keepdims=True))
    return Enrolment(template, used, rejected)


def embeddings_from_photos(analyzer: FaceAnalyzer, images: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """(1, dim) template from the usable photos (see `enrol_photos`); EnrolmentError when none is usable."""
    return enrol_photos(analyzer, images).template
