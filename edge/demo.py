"""`footfall demo`: what this release can show with zero configuration.

The recognition stage on sample photos: faces found, judged and matched
across photos. The shipped package carries no photos (their rights belong to
their owners); the demo uses a labelled photo set from $FOOTFALL_SAMPLE_FACES
or from `shared/data/faces` beside the working directory or the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from footfall.config.schema import parse_config
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.evaluation import labelled_photos
from footfall.recognition.images import ImageError, pad_photo, read_image

CHECKOUT = Path(__file__).resolve().parents[1]


def sample_faces_dir() -> Path | None:
    """Where labelled sample photos are, if anywhere."""
    env = os.environ.get("FOOTFALL_SAMPLE_FACES")
    candidates = [Path(env)] if env else []
    candidates += [base / "shared" / "data" / "faces" for base in (Path.cwd().parent, CHECKOUT.parent)]
    return next((c for c in candidates if c.is_dir()), None)


def run_demo(limit: int = 24) -> int:
    """Recognise faces in up to `limit` sample photos and print who matched whom."""
    print("footfall demo: recognition stage (the store daemon, MQTT events and counts are not built yet)")
    faces_dir = sample_faces_dir()
    if faces_dir is None:
        print("no sample photos found: set FOOTFALL_SAMPLE_FACES to a folder of <identity>/<photo> images")
        return 1
    analyzer = FaceAnalyzer.from_config(parse_config({}))
    pack = analyzer.pack
    print(f"models: {pack.detector.file} + {pack.recognizer.file} (match threshold {pack.match_threshold:g})")
    photos = labelled_photos(faces_dir)[:: max(1, len(labelled_photos(faces_dir)) // limit)][:limit]
    seen: list[tuple[str, str, np.ndarray]] = []  # (label, photo, embedding)
    correct = 0
    for photo in photos:
        try:
            faces = analyzer.analyze(pad_photo(read_image(photo.path)))
        except ImageError as exc:
            print(f"  skip {exc}")
            continue
        good = [f for f in faces if f.quality.passed]
        if not good:
            reasons = "; ".join(r for f in faces for r in f.quality.reasons) or "no face found"
            print(f"  {photo.path.name:<12} {photo.identity:<16} rejected: {reasons}")
            continue
        face = max(good, key=lambda f: f.detection.width * f.detection.height)
        best = max(seen, key=lambda s: float(s[2] @ face.embedding), default=None)
        score = float(best[2] @ face.embedding) if best else -1.0
        if best and score >= pack.match_threshold:
            verdict = f"same person as {best[1]} ({score:.2f})"
            correct += best[0] == photo.identity
        else:
            verdict = f"new person ({score:.2f})" if best else "new person"
            correct += all(s[0] != photo.identity for s in seen)
        seen.append((photo.identity, f"{photo.identity}/{photo.path.name}", face.embedding))
        print(f"  {photo.identity + '/' + photo.path.name:<28} {len(faces)} face(s), quality "
              f"{face.quality.score:.2f}: {verdict}")
    print(f"summary: {len(seen)} photos recognised, {correct} decisions agree with the labels")
    return 0
