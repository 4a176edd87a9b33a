"""Verification accuracy on a labelled photo set: genuine and impostor scores, TAR at a FAR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class LabelledPhoto:
    identity: str
    path: Path


def labelled_photos(root: Path) -> list[LabelledPhoto]:
    """Photos laid out as `root/<identity>/<photo>`, sorted for repeatable runs."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of <identity>/<photo> folders")
    photos = [
        LabelledPhoto(d.name, p)
        for d in sorted(root.iterdir()) if d.is_dir()
        for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not photos:
        raise FileNotFoundError(f"{root}: no photos found under <identity>/ folders")
    return photos


def pair_scores(embeddings: np.ndarray, identities: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every unordered pair, split into (genuine, impostor)."""
    sims = embeddings @ embeddings.T
    ids = np.asarray(identities)
    i, j = np.triu_indices(len(ids), k=1)
    same = ids[i] == ids[j]
    return sims[i, j][same], sims[i, j][~same]


def far_at(impostor: np.ndarray, threshold: float) -> float:
    """Fraction of impostor pairs accepted (score >= threshold)."""
    return float(np.mean(impostor >= threshold)) if impostor.size else 0.0


def tar_at(genuine: np.ndarray, threshold: float) -> float:
    """Fraction of genuine pairs accepted (score >= threshold)."""
    return float(np.mean(genuine >= threshold)) if genuine.size else 0.0


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold): the lowest threshold whose FAR is at most `far`, and its TAR.

    With n impostor pairs, at most floor(far * n) of them may score at or above
    the threshold, so the threshold sits just above the next-highest impostor.
    """
    if not impostor.size:
        raise ValueError("no impostor pairs")
    ranked = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * len(ranked)))
    threshold = float(np.nextafter(ranked[allowed], np.inf)) if allowed < len(ranked) else float(ranked[-1])
    return tar_at(genuine, threshold), threshold
