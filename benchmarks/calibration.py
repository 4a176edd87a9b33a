"""`footfall bench calibration`: the dedup and member thresholds of a recognizer, from measurement.

Embeddings of every labelled photo, each also under a few entrance-camera degradations
(low resolution, blur, lighting, tilt, JPEG), plus the unlabelled faces of a crowd scene as
extra strangers. From these:

* the per-pair impostor tail, and the threshold at which it reaches a target false-match rate;
* the genuine (re-entry / member) acceptance at each candidate threshold, for single shots and
  for passages (the weighted mean of three shots of the same photo, as the tracker makes them);
* the store-level false-merge rate against the number of open windows (50 to 1000): a stranger's
  passage is searched among N open windows of other people, and a merge is counted when the
  window's rule (threshold, margin over the second-best visitor) accepts it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from footfall.config.schema import Config
from footfall.recognition.analyzer import FaceAnalyzer
from footfall.recognition.embed import l2_normalise
from footfall.recognition.evaluation import labelled_photos, pair_scores
from footfall.recognition.images import pad_photo, read_image

WINDOW_COUNTS = (50, 100, 200, 500, 1000)
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.40, 0.71, 0.05))
MARGINS = (0.0, 0.05, 0.10)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One entrance-camera rendition of a photo: smaller, softer, other light, tilted, recompressed."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.35, 0.7)
    small = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    gain, gamma = rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.25)
    out = np.clip(255.0 * ((out / 255.0) ** gamma) * gain, 0, 255).astype(np.uint8)
    angle = rng.uniform(-10, 10)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    out = cv2.warpAffine(out, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 75))])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


@dataclass
class Pool:
    """Embeddings with identity labels and the source photo each came from."""

    vectors: list[np.ndarray]
    identities: list[str]
    photos: list[str]
    shots: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # per passage: (vectors, weights)

    def add(self, vector: np.ndarray, identity: str, photo: str,
            shots: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.vectors.append(vector)
        self.identities.append(identity)
        self.photos.append(photo)
        if shots is not None:
            self.shots.append(shots)


def _largest_gated(analyzer: FaceAnalyzer, image: np.ndarray):
    faces = [f for f in analyzer.analyze(image) if f.embedding is not None]
    return max(faces, key=lambda f: f.detection.width * f.detection.height) if faces else None


def build_pool(analyzer: FaceAnalyzer, faces_dir: Path, crowd: Path | None, renditions: int,
               seed: int, progress: bool) -> tuple[Pool, Pool]:
    """(shots, passages): single-shot embeddings, and 3-shot passage embeddings per photo rendition."""
    rng = np.random.default_rng(seed)
    shots, passages = Pool([], [], []), Pool([], [], [])
    for photo in tqdm(labelled_photos(faces_dir), desc="embedding photos", disable=not progress, leave=False):
        image = pad_photo(read_image(photo.path))
        name = f"{photo.identity}/{photo.path.name}"
        face = _largest_gated(analyzer, image)
        if face is not None:
            shots.add(face.embedding, photo.identity, name)
        for _ in range(renditions):
            three = [f for f in (_largest_gated(analyzer, degrade(image, rng)) for _ in range(3)) if f is not None]
            if not three:
                continue
            shots.add(three[0].embedding, photo.identity, name)
            weights = np.array([f.quality.score * f.detection.width * f.detection.height for f in three])
            stacked = np.stack([f.embedding for f in three])
            mean = (weights[:, None] / weights.sum() * stacked).sum(axis=0)
            passages.add(l2_normalise(mean[None])[0], photo.identity, name, (stacked, weights / weights.sum()))
    if crowd is not None and crowd.is_file():
        image = read_image(crowd)
        for i, face in enumerate(analyzer.analyze(image)):
            if face.embedding is not None:
                shots.add(face.embedding, f"crowd-{i}", f"crowd-{i}")
                passages.add(face.embedding, f"crowd-{i}", f"crowd-{i}", (face.embedding[None], np.ones(1)))
    return shots, passages


def aggregation_comparison(pool: Pool, far: float = 1e-4) -> dict[str, dict[str, float]]:
    """Weighted-mean embedding against a weighted vote of per-shot scores, at the same FAR.

    mean: cosine of the two passages' weighted-mean embeddings (what the tracker sends on).
    vote: each shot of one passage scored against the other passage's embedding, averaged with
    the shot weights, both ways (Frigate's area-weighted vote, as a score).
    """
    means = np.stack(pool.vectors)
    n = len(means)
    vote = np.zeros((n, n))
    for i, (vecs, w) in enumerate(pool.shots):
        vote[i] = w @ (vecs @ means.T)
    vote = (vote + vote.T) / 2
    ids = np.asarray(pool.identities)
    src = np.asarray(pool.photos)
    iu, ju = np.triu_indices(n, 1)
    same, same_photo = ids[iu] == ids[ju], src[iu] == src[ju]
    out = {}
    for name, sims in (("mean", means @ means.T), ("vote", vote)):
        scores = sims[iu, ju]
        impostor = np.sort(scores[~same])[::-1]
        threshold = float(impostor[int(far * len(impostor))])
        out[name] = {
            "threshold_at_far": round(threshold, 4),
            "recall_other_photo": round(float(np.mean(scores[same & ~same_photo] > threshold)), 4),
            "recall_same_photo": round(float(np.mean(scores[same & same_photo] > threshold)), 4),
            "impostor_max": round(float(impostor[0]), 4),
        }
    return out


def false_merge_curve(pool: Pool, threshold: float, margin: float, counts: tuple[int, ...],
                      trials: int, seed: int, mutual: bool = False) -> dict[int, float]:
    """Share of strangers' passages merged into one of N open windows of other people, under the
    window's rule: threshold, margin over the second-best window and, with `mutual`, closer to the
    best window than any other open window is."""
    rng = np.random.default_rng(seed)
    vectors = np.stack(pool.vectors)
    ids = np.asarray(pool.identities)
    out = {}
    for n in counts:
        merges = total = 0
        for _ in range(trials):
            q = int(rng.integers(len(vectors)))
            others = np.flatnonzero(ids != ids[q])
            window = rng.choice(others, size=min(n, len(others)), replace=len(others) < n)
            sims = vectors[window] @ vectors[q]
            order = np.argsort(-sims)
            best = sims[order[0]]
            # second best among windows of a *different* visitor than the best one
            rival = next((sims[j] for j in order[1:] if window[j] != window[order[0]]), -1.0)
            merged = best >= threshold and best - max(rival, 0.0) >= margin
            if merged and mutual:
                w = window[order[0]]
                others = window[window != w]
                merged = best > (float((vectors[others] @ vectors[w]).max()) if others.size else -1.0)
            merges += merged
            total += 1
        out[n] = merges / total
    return out


def calibrate(config: Config, faces_dir: Path, crowd: Path | None, *, renditions: int = 4, trials: int = 4000,
              seed: int = 0, progress: bool = True) -> dict:
    """All the figures behind the dedup and member thresholds of the configured recognizer."""
    started = time.perf_counter()
    analyzer = FaceAnalyzer.from_config(config)
    shots, passages = build_pool(analyzer, faces_dir, crowd, renditions, seed, progress)
    labelled = [i for i, ident in enumerate(passages.identities) if not ident.startswith("crowd-")]
    genuine_p, impostor_p = pair_scores(np.stack(passages.vectors), passages.identities)
    genuine_s, impostor_s = pair_scores(np.stack(shots.vectors), shots.identities)
    # a re-entry shown by another photo of the person (the hard case), not another rendition of the same one
    p_vec = np.stack([passages.vectors[i] for i in labelled])
    p_ids = np.asarray([passages.identities[i] for i in labelled])
    p_src = np.asarray([passages.photos[i] for i in labelled])
    sims = p_vec @ p_vec.T
    iu, ju = np.triu_indices(len(p_ids), 1)
    same_person = p_ids[iu] == p_ids[ju]
    same_photo = p_src[iu] == p_src[ju]
    other_photo = sims[iu, ju][same_person & ~same_photo]
    same_rendition = sims[iu, ju][same_person & same_photo]
    table = []
    for thr in THRESHOLDS:
        table.append({
            "threshold": thr,
            "impostor_far_shots": float(np.mean(impostor_s >= thr)),
            "impostor_far_passages": float(np.mean(impostor_p >= thr)),
            "tar_passage_same_photo": float(np.mean(same_rendition >= thr)),
            "tar_passage_other_photo": float(np.mean(other_photo >= thr)),
            "tar_shots": float(np.mean(genuine_s >= thr)),
        })
    curves = {f"{thr:.2f}/{m:.2f}{'/mutual' if mutual else ''}":
              false_merge_curve(passages, thr, m, WINDOW_COUNTS, trials, seed, mutual)
              for thr in THRESHOLDS for m in MARGINS for mutual in (False, True)}
    return {
        "recognizer": analyzer.pack.recognizer.file,
        "detector": analyzer.pack.detector.file,
        "shots": len(shots.vectors), "passages": len(passages.vectors),
        "identities": len(set(passages.identities)),
        "impostor_pairs_shots": int(impostor_s.size), "impostor_pairs_passages": int(impostor_p.size),
        "impostor_max_passages": float(impostor_p.max()),
        "impostor_p99_99_passages": float(np.quantile(impostor_p, 0.9999)),
        "genuine_pairs_other_photo": int(other_photo.size),
        "table": table,
        "false_merge": curves,
        "aggregation_at_far_1e-4": aggregation_comparison(passages),
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_report(r: dict) -> str:
    """Tables for people: per-pair error rates, then the false-merge curve."""
    lines = [f"{r['detector']} + {r['recognizer']}: {r['passages']} passages, {r['identities']} identities, "
             f"{r['impostor_pairs_passages']} impostor passage pairs (max {r['impostor_max_passages']:.3f})",
             "", "thr   FAR shots   FAR passages  TAR passage(same photo)  TAR passage(other photo)  TAR shots"]
    for row in r["table"]:
        lines.append(f"{row['threshold']:.2f}  {row['impostor_far_shots']:.2e}    {row['impostor_far_passages']:.2e}"
                     f"      {row['tar_passage_same_photo']:.3f}                    {row['tar_passage_other_photo']:.3f}"
                     f"                     {row['tar_shots']:.3f}")
    lines += ["", "aggregation of a passage's shots, at FAR 1e-4 on passage pairs:"]
    for name, a in r["aggregation_at_far_1e-4"].items():
        lines.append(f"  {name:<5} threshold {a['threshold_at_far']:.3f}  recall other photo {a['recall_other_photo']:.3f}"
                     f"  same photo {a['recall_same_photo']:.3f}  impostor max {a['impostor_max']:.3f}")
    lines += ["", "false-merge rate of a stranger's passage vs open windows (threshold/margin)",
              "thr/margin[/mutual] " + "  ".join(f"N={n:<5}" for n in WINDOW_COUNTS)]
    for key, curve in r["false_merge"].items():
        lines.append(f"{key:<17}  " + "  ".join(f"{curve[n]:.4f} " for n in WINDOW_COUNTS))
    return "\n".join(lines)
