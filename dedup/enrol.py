"""Enrolment photos -> embeddings: one clear face per photo, or a refusal naming the photo."""

from __future__ import annotations

import numpy as np

from footfall.dedup.gallery import EnrolmentError
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.images import pad_photo


def embeddings_from_photos(analyzer: FaceAnalyzer, images: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """(n, dim) embeddings, one per (name, BGR image); EnrolmentError naming the first unusable photo.

    A photo is refused when it shows no face, more than one face that passes the
    quality gate (whose would it be?), or only faces the gate rejects.
    """
    if not images:
        raise EnrolmentError("no photos given")
    vectors = []
    for name, image in images:
        faces = analyzer.analyze(pad_photo(image))
        if not faces:
            raise EnrolmentError(f"{name}: no face found")
        usable = [f for f in faces if f.quality.passed]
        if len(usable) > 1:
            raise EnrolmentError(f"{name}: {len(usable)} faces found; enrolment needs a photo of one person")
        if not usable:
            reasons = "; ".join(", ".join(f.quality.reasons) for f in faces)
            raise EnrolmentError(f"{name}: the face is not good enough to enrol: {reasons}")
        # Faces too small or blurred to pass the gate are bystanders in the background.
        vectors.append(usable[0].embedding)
    return np.stack(vectors).astype(np.float32)
